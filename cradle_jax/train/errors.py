"""The exception type for problems with a run: its config, its workdir or its checkpoints.

Like DataError, the CLI prints the message as one line and exits with status 2, so the message
names the field, file or parameter at fault.
"""


class RunError(ValueError):
    """A config, workdir or checkpoint that cannot be used as given."""
