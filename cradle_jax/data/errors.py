"""The one exception type for problems with a user's input data.

The CLI prints its message as a single line and exits with status 2, so a message must name the
problem and where it is (column, gene, perturbation, file), never just "invalid input".
"""


class DataError(ValueError):
    """Input data that cannot be used as given; the message is one line naming the problem.

    `setting` names the config field that fixes it (e.g. `data.control_label`) when there is
    one: the message then ends with "set <setting>", and the command line replaces that ending
    with the flag of the command that was run (`problem` is the message without it).
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(f"{message}; set {setting}" if setting else message)
        self.problem = message
        self.setting = setting
