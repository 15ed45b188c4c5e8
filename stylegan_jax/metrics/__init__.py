"""The official GAN metrics (FID, KID, precision/recall, IS, PPL) and their feature networks."""
