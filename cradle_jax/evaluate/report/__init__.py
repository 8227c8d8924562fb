"""What an evaluation writes and prints: metrics.json and the ATE tables, the report, the
plots, the evaluation of a workdir in place, and the one-file export. The export lives here, not
in train, because it carries the evaluation's data reference (`scores.data_reference`) beside
the model, and train does not import evaluate.
"""
