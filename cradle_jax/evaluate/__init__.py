"""Evaluation of trained models against known or held-out truth."""
