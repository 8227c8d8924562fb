"""cradle-jax: CRADLE-VAE for single-cell CRISPR perturbation data in JAX, Flax and NumPyro."""

__version__ = "0.1.0"
