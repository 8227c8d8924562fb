"""Prediction files for Arc Institute's `cell-eval`: a model's and a non-learned baseline's
predicted cells beside the real cells of the same labels."""
