"""What an evaluation writes and prints: metrics.json and the ATE tables, the report, the
plots, the evaluation of a workdir in place, and the one-file export."""
