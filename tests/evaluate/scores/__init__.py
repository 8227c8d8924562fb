"""Tests of cradle_jax.evaluate.scores."""
