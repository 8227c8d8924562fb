"""`python -m cradle_jax` is the `cradle-jax` command."""

from cradle_jax.main import run

run()
