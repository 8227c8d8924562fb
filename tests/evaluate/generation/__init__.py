"""Tests of cradle_jax.evaluate.generation."""
