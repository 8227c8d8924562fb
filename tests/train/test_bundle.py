"""A model.json or export written before a model field existed loads as the model it was."""

import dataclasses

from cradle_jax.models.config import default_model_config
from cradle_jax.train.bundle import model_config_of, param_shapes


def test_a_record_without_artifact_dispersion_builds_the_shared_dispersion_model():
    recorded = dataclasses.asdict(default_model_config(n_genes=7, n_perturbations=3, n_latent=4))
    assert recorded.pop("artifact_dispersion") is True  # what a current file records
    old = model_config_of(recorded)
    assert old.artifact_dispersion is False
    assert "artifact_log_theta" not in param_shapes(old)  # matches the old checkpoints
    new = model_config_of({**recorded, "artifact_dispersion": True})
    assert "artifact_log_theta" in param_shapes(new)


def test_a_record_without_the_linear_skip_builds_a_decoder_without_it():
    recorded = dataclasses.asdict(default_model_config(n_genes=7, n_perturbations=3, n_latent=4))
    assert recorded.pop("decoder_linear_skip") is True  # what a current file records
    recorded.pop("artifact_block")
    old = model_config_of(recorded)
    assert (old.decoder_linear_skip, old.artifact_block) == (False, False)
    assert "skip" not in param_shapes(old)["decoder$params"]  # matches the old checkpoints
    assert (
        "skip"
        in param_shapes(model_config_of({**recorded, "decoder_linear_skip": True}))[
            "decoder$params"
        ]
    )


def test_a_record_without_a_field_of_unchanged_behaviour_takes_its_default():
    current = default_model_config(n_genes=7, n_perturbations=3, n_latent=4)
    recorded = dataclasses.asdict(current)
    recorded.pop("name"), recorded.pop("compute_dtype")  # files before the baselines, bf16
    assert model_config_of(recorded) == current
