"""Tools for a trained generator: projection, style mixing, latent-walk videos."""
