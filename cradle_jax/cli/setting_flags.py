"""Which flag of the command that was run sets a data setting, for its one-line error.

A DataError that a config field can fix names the field (`data.control_label`); the data package
knows nothing of flags, and each command sets that field differently: `train` through its config
(`--config.data.control_label=...`), `inspect` through a flag of its own (`--control_label`), a
sweep through `--set`, and `evaluate`, `export` and `predict` not at all (the trained run fixed
it). So the command line rewrites the message's ending for the command at hand.
"""

from cradle_jax.data.errors import DataError

# The data settings `cradle-jax inspect` takes as flags of its own (cli/inspect.py).
own_flags_of_inspect = {
    f"data.{name}": f"--{name}"
    for name in ("layer", "perturbation_key", "control_label", "separator", "split", "qc_threshold")
}


def fix_for(command: str, setting: str) -> str:
    """How a user of `command` changes `setting` (a config field such as data.control_label)."""
    if command == "train":
        return f"give --config.{setting}=VALUE"
    if command == "inspect" and setting in own_flags_of_inspect:
        return f"give {own_flags_of_inspect[setting]}=VALUE"
    if command == "sweep":
        return f"give --set {setting}=VALUE (or set it in the sweep file)"
    if command in ("evaluate", "export"):
        return f"the run was trained with this {setting} (its config.json): has the data changed?"
    if command == "predict":
        return f"the --real file must follow the model's {setting}"
    if command == "prepare":
        return "the prepared file must follow the data contract (docs/data.md#input-contract)"
    return f"set {setting}"


def message_for(command: str, err: DataError) -> str:
    """The error's message with the way to change its setting that `command` offers."""
    if err.setting is None:
        return str(err)
    return f"{err.problem}; {fix_for(command, err.setting)}"
