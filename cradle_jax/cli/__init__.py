"""Subcommands of the `cradle-jax` command line; each module defines its flags and `run()`."""
