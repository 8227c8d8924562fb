"""Train the tiny config on a 1-device and on an 8-device mesh; print the largest difference.

Run by tests/train/test_multidevice.py in a fresh process, because the number of CPU devices is
fixed when JAX starts: python -m tests.train.multidevice_run SIM.h5ad WORKDIR MAX_STEPS
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 8)

import numpy as np  # noqa: E402

from cradle_jax.train.loop import train_and_evaluate  # noqa: E402
from cradle_jax.train.mesh import data_mesh  # noqa: E402
from tests.train.conftest import saved_params, tiny_config  # noqa: E402


def main() -> None:
    sim_path, workdir, max_steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    assert jax.device_count() == 8, jax.devices()
    config = tiny_config(sim_path, **{"train.max_steps": max_steps})
    params = {}
    for n_devices in (1, 8):
        mesh = data_mesh(jax.devices()[:n_devices])
        summary = train_and_evaluate(config, workdir / f"devices_{n_devices}", mesh=mesh)
        assert summary["devices"] == n_devices
        params[n_devices] = saved_params(workdir / f"devices_{n_devices}")
    difference = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(params[1]), jax.tree.leaves(params[8]), strict=True)
    )
    print(f"max parameter difference {difference:.3e}")


if __name__ == "__main__":
    main()
