"""The paper and quickstart configs, installed as `stylegan_jax.configs` (wheels carry them)."""
