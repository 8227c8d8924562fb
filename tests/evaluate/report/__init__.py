"""Tests of cradle_jax.evaluate.report."""
