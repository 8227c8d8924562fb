"""Perturbation labels, the vocabulary of single perturbations and the dosage matrix D.

A label is the control label, one perturbation, or a combination of singles joined by a separator
(``A+B``). Labels are canonicalised (singles sorted, control members dropped) so ``B+A`` and
``A+B`` are one treatment. D has one column per single: multi-hot for combinations, a zero row
for control (docs/data.md#perturbation-labels).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerturbationVocabulary:
    """The single perturbations (dosage columns, sorted) and how labels are spelled."""

    singles: tuple[str, ...]
    separator: str
    control_label: str

    @property
    def size(self) -> int:
        return len(self.singles)

    def parse(self, label: str) -> tuple[str, ...]:
        """The sorted singles of one label; () for control. Raises DataError on malformed labels."""
        members = split_label(label, self.separator, self.control_label)
        unknown = [m for m in members if m not in self._positions]
        if unknown:
            raise DataError(
                f"unknown perturbation {unknown[0]!r} in {label!r}: not among the {self.size} "
                "perturbations seen in training"
            )
        return members

    def canonical(self, label: str) -> str:
        members = self.parse(label)
        return self.separator.join(members) if members else self.control_label

    def dosage(self, labels: Sequence[str]) -> sp.csr_matrix:
        """D (n, T) float32: one row per label, 1 in the column of each member single."""
        rows, cols = [], []
        for row, label in enumerate(labels):
            for member in self.parse(label):
                rows.append(row)
                cols.append(self._positions[member])
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(labels), self.size))

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.singles)}

    def to_dict(self) -> dict:
        return {
            "singles": list(self.singles),
            "separator": self.separator,
            "control_label": self.control_label,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PerturbationVocabulary":
        return cls(tuple(d["singles"]), d["separator"], d["control_label"])


def split_label(label: str, separator: str, control_label: str) -> tuple[str, ...]:
    """Sorted member singles of `label`; control, alone or as a member (``A+ctrl``), drops out."""
    parts = [p.strip() for p in str(label).split(separator)]
    if any(not p for p in parts):
        raise DataError(f"malformed perturbation label {label!r}: empty name around {separator!r}")
    members = [p for p in parts if p != control_label]
    if len(set(members)) != len(members):
        raise DataError(f"perturbation label {label!r} names the same perturbation twice")
    return tuple(sorted(members))


def read_labels(
    obs: pd.DataFrame, column: str, separator: str, control_label: str
) -> tuple[np.ndarray, PerturbationVocabulary]:
    """Canonical labels (N,) object array and the vocabulary, from one obs column.

    Raises DataError for a missing column, missing values, or a control label that no cell has.
    """
    if not separator:
        raise DataError(
            "the separator is empty: it is the text that joins singles, e.g. '+'",
            setting="data.separator",
        )
    if column not in obs.columns:
        raise DataError(
            f"perturbation column {column!r} not in obs "
            f"(columns: {', '.join(map(str, obs.columns))})",
            setting="data.perturbation_key",
        )
    raw = obs[column]
    n_missing = int(raw.isna().sum())
    if n_missing:
        raise DataError(f"perturbation column {column!r} has {n_missing} missing values (NaN)")
    # Factorise before turning values into text, so a million cells share a few label strings.
    codes, distinct = pd.factorize(raw)
    uniques, text_code = np.unique(
        np.array([str(v) for v in distinct], dtype=object), return_inverse=True
    )
    inverse = text_code[codes]
    parsed = [split_label(u, separator, control_label) for u in uniques]
    if not any(len(p) == 0 for p in parsed):
        shown = ", ".join(repr(u) for u in uniques[:5])
        raise DataError(
            f"control label {control_label!r} not found in column {column!r} "
            f"(values include {shown})",
            setting="data.control_label",
        )
    singles = tuple(sorted({m for p in parsed for m in p}))
    if not singles:
        raise DataError(f"column {column!r} holds only control cells: nothing to model")
    canonical = np.array([separator.join(p) if p else control_label for p in parsed], dtype=object)
    vocab = PerturbationVocabulary(singles, separator, control_label)
    _warn_non_assignments(singles, parsed, np.bincount(inverse, minlength=len(uniques)))
    return canonical[inverse], vocab


# Values a guide-assignment step writes for cells it could not assign to one perturbation.
NON_ASSIGNMENT = frozenset(
    {"unassigned", "multiplet", "multiplets", "none", "na", "n/a", "nan", "null", "unknown",
     "ambiguous", "doublet", "no_guide", "noguide", "negative", "undetermined", "unmapped"}
)  # fmt: skip


def non_assignment_labels(singles: tuple[str, ...]) -> list[str]:
    """The singles whose name says "no confident guide" rather than naming a perturbation."""
    return [single for single in singles if single.strip().lower() in NON_ASSIGNMENT]


def _warn_non_assignments(singles, parsed, cells_per_value: np.ndarray) -> None:
    for single in non_assignment_labels(singles):
        n_cells = int(sum(n for p, n in zip(parsed, cells_per_value, strict=True) if single in p))
        log.warning(
            "perturbation %r (%d cells) looks like a failed guide assignment, not a "
            "perturbation, and would be trained as one; drop those cells before training "
            "(e.g. with an --adapter, README 'Your data')",
            single,
            n_cells,
        )
