#!/usr/bin/env bash
# A Cloud TPU pod slice: the same command on every TPU VM host (--worker=all), one process per
# host. With --distributed every process calls jax.distributed.initialize(), which detects the
# slice's topology on its own; the trainer's mesh then spans every TPU core of the slice.
#
# Each host needs the repository and the TPU build of jaxlib, installed once, e.g.
#   # `python3 -m cradle_jax` is the `cradle-jax` command, found without the ssh session's PATH.
gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone "${ZONE}" --worker=all --command \
#     "git clone REPO_URL cradle-jax && cd cradle-jax && pip install -e . && \
#      pip install \"jax[tpu]==\$(python3 -c 'import jax; print(jax.__version__)')\""
#
# train.batch_size (512 by default) must divide by the slice's device count.
# Running this script again with the same WORKDIR resumes from the latest checkpoint.
set -euo pipefail

# --- change these -------------------------------------------------------------------------------
TPU_NAME=my-tpu-slice
ZONE=us-central2-b
REPO_DIR=cradle-jax                      # the checkout on every host (relative to its home)
CONFIG=experiments/configs/norman.py     # an experiment config (experiments/configs/*.py)
DATA=/mnt/shared/norman.h5ad             # readable on every host (a copy on each, or shared)
WORKDIR=/mnt/shared/runs/norman          # every host writes the Orbax checkpoints together: a
                                         # disk mounted at the same path on every host (e.g. a
                                         # Filestore NFS share). Orbax itself writes gs:// paths,
                                         # but the rest of the workdir (config.json, metrics) is
                                         # still written with local file calls, so a gs:// WORKDIR
                                         # does not work yet.
# -------------------------------------------------------------------------------------------------

# `python3 -m cradle_jax` is the `cradle-jax` command, found without the ssh session's PATH.
gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone "${ZONE}" --worker=all --command "
  cd ${REPO_DIR} && python3 -m cradle_jax train \
    --config ${CONFIG} \
    --config.data.path=${DATA} \
    --workdir ${WORKDIR} \
    --distributed"
