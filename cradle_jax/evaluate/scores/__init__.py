"""Scores of a model: treatment effects and their agreement with the data, the non-learned
baselines, the QC pass rate of generated cells, held-out and planted-truth scores, and the
data side of an evaluation."""
