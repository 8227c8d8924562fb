"""The one exception type for problems with a user's input data.

The CLI prints its message as a single line and exits with status 2, so a message must name the
problem and where it is (column, gene, perturbation, file), never just "invalid input".
"""


class DataError(ValueError):
    """Input data that cannot be used as given; the message is one line naming the problem."""
