"""`cradle-jax inspect`: validate an .h5ad against the data contract and summarise it."""

import json

from absl import flags

from cradle_jax.data.config import data_config
from cradle_jax.data.dataset import load_perturb_data

_DATA = data_config()
DATA = flags.DEFINE_string("data", None, "inspect: the .h5ad to read")
LAYER = flags.DEFINE_string("layer", _DATA.layer, "layer with raw counts ('' = X)")
PERTURBATION_KEY = flags.DEFINE_string(
    "perturbation_key", _DATA.perturbation_key, "obs column naming each cell's perturbation"
)
CONTROL_LABEL = flags.DEFINE_string("control_label", _DATA.control_label, "label of control cells")
SEPARATOR = flags.DEFINE_string("separator", _DATA.separator, "joins singles in a combination")
SPLIT = flags.DEFINE_enum(
    "split", _DATA.split, ["random", "combinations", "column"], "how cells are split"
)
QC_THRESHOLD = flags.DEFINE_integer("qc_threshold", _DATA.qc_threshold, "MAD multiplier t")
BACKED = flags.DEFINE_bool("backed", _DATA.backed, "read counts from disk by row blocks")


def run(seed: int) -> None:
    """Load the file as training would and print its summary as JSON."""
    if not DATA.value:
        raise flags.ValidationError("inspect needs --data FILE.h5ad")
    config = data_config()
    config.update(
        path=DATA.value,
        layer=LAYER.value,
        perturbation_key=PERTURBATION_KEY.value,
        control_label=CONTROL_LABEL.value,
        separator=SEPARATOR.value,
        split=SPLIT.value,
        qc_threshold=QC_THRESHOLD.value,
        backed=BACKED.value,
    )
    data = load_perturb_data(config.path, config, seed)
    summary = data.summary()
    summary["qc_thresholds"] = data.qc_thresholds.to_dict()
    print(json.dumps(summary, indent=2))
