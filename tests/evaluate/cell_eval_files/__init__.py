"""Tests of cradle_jax.evaluate.cell_eval_files."""
