"""Training of the StyleGAN2-ADA / StyleGAN3 lineage (NVIDIA's PyTorch training loop)."""
