"""Training of the progressive-growing lineage: ProGAN and StyleGAN v1 (NVIDIA's TF loops)."""
