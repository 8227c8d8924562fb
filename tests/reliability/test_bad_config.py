"""Bad flags and config fields for `train`: one named error line, exit status 2, and the
workdir is never created (every check runs before the first write)."""

import pytest

from tests.reliability.builders import FAST
from tests.reliability.harness import assert_user_error, run_cli, snapshot
from tests.train.conftest import cli_overrides

CONFIG_CASES = {
    "unknown_field": (
        {"model.n_latnt": 3},
        ("--config.model.n_latnt", "no such field", "n_latent"),
    ),
    "unknown_section": ({"modle.n_latent": 3}, ("--config.modle.n_latent", "no such field")),
    "text_for_an_int": ({"train.batch_size": "abc"}, ("--config.train.batch_size=abc",)),
    "float_for_an_int": ({"model.n_latent": 3.5}, ("--config.model.n_latent=3.5",)),
    "unknown_model_name": ({"model.name": "vae9"}, ("model.name must be one of", "'vae9'")),
    "unknown_likelihood": ({"model.likelihood": "gaussian"}, ("model.likelihood", "'gaussian'")),
    "unknown_init": ({"model.init": "xavier"}, ("model.init", "'xavier'")),
    "zero_latent_size": ({"model.n_latent": 0}, ("model.n_latent must be at least 1",)),
    "zero_particles": ({"model.n_particles": 0}, ("model.n_particles must be at least 1",)),
    "mask_prior_above_one": ({"model.mask_prior_prob": 1.5}, ("model.mask_prior_prob",)),
    "zero_batch_size": ({"train.batch_size": 0}, ("train.batch_size must be at least 1",)),
    "negative_batch_size": ({"train.batch_size": -32}, ("train.batch_size must be at least 1",)),
    "negative_learning_rate": (
        {"train.learning_rate": -1e-3},
        ("train.learning_rate must be at least 0",),
    ),
    "unknown_input_pipeline": (
        {"train.input_pipeline": "gpu"},
        ("train.input_pipeline must be one of", "'gpu'"),
    ),
    "memory_share_above_one": (
        {"train.device_memory_share": 1.5},
        ("train.device_memory_share must be in (0, 1]",),
    ),
    "zero_epochs": ({"train.max_epochs": 0}, ("train.max_epochs must be at least 1",)),
    "negative_cf_kl_weight": ({"loss.beta": -1}, ("loss.beta", "must be >= 0", "-1")),
    "negative_independence_weight": ({"loss.independence": -0.5}, ("loss.independence",)),
    "nan_learning_rate": ({"train.learning_rate": "nan"}, ("train.learning_rate", "finite")),
    "infinite_prior_scale": (
        {"model.embedding_prior_scale": "inf"},
        ("model.embedding_prior_scale", "finite"),
    ),
    "unknown_alpha_mode": ({"loss.alpha": "sometimes"}, ("loss.alpha", "'sometimes'")),
    "unknown_cf_kl_form": ({"loss.cf_kl": "approx"}, ("loss.cf_kl", "'approx'")),
    "unknown_reference_mode": ({"data.references": "nearest"}, ("data.references", "'nearest'")),
    "zero_reference_samples": ({"data.n_reference_samples": 0}, ("data.n_reference_samples",)),
    "unknown_split": ({"data.split": "stratified"}, ("data.split", "'stratified'")),
    "unknown_qc_mode": ({"data.qc_mode": "any"}, ("data.qc_mode", "'any'")),
    "combination_share_above_one": (
        {"data.split": "combinations", "data.frac_combinations_train": 1.5},
        ("data.frac_combinations_train",),
    ),
    "missing_reference_group_column": (
        {"data.reference_group_key": "batch"},
        ("reference group column 'batch'",),
    ),
    "combinations_for_svae_plus": ({"model.name": "svae_plus"}, ("svae_plus", "'A+B'")),
    "empty_data_path": ({"data.path": ""}, ("config.data.path is empty",)),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_config_field_gets_one_named_error_and_no_workdir(name, tiny_data, tmp_path):
    overrides, expect = CONFIG_CASES[name]
    workdir = tmp_path / "run"
    outcome = run_cli(
        "train", *cli_overrides(tiny_data, **{**FAST, **overrides}), f"--workdir={workdir}"
    )
    assert_user_error(outcome, *expect)
    assert not workdir.exists()


def test_missing_config_file(tmp_path):
    outcome = run_cli("train", f"--config={tmp_path / 'nope.py'}", f"--workdir={tmp_path / 'run'}")
    assert_user_error(outcome, "config file", "nope.py", "does not exist")
    assert snapshot(tmp_path) == {}


def test_unknown_flag(tiny_data, tmp_path):
    outcome = run_cli("train", *cli_overrides(tiny_data), f"--wrkdir={tmp_path / 'run'}")
    assert_user_error(outcome, "'wrkdir'", "workdir")
    assert snapshot(tmp_path) == {}
