"""NumPyro programs over Flax networks: CRADLE-VAE and baselines."""
