"""What each column of the evaluate table (all, train, val, test) compares the model with
(docs/metrics.md#columns).

A split by cells (`data.split` = random or column) puts cells of every label in every split, so
a column is held out only if its reference is: column s compares the model ATE with the data ATE
of split s's own QC-pass cells (each label's cells of s minus the controls of s), and `test` is
then a score against cells the model never trained on. A split by perturbations (combinations)
holds out whole labels, whose cells are all out of training (in test or unused): there every
column compares with the data ATE of all QC-pass cells and differs from `all` by its labels.
"""

import numpy as np

from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.errors import DataError
from cradle_jax.data.splits import SPLIT_CODES, UNUSED
from cradle_jax.evaluate.scores.ate import group_means, label_rows

COLUMNS = ("all", "train", "val", "test")
CELL_SPLITS = ("random", "column")  # data.split values that split cells, not perturbations
_SLOTS = (*(SPLIT_CODES[name] for name in COLUMNS[1:]), UNUSED)  # every cell has one


def by_cells(split_mode: str) -> bool:
    """Whether `data.split` splits cells (a column's reference is its own cells)."""
    return split_mode in CELL_SPLITS


def labels_by_split(data: PerturbData) -> dict[str, list[str]]:
    """The treatment labels (control excluded) with at least one cell in each split."""
    control = data.vocabulary.control_label
    result = {"all": sorted(set(data.labels) - {control})}
    for split in COLUMNS[1:]:
        observed = set(data.labels[data.split == SPLIT_CODES[split]])
        result[split] = sorted(observed - {control})
    return result


def _slot_means(data: PerturbData, wanted: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(slots, len(wanted), G) means over QC-pass cells of each label in each split slot
    (train, val, test, unused), in one pass over the counts, and their cell counts."""
    slot = np.full(data.n_cells, -1)
    for i, code in enumerate(_SLOTS):
        slot[data.split == code] = i
    rows = label_rows(data, wanted)
    keep = (rows >= 0) & (data.qc.max(axis=1) == 0)
    group = np.where(keep, slot * len(wanted) + rows, -1)
    means, n_cells = group_means(data, group, len(_SLOTS) * len(wanted))
    shape = (len(_SLOTS), len(wanted))
    return means.reshape(*shape, -1), n_cells.reshape(shape)


def data_ate_by_split(
    data: PerturbData, labels: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """(len(labels), G) data ATE of each label against control over the QC-pass cells of every
    split ("all") and of each split alone, and the labels each split's table defines.

    A split's table has NaN rows for the labels without a QC-pass cell in it; a split without
    a QC-pass control cell (one that holds out perturbations) takes the controls of all splits.
    A label (or control) without any QC-pass cell is a DataError naming it, as for `data_ate`.
    """
    wanted = [data.vocabulary.control_label, *labels]
    means, n_cells = _slot_means(data, wanted)
    total = n_cells.sum(axis=0)
    empty = [wanted[i] for i in np.flatnonzero(total == 0)]
    if empty:
        raise DataError(f"no QC-pass cells for {empty[0]!r}: its data ATE is undefined")
    pooled = np.einsum("sk,skg->kg", n_cells, np.nan_to_num(means)) / total[:, None]
    tables = {"all": (pooled[1:] - pooled[0]).astype(np.float32)}
    present = {"all": list(labels)}
    for i, split in enumerate(COLUMNS[1:]):
        control = means[i, 0] if n_cells[i, 0] else pooled[0]
        tables[split] = (means[i, 1:] - control).astype(np.float32)
        present[split] = [label for label, n in zip(labels, n_cells[i, 1:], strict=True) if n]
    return tables, present


def column_legend(split_mode: str, per_split_references: bool) -> dict[str, str]:
    """One line per column of the table: its labels, and the cells whose data ATE it compares
    with (its reference)."""
    legend = {"all": "every label; reference: all QC-pass cells (any split)"}
    if by_cells(split_mode) and per_split_references:
        why = {
            "train": "the model was fitted on them",
            "val": "they chose the best epoch",
            "test": "never trained on: the held-out score",
        }
        for split, reason in why.items():
            legend[split] = (
                f"labels with QC-pass {split} cells; reference: the {split} cells only ({reason})"
            )
        return legend
    roles = {
        "train": "seen in training",
        "val": "with val cells",
        "test": "held out of training" if split_mode == "combinations" else "with test cells",
    }
    for split, role in roles.items():
        legend[split] = f"labels {role}; reference: all QC-pass cells of each label"
    return legend
