"""Two processes on localhost train together through `jax.distributed`
(docs/method.md#data-parallelism).

Each process runs `cradle-jax train --distributed`, feeds its own half of every batch and holds
one CPU device of a two-device global mesh; both write the same workdir, as on a cluster with a
shared filesystem. The result must agree with a single-process run.
"""

import socket

import jax
import numpy as np

from tests.train.conftest import cli_overrides, saved_params, start_training


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_the_same_parameters_as_one(sim_path, reference_run, tmp_path):
    port = free_port()
    flags = cli_overrides(sim_path)
    distributed = ["--distributed", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    processes = [
        start_training(flags, tmp_path, *distributed, f"--process_id={pid}") for pid in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "finished: max_epochs" in outputs[0][0]
    assert "epoch 1" not in outputs[1][0], "only the first process prints progress"
    together, alone = saved_params(tmp_path), saved_params(reference_run)
    difference = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(alone), strict=True)
    )
    assert difference < 1e-5
