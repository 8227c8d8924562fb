"""Evaluation of trained models against known or held-out truth.

Four subpackages, each depending only on those before it: `generation` (artifact-free cells from
the prior, counterfactuals of real cells, basal latents, the QC metrics and AnnData of generated
cells), `scores` (treatment effects and their agreement with the data, the non-learned
baselines, the QC pass rate, held-out and planted-truth scores, the data side of an evaluation),
`cell_eval_files` (prediction files for cell-eval) and `report` (metrics.json, the printed
report, the plots, a workdir evaluated in place, the export). `config` holds the `eval` section's
defaults. The predictive IWELBO is in `train.iwelbo`, since training reports it on validation
and train does not import evaluate.
"""
