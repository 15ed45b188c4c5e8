"""Building blocks every family shares: equalized-LR layers, FIR resampling, the
custom-gradient convolution, StyleGAN3's filtered leaky ReLU and its filter design."""
