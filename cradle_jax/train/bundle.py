"""A trained model with everything needed to use it without the training data.

The trainer writes `model.json` (architecture, vocabulary, genes, QC thresholds, the training
data's depth, versions) and
`normalization.npz` into the workdir when training starts; with the best checkpoint's parameters
they form a ModelBundle. `export` puts a bundle in one .npz file that evaluate and generate can
load on another machine.
"""

import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import jax
import ml_collections
import numpy as np

from cradle_jax import atomic
from cradle_jax.config import model_config
from cradle_jax.data.dataset import PerturbData, with_generated_basis
from cradle_jax.data.depth import TrainingDepth, training_depth
from cradle_jax.data.perturbations import PerturbationVocabulary
from cradle_jax.data.qc import QCThresholds
from cradle_jax.data.statistics import LogStandardizeStats
from cradle_jax.models.config import ModelConfig
from cradle_jax.train.checkpoints import Checkpoints
from cradle_jax.train.errors import RunError
from cradle_jax.train.mesh import to_host
from cradle_jax.train.objective import init_params, placeholder_inputs

META_NAME = "model.json"
NORMALIZATION_NAME = "normalization.npz"
LIBRARIES = (
    "cradle-jax", "jax", "jaxlib", "flax", "numpyro", "optax", "orbax-checkpoint", "numpy",
    "scipy", "anndata", "scanpy",
)  # fmt: skip


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a trained model depends on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class ModelBundle:
    """Parameters and the metadata that give them meaning."""

    config: ml_collections.ConfigDict  # the resolved experiment config
    cfg: ModelConfig
    params: dict
    vocabulary: PerturbationVocabulary
    gene_names: np.ndarray  # (G,)
    qc_columns: tuple[str, ...]
    qc_thresholds: QCThresholds
    normalization: LogStandardizeStats
    versions: dict[str, str]
    # The library sizes generated cells draw from by default (docs/data.md#training-depth);
    # None for a model.json or export written before it was recorded.
    training_depth: TrainingDepth | None = None


def model_meta(data: PerturbData, cfg: ModelConfig, config: ml_collections.ConfigDict) -> dict:
    """The JSON part of a bundle for a model of `cfg` trained on `data` with `config`. The
    generated cells' QC basis is fitted here, where the bundle stores it, rather than at each
    load of the training data (docs/metrics.md#qc-basis)."""
    thresholds = with_generated_basis(data, config.data, config.seed).qc_thresholds
    return {
        "config": json.loads(config.to_json()),
        "model": asdict(cfg),
        "vocabulary": data.vocabulary.to_dict(),
        "gene_names": [str(g) for g in data.gene_names],
        "qc_columns": list(data.qc_columns),
        "qc_thresholds": thresholds.to_dict(),
        "training_depth": training_depth(data, config.seed).to_dict(),
        "versions": library_versions(),
    }


def write_model_meta(
    workdir: Path, data: PerturbData, cfg: ModelConfig, config: ml_collections.ConfigDict
) -> None:
    """model.json and normalization.npz in the workdir, each written atomically."""
    atomic.write_json(workdir / META_NAME, model_meta(data, cfg, config))
    with atomic.replacing(workdir / NORMALIZATION_NAME) as tmp:
        np.savez(tmp, mean=data.normalization.mean, std=data.normalization.std)


# Model fields added after files were first written, with the value such files were trained
# with: a model.json or export without them loads as the model it was. Any other field a file
# lacks takes its default (`cradle_jax.config.model_config`).
FIELDS_BEFORE_THEY_EXISTED = {
    "artifact_dispersion": False,
    "artifact_block": False,
    "decoder_linear_skip": False,
}


def model_config_of(recorded: dict) -> ModelConfig:
    """The ModelConfig a model.json or export records, older files included."""
    return ModelConfig(**{**model_config().to_dict(), **FIELDS_BEFORE_THEY_EXISTED, **recorded})


def bundle_from_meta(meta: dict, params: dict, normalization: LogStandardizeStats) -> ModelBundle:
    return ModelBundle(
        config=ml_collections.ConfigDict(meta["config"]),
        cfg=model_config_of(meta["model"]),
        params=params,
        vocabulary=PerturbationVocabulary.from_dict(meta["vocabulary"]),
        gene_names=np.asarray(meta["gene_names"], dtype=object),
        qc_columns=tuple(meta["qc_columns"]),
        qc_thresholds=QCThresholds.from_dict(meta["qc_thresholds"]),
        normalization=normalization,
        versions=meta["versions"],
        training_depth=(
            TrainingDepth.from_dict(meta["training_depth"]) if meta.get("training_depth") else None
        ),
    )


def read_workdir_meta(workdir: Path) -> tuple[dict, LogStandardizeStats]:
    """model.json and the normalisation statistics of a workdir; RunError if it has none."""
    path = Path(workdir) / META_NAME
    if not path.exists():
        raise RunError(f"{workdir} holds no trained model ({META_NAME} is missing): train first")
    if not (Path(workdir) / NORMALIZATION_NAME).exists():
        raise RunError(f"{workdir} is incomplete: {NORMALIZATION_NAME} is missing; train again")
    with np.load(Path(workdir) / NORMALIZATION_NAME) as stats:
        normalization = LogStandardizeStats(stats["mean"], stats["std"])
    return json.loads(path.read_text()), normalization


def param_shapes(cfg: ModelConfig, sharding: jax.sharding.Sharding | None = None) -> dict:
    """The parameter tree `cfg` builds, as ShapeDtypeStructs (nothing is computed)."""
    shapes = jax.eval_shape(
        lambda key: init_params(key, *placeholder_inputs(cfg), cfg), jax.random.key(0)
    )
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def load_workdir(workdir: str | Path) -> ModelBundle:
    """The best-validation parameters of a workdir with their metadata."""
    meta, normalization = read_workdir_meta(Path(workdir))
    cfg = model_config_of(meta["model"])
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    checkpoints = Checkpoints(workdir)
    try:
        params = checkpoints.restore_best_params(param_shapes(cfg, device))
    finally:
        checkpoints.close()
    return bundle_from_meta(meta, to_host(params), normalization)
