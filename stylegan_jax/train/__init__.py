"""Training, one lineage of NVIDIA's loops per subpackage under a shared loop.

    command -> loop -> evaluation -> config -> families
        -> stylegan2/ (StyleGAN2-ADA, StyleGAN3) | progressive/ (ProGAN, StyleGAN v1)
            -> stage -> backends, programs, report, labels
"""
