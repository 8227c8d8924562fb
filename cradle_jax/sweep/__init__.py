"""Sweeps: one base config, a list of overrides, one run directory per override.

`grid` builds override lists, `spec` reads a sweep file and names and validates its runs,
`launch` runs them in this process or prints one shell command per run, and `aggregate` turns
the finished runs' metrics.json files into results.csv and results.md.
"""
