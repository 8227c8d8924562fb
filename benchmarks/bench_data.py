"""Data-path benchmark: one training epoch over a large backed .h5ad.

Writes a synthetic CSR .h5ad of `--n_cells` x `--n_genes` by row chunks (QC metrics in obs, so no
Scrublet run), loads it with `data.backed = True`, computes every cell's reference median x^cf
(timed: training does it before its first batch) and builds shuffled training batches as the
training loop does. Cells/s of batch building are printed for the reference, one h5py request per
row on one thread (the read path before `os.pread`), measured in the same run, then `os.pread` on
one thread and on `--input_workers` threads over the whole epoch. Also: peak RSS, the RSS after
the first timed batches and at the end (flat memory means the two agree), and plain anndata
backed reads of contiguous 512-row slices densified, the I/O floor.

The file is written by a separate process, so the peak RSS is that of loading and the epoch.
Several sizes (`--n_cells 100000,1000000`) run one process each and end with the ratio of the
largest file's peak RSS to the smallest's: memory is flat when it stays near 1 (the target is at
most 1.5 from 100k to 1M cells).

    python benchmarks/bench_data.py --n_cells 100000,1000000 --n_genes 2000
"""

import argparse
import contextlib
import copy
import dataclasses
import functools
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import psutil
import scipy.sparse as sp

from cradle_jax.config import data_config, default_config
from cradle_jax.data.batches import PADDING, batch_indices, build_local_batch
from cradle_jax.data.counts import BackedCounts
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.train.prefetch import ordered_map


def write_backed_file(path: Path, n_cells: int, n_genes: int, nnz_per_cell: int, seed: int):
    """A CSR .h5ad written chunk by chunk, never holding the whole matrix."""
    rng = np.random.default_rng(seed)
    labels = np.array(["non-targeting"] + [f"P{i}" for i in range(100)])
    obs = pd.DataFrame(
        {
            "perturbation": labels[rng.integers(0, len(labels), n_cells)],
            "UMI_count": rng.normal(5000, 500, n_cells),
            "ngenes": rng.normal(1500, 100, n_cells),
            "pct_counts_mt": rng.gamma(2.0, 2.0, n_cells),
            "pct_counts_ribo": rng.normal(20, 2, n_cells),
            "pct_counts_hb": np.zeros(n_cells),
            "predicted_doublet": rng.random(n_cells) < 0.02,
        },
        index=[f"c{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])
    ad.AnnData(X=sp.csr_matrix((n_cells, n_genes), dtype=np.float32), obs=obs, var=var).write_h5ad(
        path
    )
    nnz = n_cells * nnz_per_cell
    # Heavy-tailed gene detection rates, as in real data: a few genes are in almost every cell,
    # which is what makes reference medians non-zero. Gumbel top-k samples without replacement.
    log_weight = -1.2 * np.log(np.arange(1, n_genes + 1))
    with h5py.File(path, "r+") as f:
        group = f["X"]
        for name in ("data", "indices", "indptr"):
            del group[name]
        data = group.create_dataset("data", (nnz,), dtype=np.float32, chunks=(1 << 20,))
        indices = group.create_dataset("indices", (nnz,), dtype=np.int32, chunks=(1 << 20,))
        group.create_dataset("indptr", data=np.arange(0, nnz + 1, nnz_per_cell, dtype=np.int64))
        chunk = 10_000
        for start in range(0, n_cells, chunk):
            rows = min(chunk, n_cells - start)
            keys = log_weight + rng.gumbel(size=(rows, n_genes))
            cols = np.sort(np.argpartition(-keys, nnz_per_cell, axis=1)[:, :nnz_per_cell], axis=1)
            lo, hi = start * nnz_per_cell, (start + rows) * nnz_per_cell
            indices[lo:hi] = cols.ravel()
            data[lo:hi] = rng.integers(1, 20, size=rows * nnz_per_cell).astype(np.float32)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def run_sizes(sizes: list[int], argv: list[str]) -> None:
    """One process per size; then the peak-RSS ratio of the largest file to the smallest."""
    peaks = {}
    for n_cells in sizes:
        command = [sys.executable, __file__, *argv, "--n_cells", str(n_cells)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print(f"--- {n_cells:,} cells\n{output}", end="", flush=True)
        peaks[n_cells] = float(re.search(r"peak RSS (\d+) MB", output).group(1))
    small, large = min(sizes), max(sizes)
    print(
        f"peak RSS {large:,} cells / {small:,} cells: {peaks[large]:.0f} / {peaks[small]:.0f} MB "
        f"= {peaks[large] / peaks[small]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_cells", default="200000", help="one size or a comma-separated list")
    parser.add_argument("--n_genes", type=int, default=2000)
    parser.add_argument("--nnz_per_cell", type=int, default=100)
    defaults = default_config()  # a training run's batch, references and input threads
    parser.add_argument("--batch_size", type=int, default=defaults.train.batch_size)
    parser.add_argument("--references", default=defaults.data.references)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--input_workers", type=int, default=defaults.train.input_workers)
    parser.add_argument(
        "--budget_s", type=float, default=20.0, help="seconds of each single-thread measurement"
    )
    parser.add_argument("--write_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_data_"))
    sizes = [int(n) for n in args.n_cells.split(",")]
    forwarded = [
        *("--n_genes", str(args.n_genes), "--nnz_per_cell", str(args.nnz_per_cell)),
        *("--batch_size", str(args.batch_size), "--references", args.references),
        *("--workdir", str(workdir), "--input_workers", str(args.input_workers)),
        *("--budget_s", str(args.budget_s)),
    ]
    if len(sizes) > 1:
        run_sizes(sizes, forwarded)
        return
    n_cells = sizes[0]
    path = workdir / f"backed_{n_cells}x{args.n_genes}.h5ad"
    if args.write_only:
        t = time.perf_counter()
        write_backed_file(path, n_cells, args.n_genes, args.nnz_per_cell, seed=0)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s")
        return
    if not path.exists():
        command = [sys.executable, __file__, *forwarded, "--n_cells", str(n_cells), "--write_only"]
        subprocess.run(command, check=True)
    rss_start = rss_mb()

    config = data_config()
    config.update(backed=True, references=args.references)
    t = time.perf_counter()
    data = load_perturb_data(path, config, seed=0)
    print(
        f"load + validate + QC flags + splits + references: {time.perf_counter() - t:.1f} s, "
        f"RSS {rss_mb():.0f} MB"
    )
    t = time.perf_counter()
    data.counterfactual.prepare()
    print(
        f"reference medians x^cf of every cell (once per run, before the first batch): "
        f"{time.perf_counter() - t:.1f} s, RSS {rss_mb():.0f} MB"
    )

    n_train = len(data.cells("train"))
    with through_h5py(data) as slow:
        reference = timed_batches(slow, args, workers=1, budget_s=args.budget_s)
    one = timed_batches(data, args, workers=1, budget_s=args.budget_s)
    rss_early = rss_mb()
    many = timed_batches(data, args, workers=args.input_workers, budget_s=None)
    rss_end = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"training batches ({n_train} cells, {args.references} references, "
        f"batch {args.batch_size}):"
    )
    for name, rate in (
        ("reference: one h5py request per row, 1 thread (the path before os.pread)", reference),
        ("os.pread per row, 1 thread", one),
        (
            f"os.pread per row, {args.input_workers} threads (train.input_workers), whole epoch",
            many,
        ),
    ):
        print(f"  {name}: {rate:,.0f} cells/s, {rate / reference:.1f}x the reference")
    print(
        f"RSS before load {rss_start:.0f} MB, after the first timed batches {rss_early:.0f} MB, "
        f"at epoch end {rss_end:.0f} MB; peak RSS {peak:.0f} MB (load, x^cf and batches)"
    )
    floor = contiguous_reads(path, n_cells, args.batch_size)
    print(
        f"contiguous anndata backed reads (no shuffle, no references), the I/O floor: "
        f"{floor:,.0f} cells/s; the {args.input_workers}-thread epoch is {many / floor:.2f} of it"
    )
    data.counts.close()


def timed_batches(data, args, workers: int, budget_s: float | None) -> float:
    """Training batches built per second over one shuffled epoch (or `budget_s` seconds of it),
    each batch as the training loop builds it."""
    indices = batch_indices(data, "train", args.batch_size, seed=0)
    build = functools.partial(build_local_batch, data, rows=slice(None))
    t, n = time.perf_counter(), 0
    for batch in ordered_map(build, indices, workers):
        n += int((batch.index != PADDING).sum())
        if budget_s is not None and time.perf_counter() - t > budget_s:
            break
    return n / (time.perf_counter() - t)


@contextlib.contextmanager
def through_h5py(data):
    """`data` with its counts and x^cf store reopened so that every read is an h5py request."""
    from cradle_jax.data import direct_reads

    original = direct_reads.DirectDataset.of
    direct_reads.DirectDataset.of = classmethod(lambda cls, dataset, descriptor: None)
    try:
        counts = BackedCounts(data.counts.path, data.counts.key)
        counterfactual = copy.copy(data.counterfactual)
        store = counterfactual._store
        counterfactual.counts = counts
        counterfactual._store = BackedCounts(store.path, store.key)
    finally:
        direct_reads.DirectDataset.of = original
    try:
        yield dataclasses.replace(data, counts=counts, counterfactual=counterfactual)
    finally:
        counts.close()
        counterfactual._store.close()


def contiguous_reads(path: Path, n_cells: int, batch_size: int, budget_s: float = 10.0) -> float:
    t, n = time.perf_counter(), 0
    with h5py.File(path, "r") as f:
        backed = ad.io.sparse_dataset(f["X"])
        for start in range(0, n_cells, batch_size):
            backed[start : start + batch_size].toarray()
            n += min(batch_size, n_cells - start)
            if time.perf_counter() - t > budget_s:
                break
    return n / (time.perf_counter() - t)


if __name__ == "__main__":
    main()
