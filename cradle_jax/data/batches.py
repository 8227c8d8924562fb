"""Mini-batches for training and evaluation: shuffled per epoch, densified one batch at a time.

The order of epoch e is a function of (seed, e) alone (docs/method.md#randomness), and iteration
can start at any batch of an epoch, so a resumed run sees exactly the batches an uninterrupted
one would. The last batch is padded with weight-0 cells to a multiple of `pad_multiple` (the
device count, or the batch size for one static shape), so every cell counts exactly once
(docs/data.md#batches).
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.seeding import host_rng

PADDING = -1  # row index of a padding cell


@dataclass(frozen=True)
class Batch:
    """One mini-batch of B cells (padding included), all float32 except `index`.

    X, reference_X (B, G) counts and reference medians (x^cf, docs/method.md#notation); D (B, T)
    dosage; qc (B, Q) flags (1 = fail); library_size (B,); weight (B,) 1 for real cells, 0 for
    padding; index (B,) row in the dataset, -1 for padding.
    """

    X: np.ndarray
    D: np.ndarray
    qc: np.ndarray
    reference_X: np.ndarray
    library_size: np.ndarray
    weight: np.ndarray
    index: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def epoch_order(cells: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The cells of a split in the shuffled order of `epoch`."""
    return host_rng(seed, "shuffle", epoch).permutation(cells)


def num_batches(n_cells: int, batch_size: int) -> int:
    return -(-n_cells // batch_size)


def pad_rows(a: np.ndarray, n_rows: int, fill: float = 0) -> np.ndarray:
    """`a` with rows of `fill` appended up to `n_rows` rows (the weight-0 padding cells)."""
    return np.concatenate([a, np.full((n_rows - len(a), *a.shape[1:]), fill, dtype=a.dtype)])


def build_batch(data: PerturbData, index: np.ndarray, pad_to: int) -> Batch:
    """Densify the cells `index` (any order) and pad them to `pad_to` rows."""
    x = data.counts.rows(index).toarray()
    cf = data.counterfactual.rows(index)
    weight = np.ones(len(index), dtype=np.float32)

    def padded(a: np.ndarray, fill: float = 0) -> np.ndarray:
        return pad_rows(a, pad_to, fill)

    return Batch(
        X=padded(x.astype(np.float32)),
        D=padded(data.dosage[index].toarray()),
        qc=padded(data.qc[index]),
        reference_X=padded(cf),
        library_size=padded(data.library_size[index]),
        weight=padded(weight),
        index=padded(index.astype(np.int64), PADDING),
    )


def batch_indices(
    data: PerturbData,
    split: str,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    shuffle: bool = True,
    pad_multiple: int | None = None,
    start_batch: int = 0,
) -> Iterator[np.ndarray]:
    """Row indices of each batch of one split for one epoch, from batch `start_batch` on.

    Each array is padded with PADDING (-1) at its end to a multiple of `pad_multiple`, which
    defaults to `batch_size` so every batch has the same shape.
    """
    pad_multiple = pad_multiple or batch_size
    if batch_size % pad_multiple:
        raise ValueError(f"batch size {batch_size} is not a multiple of {pad_multiple}")
    cells = data.cells(split)
    order = epoch_order(cells, seed, epoch) if shuffle else cells
    for start in range(start_batch * batch_size, len(order), batch_size):
        index = order[start : start + batch_size].astype(np.int64)
        pad_to = -(-len(index) // pad_multiple) * pad_multiple
        yield np.concatenate([index, np.full(pad_to - len(index), PADDING, dtype=np.int64)])


def build_local_batch(data: PerturbData, index: np.ndarray, rows: slice) -> Batch:
    """The rows `rows` of a padded batch `index`: the share one process feeds to its devices."""
    local = index[rows]
    return build_batch(data, local[local != PADDING], pad_to=len(local))


def iterate_batches(
    data: PerturbData,
    split: str,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    shuffle: bool = True,
    pad_multiple: int | None = None,
    start_batch: int = 0,
) -> Iterator[Batch]:
    """Whole batches of one split for one epoch (see `batch_indices`)."""
    for index in batch_indices(
        data,
        split,
        batch_size,
        seed=seed,
        epoch=epoch,
        shuffle=shuffle,
        pad_multiple=pad_multiple,
        start_batch=start_batch,
    ):
        yield build_local_batch(data, index, slice(None))
