"""Input-pipeline benchmark: batch production alone, beside the train step, and the input wait of
a real training loop.

On one simulated screen (default 20,000 cells x 1,000 genes, 30 singles, 20 pairs; the data of
`make accuracy`) with experiments/configs/synthetic.py, one epoch of training batches is produced
by each pipeline, each batch ending on the device as the train step receives it:
  * reference: the host path at 1022c9b (each batch's reference medians x^cf taken when it is
    built, by that commit's NumPy medians, benchmarks/numpy_medians.py), measured in the same run;
  * host: batches built on the host from every cell's x^cf computed once (the time of that one
    pass is printed);
  * device dense / device sparse: every cell on the device, a batch gathered by jitted code from
    its row indices (train.input_pipeline=device).
Then the train step's own cells/s at the same config, and three short real training runs (host
and device pipelines, and the file streamed with data.backed) whose epoch records give the
measured share of step time spent waiting for input. Peak RSS of the process at the end (and
peak device memory where the device reports it).
`--backed_sizes` adds the backed-file path (benchmarks/bench_data.py, one process per size).

    python benchmarks/bench_pipeline.py --workdir runs/bench/pipeline
    python benchmarks/bench_pipeline.py --n_cells 65000 --n_genes 2000 --backed_sizes ""
"""

import argparse
import contextlib
import dataclasses
import io
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cradle_jax.xla_flags import tune_cpu_backend

tune_cpu_backend()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from numpy_medians import numpy_median_rows  # noqa: E402

from cradle_jax.config import load_config_file  # noqa: E402
from cradle_jax.data.batches import PADDING, batch_indices, build_batch  # noqa: E402
from cradle_jax.data.dataset import load_perturb_data  # noqa: E402
from cradle_jax.data.simulate import SimulationConfig, simulate  # noqa: E402
from cradle_jax.data.simulate.files import write_simulation  # noqa: E402
from cradle_jax.models.config import resolve_model_config  # noqa: E402
from cradle_jax.train.config import resolve_loss_config  # noqa: E402
from cradle_jax.train.inputs import batch_arrays, split_stats  # noqa: E402
from cradle_jax.train.keys import purpose_key  # noqa: E402
from cradle_jax.train.loop import train_and_evaluate  # noqa: E402
from cradle_jax.train.mesh import data_mesh, global_batch, replicate  # noqa: E402
from cradle_jax.train.objective import init_params, placeholder_inputs  # noqa: E402
from cradle_jax.train.resident import gather_batch, resident_bytes, resident_cells  # noqa: E402
from cradle_jax.train.state import TrainState  # noqa: E402
from cradle_jax.train.step import make_optimizer, make_train_step  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "configs" / "synthetic.py"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--n_cells", type=int, default=20_000)
    parser.add_argument("--n_genes", type=int, default=1_000)
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--train_epochs", type=int, default=2, help="of each real training run")
    parser.add_argument("--step_repeats", type=int, default=20, help="timed train steps")
    parser.add_argument(
        "--backed_sizes", default="100000,1000000", help='backed files to time; "" skips them'
    )
    return parser.parse_args()


def screen(workdir: Path, n_cells: int, n_genes: int) -> Path:
    path = workdir / f"simulated_{n_cells}x{n_genes}.h5ad"
    if not path.exists():
        config = SimulationConfig(
            n_cells=n_cells, n_genes=n_genes, n_perturbations=30, n_pairs=20, seed=0
        )
        write_simulation(simulate(config), path)
    return path


def run_config(path: Path, batch_size: int):
    config = load_config_file(CONFIG)
    config.data.path = str(path)
    config.train.batch_size = batch_size
    return config


def epoch(data, batch_size: int) -> list[np.ndarray]:
    return list(batch_indices(data, "train", batch_size, seed=0, epoch=0))


def cells_of(indices: list[np.ndarray]) -> int:
    return int(sum((index != PADDING).sum() for index in indices))


def host_rate(data, indices: list[np.ndarray], mesh, batch_size: int) -> float:
    """Cells/s of host-built batches, each put on the devices as the loop does."""
    started = time.perf_counter()
    for index in indices:
        host = batch_arrays(build_batch(data, index[index != PADDING], pad_to=len(index)))
        batch = global_batch(host, mesh, batch_size)
    jax.block_until_ready(batch)
    return cells_of(indices) / (time.perf_counter() - started)


def reference_rate(data, indices: list[np.ndarray], mesh, batch_size: int) -> float:
    """Cells/s of the host path at 1022c9b: each batch's x^cf taken from its cells' draws by
    that commit's NumPy medians when the batch is built (checked equal to today's x^cf)."""

    class NumpyMedians:
        def rows(self, index: np.ndarray) -> np.ndarray:
            draws = data.references.draws(index)
            return numpy_median_rows(draws, data.counts.rows, len(data.gene_names)).toarray()

    then = dataclasses.replace(data, counterfactual=NumpyMedians())
    rate = host_rate(then, indices, mesh, batch_size)
    cells = indices[0][indices[0] != PADDING]
    np.testing.assert_array_equal(then.counterfactual.rows(cells), data.counterfactual.rows(cells))
    return rate


def device_rate(cells, indices: list[np.ndarray], mesh, batch_size: int) -> float:
    """Cells/s of batches gathered on the device from their row indices."""
    gather = jax.jit(gather_batch)
    jax.block_until_ready(gather(cells, global_batch({"i": indices[0]}, mesh, batch_size)["i"]))
    started = time.perf_counter()
    for index in indices:
        rows = global_batch({"i": index.astype(np.int32)}, mesh, batch_size)["i"]
        batch = gather(cells, rows)
    jax.block_until_ready(batch)
    return cells_of(indices) / (time.perf_counter() - started)


def train_step_rate(data, config, cells, indices, mesh, repeats: int) -> float:
    """Cells/s of the train step alone, on device-resident batches (the step's input ready)."""
    cfg = resolve_model_config(
        config.model, len(data.gene_names), data.vocabulary.size, data.qc.shape[1]
    )
    train_cfg = config.train
    optimizer = make_optimizer(
        train_cfg.learning_rate,
        train_cfg.weight_decay,
        train_cfg.clip_norm,
        train_cfg.mask_lr_scale,
        train_cfg.dispersion_lr_scale,
    )
    key = jax.random.wrap_key_data(purpose_key(0, "init"))
    params = jax.jit(init_params, static_argnames="cfg")(key, *placeholder_inputs(cfg), cfg)
    state = replicate(TrainState.create(jax.device_get(params), optimizer), mesh)
    step = make_train_step(cfg, resolve_loss_config(config.loss), optimizer, mesh, resident=True)
    stats = replicate(split_stats(data, "train"), mesh)
    run_key = replicate(purpose_key(0, "train"), mesh)
    rows = [
        global_batch({"i": index.astype(np.int32)}, mesh, config.train.batch_size)["i"]
        for index in indices[:repeats]
    ]
    state, loss, _ = step(state, rows[0], stats, run_key, cells)
    jax.block_until_ready(loss)
    started = time.perf_counter()
    for batch in rows:
        state, loss, _ = step(state, batch, stats, run_key, cells)
    jax.block_until_ready(loss)
    return cells_of(indices[:repeats]) / (time.perf_counter() - started)


def input_wait(
    path: Path, batch_size: int, pipeline: str, epochs: int, workdir: Path, backed: bool = False
) -> str:
    """Cells/s and the measured input-wait share of each epoch of a real training run (its
    epoch lines; the first epoch includes compiling the step); `backed` streams the file."""
    config = run_config(path, batch_size)
    config.train.update(input_pipeline=pipeline, max_epochs=epochs, patience=0, iwelbo_particles=0)
    config.data.backed = backed
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        train_and_evaluate(config, workdir / f"train_{pipeline}{'_backed' if backed else ''}")
    epochs = re.findall(r"\| ([\d,]+) cells/s, input wait ([\d.]+%)", output.getvalue())
    return "; ".join(
        f"epoch {i + 1} {rate} cells/s, input wait {wait}" for i, (rate, wait) in enumerate(epochs)
    )


def peak_memory() -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = jax.devices()[0].memory_stats() or {}
    device = (
        f", peak device memory {stats['peak_bytes_in_use'] / 2**20:,.0f} MiB"
        if "peak_bytes_in_use" in stats
        else ""
    )
    return f"peak RSS {rss:,.0f} MiB{device}"


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_pipeline_"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = screen(workdir, args.n_cells, args.n_genes)
    config = run_config(path, args.batch_size)
    data = load_perturb_data(path, config.data, seed=0)
    mesh = data_mesh()
    indices = epoch(data, args.batch_size)
    print(
        f"{jax.devices()[0].platform} x {mesh.size}; {data.n_cells:,} cells x "
        f"{len(data.gene_names):,} genes, {cells_of(indices):,} training cells, batch "
        f"{args.batch_size}"
    )
    started = time.perf_counter()
    data.counterfactual.prepare()
    print(f"x^cf of every cell, once per run: {time.perf_counter() - started:.1f} s")
    reference = reference_rate(data, indices, mesh, args.batch_size)
    print(f"reference (host at 1022c9b, NumPy x^cf per batch): {reference:,.0f} cells/s")
    rates = {"host": host_rate(data, indices, mesh, args.batch_size)}
    for layout in ("dense", "sparse"):
        cells = resident_cells(data, mesh, layout)
        rates[f"device {layout}"] = device_rate(cells, indices, mesh, args.batch_size)
        size = resident_bytes(data, layout) / 2**20
        print(f"device {layout} data: {size:,.0f} MiB per device")
    for name, rate in rates.items():
        print(f"{name}: {rate:,.0f} cells/s; ratio to reference {rate / reference:.1f}")
    cells = resident_cells(data, mesh, "dense")
    step = train_step_rate(data, config, cells, indices, mesh, args.step_repeats)
    print(f"train step alone (same config): {step:,.0f} cells/s")
    for pipeline in ("host", "device"):
        line = input_wait(path, args.batch_size, pipeline, args.train_epochs, workdir)
        print(f"training, {pipeline} pipeline: {line}")
    line = input_wait(path, args.batch_size, "host", args.train_epochs, workdir, backed=True)
    print(f"training, backed file (host pipeline, os.pread, train.input_workers threads): {line}")
    print(peak_memory())
    if args.backed_sizes:
        print("backed files (benchmarks/bench_data.py):", flush=True)
        command = [sys.executable, str(REPO / "benchmarks" / "bench_data.py")]
        subprocess.run(
            [*command, "--n_cells", args.backed_sizes, "--workdir", str(workdir)], check=True
        )


if __name__ == "__main__":
    main()
