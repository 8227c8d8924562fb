"""Data layer: read and validate AnnData, QC, perturbations, splits, references, batches.

Host-side NumPy/SciPy/AnnData only; no JAX model code lives here.
"""
