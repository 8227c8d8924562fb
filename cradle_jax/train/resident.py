"""Device-resident training data: every cell on the device, each batch gathered inside the step.

The host then sends only a batch's row indices (B int32), and the step builds the batch itself,
so the device never waits for the host (docs/decisions.md#device-resident-data).

Layout: the counts, the reference medians x^cf and the dosage are each held either dense or CSR.
Dense when all three fit in the memory share: a batch is then one row gather, several times
faster than densifying CSR rows on a CPU. CSR otherwise: 8 bytes per non-zero, a row is one
contiguous slice, and a batch is one gather of at most `longest_row` entries per cell and one
scatter into a (B, width) block. The data are replicated on every device of the mesh, so each
device gathers the rows of its own share of the batch without communication.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import Mesh

from cradle_jax.data.counts import InMemoryCounts
from cradle_jax.data.dataset import PerturbData
from cradle_jax.train.errors import RunError
from cradle_jax.train.mesh import replicate

PIPELINES = ("auto", "device", "host")
INDEX_LIMIT = 2**31  # int32 positions: JAX without x64 indexes with int32


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DenseRows:
    """A matrix on the device, dense."""

    table: jax.Array  # (N, width) float32

    def dense(self, index: jax.Array, present: jax.Array) -> jax.Array:
        """Rows `index` (B,) as a dense (B, width) float32 block; rows not `present` are 0."""
        return jnp.where(present[:, None], self.table[index], 0.0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseRows:
    """A CSR matrix on the device with sorted, unique columns per row. `values` and `columns`
    hold one trailing entry, so a gather has a valid position even without non-zeros."""

    values: jax.Array  # (nnz + 1,) float32
    columns: jax.Array  # (nnz + 1,) int32
    row_start: jax.Array  # (N + 1,) int32
    width: int = dataclasses.field(metadata={"static": True})
    longest_row: int = dataclasses.field(metadata={"static": True})

    def dense(self, index: jax.Array, present: jax.Array) -> jax.Array:
        """Rows `index` (B,) as a dense (B, width) float32 block; rows not `present` are 0."""
        start = self.row_start[index]
        length = self.row_start[index + 1] - start
        offset = jnp.arange(self.longest_row)
        valid = (offset < length[:, None]) & present[:, None]
        position = jnp.where(valid, start[:, None] + offset, 0)
        columns = jnp.where(valid, self.columns[position], self.width)  # width: dropped
        rows = jnp.arange(index.shape[0])[:, None]
        block = jnp.zeros((index.shape[0], self.width), jnp.float32)
        return block.at[rows, columns].set(
            self.values[position], mode="drop", unique_indices=True, indices_are_sorted=True
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ResidentCells:
    """Every cell's batch fields, on the device: what `Batch` holds for B cells, for all N."""

    counts: DenseRows | SparseRows  # X (N, G)
    medians: DenseRows | SparseRows  # reference_X (N, G)
    dosage: DenseRows | SparseRows  # D (N, T)
    qc: jax.Array  # (N, Q) float32
    library_size: jax.Array  # (N,) float32


def gather_batch(cells: ResidentCells, index: jax.Array) -> dict[str, jax.Array]:
    """The batch dictionary of the cells `index` (B,), -1 for padding: the same arrays, value
    for value, that the host path builds (padding rows 0, weight 1 for real cells)."""
    present = index >= 0
    row = jnp.where(present, index, 0)
    weight = present.astype(jnp.float32)
    return {
        "X": cells.counts.dense(row, present),
        "D": cells.dosage.dense(row, present),
        "qc": cells.qc[row] * weight[:, None],
        "reference_X": cells.medians.dense(row, present),
        "library_size": cells.library_size[row] * weight,
        "weight": weight,
    }


def _sparse_rows(matrix: sp.csr_matrix, mesh: Mesh) -> SparseRows:
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    matrix.sum_duplicates()  # sorted, unique columns per row; the sums toarray() would give
    arrays = {
        "values": np.append(matrix.data, np.float32(0)),
        "columns": np.append(matrix.indices.astype(np.int32), np.int32(0)),
        "row_start": matrix.indptr.astype(np.int32),
    }
    longest_row = int(np.diff(matrix.indptr).max(initial=0))
    return SparseRows(**replicate(arrays, mesh), width=matrix.shape[1], longest_row=longest_row)


def _matrices(data: PerturbData) -> dict[str, sp.csr_matrix]:
    return {
        "counts": data.counts.matrix,
        "medians": data.counterfactual.table(),
        "dosage": data.dosage,
    }


def resident_bytes(data: PerturbData, layout: str) -> int:
    """Device bytes the resident data take in `layout` ("dense" or "sparse": 8 bytes per
    non-zero and 4 per row), the QC flags and library sizes included. Computes x^cf if it was
    not yet."""
    matrices = _matrices(data).values()
    if layout == "dense":
        tables = sum(4 * m.shape[0] * m.shape[1] for m in matrices)
    else:
        tables = sum(8 * m.nnz + 4 * m.shape[0] for m in matrices)
    return tables + data.qc.nbytes + 4 * data.n_cells


def resident_cells(data: PerturbData, mesh: Mesh, layout: str) -> ResidentCells:
    """`data`'s cells replicated on every device of `mesh`, in `layout` ("dense" or "sparse")."""
    rows = {}
    for name, matrix in _matrices(data).items():
        if layout == "dense":
            rows[name] = DenseRows(replicate(matrix.toarray().astype(np.float32), mesh))
        else:
            rows[name] = _sparse_rows(matrix, mesh)
    return ResidentCells(
        **rows,
        qc=replicate(data.qc.astype(np.float32), mesh),
        library_size=replicate(data.library_size.astype(np.float32), mesh),
    )


def device_memory(device: jax.Device) -> int:
    """Bytes of memory one device has: its allocator's limit, or the host's RAM for a CPU."""
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_pipeline(data: PerturbData, mesh: Mesh, pipeline: str, memory_share: float) -> str:
    """The input pipeline: "dense" or "sparse" (device-resident, in that layout) or "host".

    `pipeline` "host" and "device" are what the user asked; "auto" takes the device when the
    data are in memory and fit in `memory_share` of one device's memory. Dense is preferred
    where it fits. RunError for a device pipeline that cannot hold the data.
    """
    if pipeline not in PIPELINES:
        raise RunError(f"train.input_pipeline must be one of {PIPELINES}, got {pipeline!r}")
    if pipeline == "host":
        return "host"
    layout, reason = _resident_layout(data, mesh, memory_share)
    if layout is not None:
        return layout
    if pipeline == "device":
        raise RunError(f"train.input_pipeline=device: {reason}; use train.input_pipeline=host")
    return "host"


def _resident_layout(data: PerturbData, mesh: Mesh, memory_share: float) -> tuple[str | None, str]:
    """The layout the data fit on the device in, or None and the reason they do not."""
    if not isinstance(data.counts, InMemoryCounts):
        return None, "data.backed=True keeps the counts on disk, and they must be in memory"
    available = memory_share * min(device_memory(d) for d in mesh.local_devices)
    if resident_bytes(data, "dense") <= available:
        return "dense", ""
    largest = max(m.nnz for m in _matrices(data).values())
    if largest >= INDEX_LIMIT:
        return None, f"a matrix holds {largest:,} non-zeros, more than int32 positions reach"
    needed = resident_bytes(data, "sparse")
    if needed <= available:
        return "sparse", ""
    return None, (
        f"the data take {needed / 2**30:.2f} GiB, more than train.device_memory_share="
        f"{memory_share:g} of a device's memory ({available / 2**30:.2f} GiB)"
    )
