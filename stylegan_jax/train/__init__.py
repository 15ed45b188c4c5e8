"""Training, one lineage of NVIDIA's loops per subpackage under a shared loop.

    command -> loop -> maintenance, ticks -> run -> evaluation, grids -> inputs -> config
        -> families -> stylegan2/ (StyleGAN2-ADA, StyleGAN3) | progressive/ (ProGAN, v1)
            -> stage -> backends, programs, report, labels, stopping
"""
