"""Helpers for sweep files: build lists of override dicts (big_vision style).

An override dict maps a dotted config field to a value, `{"data.qc_threshold": 4, "seed": 1}`.
A factor is either such a dict of value lists, `{"seed": [0, 1], "loss.beta": [0.1, 0.5]}`,
read as the grid over its fields, or a list of override dicts.

    product({"data.split_seed": range(5), "data.qc_threshold": [3, 4, 5]})  # 15 runs
    product(zipped({"model.name": ["cradle", "cvae"], "loss.beta": [0.5, 0.0]}),
            {"seed": [0, 1, 2]})                                             # 6 runs
"""

import itertools
from collections.abc import Iterable, Mapping

Overrides = dict[str, object]
Factor = Mapping[str, Iterable] | Iterable[Mapping[str, object]]


def _rows(factor: Factor) -> list[Overrides]:
    """A factor as a list of override dicts."""
    if isinstance(factor, Mapping):
        keys = list(factor)
        combinations = itertools.product(*(list(factor[key]) for key in keys))
        return [dict(zip(keys, values, strict=True)) for values in combinations]
    return [dict(row) for row in factor]


def product(*factors: Factor) -> list[Overrides]:
    """Every combination of one row of each factor, the first factor varying slowest.

    A field set by two factors is an error: one of them would silently win.
    """
    result: list[Overrides] = [{}]
    for factor in factors:
        rows = _rows(factor)
        for left in result:
            for right in rows:
                shared = left.keys() & right.keys()
                if shared:
                    raise ValueError(f"product: {sorted(shared)} set by two factors")
        result = [{**left, **right} for left in result for right in rows]
    return result


def zipped(axes: Mapping[str, Iterable]) -> list[Overrides]:
    """Row i sets every field to its i-th value; the value lists must be equally long."""
    keys = list(axes)
    columns = [list(axes[key]) for key in keys]
    if len({len(column) for column in columns}) > 1:
        lengths = ", ".join(f"{k}: {len(c)}" for k, c in zip(keys, columns, strict=True))
        raise ValueError(f"zipped: value lists of different lengths ({lengths})")
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]
