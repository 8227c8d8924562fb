"""The architecture of a model (`ModelConfig`): the `model` section of an experiment config
(its fields and defaults: `cradle_jax.config.model_config`) checked and sized to a dataset.

One dataclass serves the four model families (docs/method.md#families): `name` picks the family,
and each family reads the fields it has:

| field | cradle | sams_vae | cvae | svae_plus |
|---|---|---|---|---|
| n_latent, n_particles, likelihood, init, decoder_*, basal_encoder_* | ✓ | ✓ | ✓ | ✓ |
| compute_dtype (of the networks' matrix products) | ✓ | ✓ | ✓ | ✓ |
| sum_mode, mask_prior_prob, embedding_prior_scale, embedding_encoder_* | ✓ | ✓ | | |
| mask_init_logits, gs_temperature | ✓ | ✓ | | ✓ |
| n_qc, artifact_dispersion, artifact_block (the artifact path) | ✓ | | | |
| mask_beta_a, mask_beta_b | | | | ✓ |

The basal encoder is each family's cell encoder q(z | ·). Unused fields are ignored, so one
sweep can vary `model.name` over a shared config.
"""

from dataclasses import dataclass

import ml_collections

from cradle_jax.config import model_config

MODEL_NAMES = ("cradle", "sams_vae", "cvae", "svae_plus")
INITS = ("torch", "flax")
LIKELIHOODS = ("normal", "normal_fixed_variance", "poisson", "library_nb")
# bfloat16: the networks' matrix products in bf16 with float32 accumulation, for GPUs and TPUs;
# parameters, activations between layers and every loss term stay float32.
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and priors of one model, sized to a dataset. Every field is required: the
    values and what each means are the config's `model` section (`cradle_jax.config.model_config`,
    built by `resolve_model_config` or `default_model_config`); the sizes come from the data."""

    n_genes: int
    n_perturbations: int
    n_qc: int
    name: str
    n_latent: int
    n_particles: int
    sum_mode: bool
    likelihood: str
    init: str
    compute_dtype: str
    mask_prior_prob: float
    embedding_prior_scale: float
    mask_init_logits: float
    gs_temperature: float
    artifact_dispersion: bool
    artifact_block: bool
    mask_beta_a: float
    mask_beta_b: float
    decoder_n_layers: int
    decoder_n_hidden: int
    decoder_linear_skip: bool
    basal_encoder_n_layers: int
    basal_encoder_n_hidden: int
    embedding_encoder_n_layers: int
    embedding_encoder_n_hidden: int

    def __post_init__(self) -> None:
        """Reject a field no network can be built from, naming it, before anything is built."""
        for field, allowed in CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"model.{field} must be one of {allowed}, got {value!r}")
        for field, least in SMALLEST.items():
            value = getattr(self, field)
            if value < least:
                raise ValueError(f"model.{field} must be at least {least}, got {value}")
        for field in POSITIVE:
            value = getattr(self, field)
            if not value > 0:
                raise ValueError(f"model.{field} must be positive, got {value}")
        if not 0 < self.mask_prior_prob < 1:
            raise ValueError(f"model.mask_prior_prob must be in (0, 1), got {self.mask_prior_prob}")


CHOICES = {
    "name": MODEL_NAMES,
    "likelihood": LIKELIHOODS,
    "init": INITS,
    "compute_dtype": COMPUTE_DTYPES,
}
SMALLEST = {  # the least value of each integer field that builds a network
    "n_latent": 1,
    "n_particles": 1,
    "decoder_n_layers": 0,  # the decoder's trunk has one layer more
    "decoder_n_hidden": 1,
    "basal_encoder_n_layers": 1,
    "basal_encoder_n_hidden": 1,
    "embedding_encoder_n_layers": 1,
    "embedding_encoder_n_hidden": 1,
}
POSITIVE = ("embedding_prior_scale", "gs_temperature", "mask_beta_a", "mask_beta_b")


def resolve_model_config(
    model: ml_collections.ConfigDict, n_genes: int, n_perturbations: int, n_qc: int
) -> ModelConfig:
    """The ModelConfig of a `model` section for a dataset of the given sizes."""
    return ModelConfig(
        n_genes=n_genes, n_perturbations=n_perturbations, n_qc=n_qc, **model.to_dict()
    )


def default_model_config(
    n_genes: int, n_perturbations: int, n_qc: int = 1, **overrides
) -> ModelConfig:
    """The default `model` section with `overrides` (field=value) for a dataset of the given
    sizes: tests and benchmarks name only the fields they vary."""
    return ModelConfig(
        n_genes=n_genes,
        n_perturbations=n_perturbations,
        n_qc=n_qc,
        **{**model_config().to_dict(), **overrides},
    )
