#!/usr/bin/env bash
# One machine, several GPUs: one process drives them all. JAX sees every local GPU and the trainer
# builds a 1-D mesh over jax.devices() (axis "data"): each step splits the batch's cells over the
# GPUs and keeps the parameters replicated. No --distributed flag is needed on a single machine.
#
# Install once (CUDA build of jaxlib):
#   pip install -e ".[cuda]"
# Without the `cuda` extra (a checkout whose pyproject.toml lacks it), install the package and
# then the CUDA jaxlib of the pinned JAX version:
#   pip install -e . && pip install "jax[cuda13]==$(python -c 'import jax; print(jax.__version__)')"
#   (jax[cuda12] for CUDA 12 drivers)
#
# Run from the repository root. Re-running the same command with the same WORKDIR resumes from
# its latest checkpoint.
set -euo pipefail

# --- change these -------------------------------------------------------------------------------
CONFIG=experiments/configs/norman.py     # an experiment config (experiments/configs/*.py)
DATA=/path/to/norman.h5ad                # prepared for the data contract (docs/data.md)
WORKDIR=runs/norman                      # config, checkpoints, metrics
GPUS=0,1,2,3                             # the GPUs to use; train.batch_size (512) must divide
                                         # by their number, or pass --config.train.batch_size=...
# -------------------------------------------------------------------------------------------------

export CUDA_VISIBLE_DEVICES="${GPUS}"
# JAX preallocates 75% of each GPU's memory; lower this to share the GPUs with other jobs.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.75}"

cradle-jax train \
  --config "${CONFIG}" \
  --config.data.path="${DATA}" \
  --workdir "${WORKDIR}"
