"""Train the tiny config on a 1-device and on an 8-device mesh, every cell on the devices, and on
8 devices with batches built on the host; print the largest differences from the 1-device run.
Then generate cells and the model ATE from the trained model on both meshes; print how many
generated counts differ and the largest ATE difference.

Run by tests/train/test_multidevice.py in a fresh process, because the number of CPU devices is
fixed when JAX starts: python -m tests.train.multidevice_run SIM.h5ad WORKDIR MAX_STEPS
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 8)

import numpy as np  # noqa: E402

from cradle_jax.evaluate.generation.prior import generate_cells  # noqa: E402
from cradle_jax.evaluate.scores.ate import model_ate  # noqa: E402
from cradle_jax.train.bundle import load_workdir  # noqa: E402
from cradle_jax.train.keys import purpose_key  # noqa: E402
from cradle_jax.train.loop import train_and_evaluate  # noqa: E402
from cradle_jax.train.mesh import data_mesh  # noqa: E402
from tests.train.conftest import saved_params, tiny_config  # noqa: E402


def main() -> None:
    sim_path, workdir, max_steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    assert jax.device_count() == 8, jax.devices()
    config = tiny_config(sim_path, **{"train.max_steps": max_steps})
    params = {}
    for n_devices, pipeline in ((1, "device"), (8, "device"), (8, "host")):
        mesh = data_mesh(jax.devices()[:n_devices])
        config.train.input_pipeline = pipeline
        run = workdir / f"devices_{n_devices}_{pipeline}"
        summary = train_and_evaluate(config, run, mesh=mesh)
        assert summary["devices"] == n_devices
        params[n_devices, pipeline] = saved_params(run)
    for other, name in (((8, "device"), ""), ((8, "host"), " host")):
        difference = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(
                jax.tree.leaves(params[1, "device"]), jax.tree.leaves(params[other]), strict=True
            )
        )
        print(f"max parameter difference{name} {difference:.3e}")
    bundle = load_workdir(workdir / "devices_8_device")
    labels = list(bundle.vocabulary.singles[:3])
    dosage = bundle.vocabulary.dosage(labels).toarray()
    cells, ate = {}, {}
    for n_devices in (1, 8):
        mesh = data_mesh(jax.devices()[:n_devices])
        key = purpose_key(0, "generate")
        # 5 chunks of 16: one partial group of chunks on 8 devices, a partial last chunk.
        cells[n_devices] = generate_cells(
            bundle.params, bundle.cfg, dosage, 70, key, chunk=16, mesh=mesh
        )
        ate[n_devices] = model_ate(
            bundle.params, bundle.cfg, bundle.vocabulary, labels, key, n_particles=70, chunk=16,
            from_means=False, mesh=mesh,
        )  # fmt: skip
    assert cells[1].shape == cells[8].shape == (3, 70, len(bundle.gene_names))
    print(f"generated counts that differ {np.mean(cells[1] != cells[8]):.3e}")
    print(f"max ATE difference {np.max(np.abs(ate[1] - ate[8])):.3e}")


if __name__ == "__main__":
    main()
