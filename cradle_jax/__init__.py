"""cradle-jax: CRADLE-VAE for single-cell CRISPR perturbation data in JAX, Flax and NumPyro."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`cradle_jax.CradleVAE` without importing JAX for every `import cradle_jax`."""
    if name == "CradleVAE":
        from cradle_jax.api import CradleVAE

        return CradleVAE
    raise AttributeError(f"module 'cradle_jax' has no attribute {name!r}")
