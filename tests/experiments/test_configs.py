"""The experiment configs: same fields as default.py, the published values of
docs/method.md#published-hyperparameters, and accepted by the model and loss resolvers.

Config files are loaded by path, as `--config FILE` loads them, not imported as a package.
"""

from pathlib import Path

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from cradle_jax.config import load_config_file
from cradle_jax.models.config import resolve_model_config
from cradle_jax.train.config import resolve_loss_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "experiments" / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.glob("[!_]*.py"))

# Every dataset config (docs/method.md#published-hyperparameters; the paper sweep's value where
# demo and sweep differ).
COMMON = {
    "data.qc_threshold": 3,
    "data.qc_mode": "total",
    "data.references": "same_treatment_fail",
    "model.likelihood": "library_nb",
    "model.sum_mode": False,
    "model.decoder_n_layers": 1,
    "model.decoder_n_hidden": 400,
    "model.basal_encoder_n_layers": 1,
    "model.basal_encoder_n_hidden": 400,
    "model.embedding_encoder_n_layers": 4,
    "model.embedding_encoder_n_hidden": 400,
    "model.embedding_prior_scale": 1.0,
    "model.gs_temperature": 1.0,
    "model.mask_init_logits": 3.0,  # ours, not the published 0 (docs/decisions.md#masks-start-on)
    "model.n_particles": 5,
    "model.artifact_dispersion": True,  # ours (docs/decisions.md#artifact-dispersion)
    "model.artifact_block": False,
    "model.decoder_linear_skip": True,  # ours (docs/decisions.md#decoder-linear-skip)
    "loss.alpha": "batch",
    "loss.alpha_scope": "cell",  # ours (docs/decisions.md#class-weight-scope)
    "loss.independence": 10.0,  # ours (docs/decisions.md#basal-independence)
    "loss.independence_groups": "perturbation",
    "loss.cf_kl": "exact",  # ours, not the original's form (docs/decisions.md#cf-kl-exact)
    "train.batch_size": 512,
    "train.weight_decay": 1e-6,
    "train.mask_lr_scale": 10.0,  # ours (docs/decisions.md#mask-learning-rate)
    "train.dispersion_lr_scale": 1.0,
    "train.likelihood_from_data": True,  # ours (docs/decisions.md#likelihood-from-data)
    "train.clip_norm": 100.0,
    "train.max_epochs": 2000,
    "train.checkpoint_every_steps": 2000,
    "train.iwelbo_particles": 100,
    "train.iwelbo_batch_size": 128,
    "train.input_pipeline": "auto",  # ours (docs/decisions.md#device-resident-data)
    "train.device_memory_share": 0.5,
    "train.input_workers": 4,
    "seed": 0,
}
PAIRS = {
    "data.split": "combinations",
    "data.split_seed": 0,
    "data.frac_combinations_train": 0.75,
}
RANDOM = {"data.split": "random", "data.split_seed": 0}
PUBLISHED = {
    "norman": PAIRS
    | {
        "model.n_latent": 200,
        "model.mask_prior_prob": 0.01,
        "loss.beta": 0.5,
        "train.learning_rate": 3e-4,
        "train.patience": 50,
    },
    "dixit": PAIRS
    | {
        "model.n_latent": 200,
        "model.mask_prior_prob": 0.01,
        "loss.beta": 0.5,
        "train.learning_rate": 3e-4,
        "train.patience": 50,
    },
    "replogle": RANDOM
    | {
        "model.n_latent": 200,
        "model.mask_prior_prob": 0.001,
        "loss.beta": 0.05,
        "train.learning_rate": 1e-3,
        "train.patience": 100,
    },
    "adamson": RANDOM
    | {
        "model.n_latent": 100,
        "model.mask_prior_prob": 0.001,
        "loss.beta": 0.1,
        "train.learning_rate": 1e-4,
        "train.patience": 50,
    },
}


def _flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_every_dataset_config_is_present():
    assert {p.stem for p in CONFIG_FILES} >= {"default", "synthetic", *PUBLISHED}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_same_fields_as_default(path):
    """An override with a typo would add a field the code never reads."""
    default = _flatten(load_config_file(CONFIG_DIR / "default.py"))
    assert set(_flatten(load_config_file(path))) == set(default)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_resolves(path):
    config = load_config_file(path)
    resolve_model_config(config.model, n_genes=50, n_perturbations=4, n_qc=1)
    resolve_loss_config(config.loss)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_values(name):
    flat = _flatten(load_config_file(CONFIG_DIR / f"{name}.py"))
    expected = COMMON | PUBLISHED[name]
    assert {k: flat[k] for k in expected} == expected
    assert flat["data.path"] == ""  # the user names the prepared file


def test_synthetic_reads_the_demo_file():
    config = load_config_file(CONFIG_DIR / "synthetic.py")
    assert config.data.path == "runs/demo/simulated.h5ad"
    assert config.data.split == "combinations"


# ml_collections loads config files with the deprecated SourceFileLoader.load_module.
@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_loads_through_config_flags_from_another_directory(tmp_path, monkeypatch):
    """`--config FILE` works from any directory, and `--config.a.b=v` overrides one field."""
    monkeypatch.chdir(tmp_path)
    argv = ["prog", f"--config={CONFIG_DIR / 'norman.py'}", "--config.train.learning_rate=1e-3"]
    flag_values = flags.FlagValues()
    # Override flags are defined from the command line seen at definition time.
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    config = flag_values.config
    assert config.train.learning_rate == 1e-3
    assert config.data.split == "combinations"
