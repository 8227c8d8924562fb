"""`cradle-jax train`: train an experiment config in a workdir, resuming what is there."""

from pathlib import Path

import jax
from absl import flags
from ml_collections import config_flags

from cradle_jax.cli.common import WORKDIR
from cradle_jax.train.logs import loss_curve
from cradle_jax.train.loop import train_and_evaluate

CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file (experiments/configs/NAME.py); --config.a.b=v overrides"
)
DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "call jax.distributed.initialize() first: one process per host (SLURM and Cloud TPU are "
    "detected; otherwise give the three flags below)",
)
COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "distributed: HOST:PORT of process 0"
)
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "distributed: number of processes")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "distributed: this process's index")


def run(seed: int | None) -> None:
    """Train; `seed`, when given on the command line, replaces the config's seed."""
    if CONFIG.value is None:
        raise flags.ValidationError("train needs --config experiments/configs/NAME.py")
    path = Path(flags.FLAGS["config"].config_filename.split(":")[0])
    if not path.is_file():  # ml_collections defers this error to the first use of the config
        raise flags.ValidationError(f"--config: config file {path} does not exist")
    if not WORKDIR.value:
        raise flags.ValidationError("train needs --workdir DIR")
    if DISTRIBUTED.value:
        jax.distributed.initialize(
            coordinator_address=COORDINATOR.value,
            num_processes=NUM_PROCESSES.value,
            process_id=PROCESS_ID.value,
        )
    config = CONFIG.value
    if seed is not None:
        config.seed = seed
    try:
        train_and_evaluate(config, WORKDIR.value)
        if jax.process_index() == 0:
            print(f"loss curve ({WORKDIR.value}/metrics.jsonl):\n{loss_curve(WORKDIR.value)}")
    finally:
        if DISTRIBUTED.value:
            jax.distributed.shutdown()
