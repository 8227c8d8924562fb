"""One-file export of a trained model: enough to evaluate and generate without the data.

A `.cradle` file is an uncompressed NumPy .npz holding the parameters (one array per leaf,
keyed by its path), the normalisation statistics, the data side of the evaluation (labels, data
ATE, planted truth when simulated, test IWELBO) and a JSON record (format version, config,
architecture, vocabulary, genes, QC thresholds, the training data's depth, library versions).
No pickled objects: any NumPy reads it. Written atomically. The non-learned baselines' ATE
tables, each split's own data ATE, each cell's split by name, the real cells' library sizes for
the QC pass rate and the training data's depth ride along (absent in exports older than them,
which still load).
"""

import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cradle_jax import atomic
from cradle_jax.data.cell_splits import CellSplits
from cradle_jax.data.statistics import LogStandardizeStats
from cradle_jax.evaluate.scores.data_reference import DataReference
from cradle_jax.train.bundle import ModelBundle, bundle_from_meta, library_versions, param_shapes
from cradle_jax.train.checkpoints import check_param_shapes
from cradle_jax.train.errors import RunError

FORMAT_VERSION = 1
_SEP = "/"
BASELINE_PREFIX = "reference/baseline/"
SPLIT_ATE_PREFIX = "reference/data_ate_split/"
QC_LIBRARY_KEY = "reference/qc_library_sizes"


def _flatten(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in params.items():
        if _SEP in key:
            raise ValueError(f"parameter name {key!r} contains {_SEP!r}")
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}{_SEP}"))
        else:
            flat[f"{prefix}{key}"] = np.asarray(value)
    return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    params: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split(_SEP)
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return params


def export_model(bundle: ModelBundle, reference: DataReference, out: str | os.PathLike) -> Path:
    """Write `bundle` and its evaluation reference to `out` atomically."""
    meta = {
        "format_version": FORMAT_VERSION,
        "config": json.loads(bundle.config.to_json()),
        "model": asdict(bundle.cfg),
        "vocabulary": bundle.vocabulary.to_dict(),
        "gene_names": [str(g) for g in bundle.gene_names],
        "qc_columns": list(bundle.qc_columns),
        "qc_thresholds": bundle.qc_thresholds.to_dict(),
        "training_depth": (
            None if bundle.training_depth is None else bundle.training_depth.to_dict()
        ),
        "versions": {"trained_with": bundle.versions, "exported_with": library_versions()},
        "reference": {
            "labels": reference.labels,
            "labels_by_split": reference.labels_by_split,
            "headline_split": reference.headline_split,
            "real_median_library": reference.real_median_library,
            "real_pass_rate": reference.real_pass_rate,
            "test_iwelbo": reference.test_iwelbo,
            "true_top_ks": sorted(reference.true_top) if reference.true_top else [],
        },
    }
    arrays = {f"param{_SEP}{k}": v for k, v in _flatten(bundle.params).items()}
    arrays["normalization/mean"] = bundle.normalization.mean
    arrays["normalization/std"] = bundle.normalization.std
    arrays["reference/data_ate"] = reference.data_ate
    if reference.true_ate is not None:
        arrays["reference/true_ate"] = reference.true_ate
        for k, top in reference.true_top.items():
            arrays[f"reference/true_top{k}"] = top
    for name, table in reference.baseline_ate.items():
        arrays[f"{BASELINE_PREFIX}{name}"] = table
    for split, table in reference.data_ate_by_split.items():
        arrays[f"{SPLIT_ATE_PREFIX}{split}"] = table
    if reference.cell_splits is not None:
        arrays.update(reference.cell_splits.arrays())
    if reference.qc_library_sizes is not None:
        arrays[QC_LIBRARY_KEY] = reference.qc_library_sizes
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic.replacing(out) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # a handle: savez would append .npz to a path
    return Path(out)


def load_export(path: str | os.PathLike) -> tuple[ModelBundle, DataReference]:
    """The bundle and evaluation reference of an export; RunError if it cannot be used."""
    if not Path(path).is_file():
        raise RunError(f"export file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise RunError(f"{path} is not a cradle-jax export (not a NumPy .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise RunError(f"{path} is not a cradle-jax export: {err}".splitlines()[0]) from err
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RunError(
            f"{path} has export format {version!r}; this cradle-jax reads up to "
            f"{FORMAT_VERSION}: upgrade cradle-jax"
        )
    try:
        return _from_export(arrays, meta, path)
    except KeyError as err:
        raise RunError(f"{path} is an incomplete export: {err} is missing") from err


def _from_export(
    arrays: dict[str, np.ndarray], meta: dict, path: str | os.PathLike
) -> tuple[ModelBundle, DataReference]:
    """The bundle and reference of an export's arrays and its JSON record."""
    prefix = f"param{_SEP}"
    params = _unflatten({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
    normalization = LogStandardizeStats(arrays["normalization/mean"], arrays["normalization/std"])
    meta["versions"] = meta["versions"]["trained_with"]
    bundle = bundle_from_meta(meta, params, normalization)
    check_param_shapes(params, param_shapes(bundle.cfg), str(path))
    ref = meta["reference"]
    true_ate = arrays.get("reference/true_ate")
    reference = DataReference(
        labels=ref["labels"],
        labels_by_split=ref["labels_by_split"],
        headline_split=ref["headline_split"],
        data_ate=arrays["reference/data_ate"],
        real_median_library=ref["real_median_library"],
        real_pass_rate=ref["real_pass_rate"],
        test_iwelbo=ref["test_iwelbo"],
        true_ate=true_ate,
        true_top={k: arrays[f"reference/true_top{k}"] for k in ref["true_top_ks"]} or None,
        baseline_ate=_prefixed(arrays, BASELINE_PREFIX),
        data_ate_by_split=_prefixed(arrays, SPLIT_ATE_PREFIX),
        cell_splits=CellSplits.from_arrays(arrays),
        qc_library_sizes=arrays.get(QC_LIBRARY_KEY),
    )
    return bundle, reference


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose key starts with `prefix`, keyed by the rest of it."""
    return {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
