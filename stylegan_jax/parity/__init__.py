"""Parity runs against NVIDIA's official StyleGAN2-ADA (PyTorch)."""
