"""The architecture of a model (`ModelConfig`) and the `model` section of an experiment config.

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

from dataclasses import dataclass, fields

import ml_collections

MODEL_NAMES = ("cradle", "sams_vae", "cvae", "svae_plus")
INITS = ("torch", "flax")
LIKELIHOODS = ("normal", "normal_fixed_variance", "poisson", "library_nb")
# bfloat16: the networks' matrix products in bf16 with float32 accumulation, for GPUs and TPUs;
# parameters, activations between layers and every loss term stay float32.
COMPUTE_DTYPES = ("float32", "bfloat16")
DATA_SIZED_FIELDS = ("n_genes", "n_perturbations", "n_qc")  # read off the dataset, not configured


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and priors: the defaults are the published values
    (docs/method.md#published-hyperparameters) except where docs/decisions.md says otherwise;
    the baselines' fields are in docs/method.md#baselines."""

    n_genes: int
    n_perturbations: int
    n_qc: int = 1
    name: str = "cradle"
    n_latent: int = 200
    n_particles: int = 5
    sum_mode: bool = False
    likelihood: str = "library_nb"
    init: str = "torch"
    compute_dtype: str = "float32"
    mask_prior_prob: float = 0.01
    embedding_prior_scale: float = 1.0
    # Masks start on (σ(3) = 0.95), not at the original's coin flip (0): from 0 every particle
    # uses a random half of the dims, the offset dᵀ(M⊙E) is noise the decoder learns to ignore
    # and the basal encoder absorbs the effects, which generation from the prior then misses
    # (docs/decisions.md#masks-start-on).
    mask_init_logits: float = 3.0
    gs_temperature: float = 1.0
    # CRADLE: QC-fail cells get their own NB dispersion, log θ + δ per gene, so the variable
    # damage of artifacts does not widen the dispersion that generated, artifact-free cells use
    # (docs/decisions.md#artifact-dispersion).
    artifact_dispersion: bool = True
    # CRADLE in sum mode: the artifact enters the decoder as its own input block,
    # u = [z_b + z_p; a], so perturbations shift the cell state while damage stays off it
    # (docs/decisions.md#sum-mode).
    artifact_block: bool = False
    # SVAE+: Beta(a, b) prior on the mask probabilities; b = 5 is the middle of the SAMS-VAE
    # paper's sweep {2, 5, 10} with a = 1.
    mask_beta_a: float = 1.0
    mask_beta_b: float = 5.0
    decoder_n_layers: int = 1  # the trunk has one more (docs/method.md#networks)
    decoder_n_hidden: int = 400
    # The decoder's trunk output gets a linear map of its input added, so the gene logits have a
    # linear path: latent offsets that add up (a pair's two singles) compose
    # (docs/decisions.md#decoder-linear-skip).
    decoder_linear_skip: bool = True
    basal_encoder_n_layers: int = 1
    basal_encoder_n_hidden: int = 400
    embedding_encoder_n_layers: int = 4
    embedding_encoder_n_hidden: int = 400

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


def model_config() -> ml_collections.ConfigDict:
    """`name` plus every architecture and prior field of ModelConfig with its default."""
    c = ml_collections.ConfigDict()
    for field in fields(ModelConfig):
        if field.name not in DATA_SIZED_FIELDS:
            setattr(c, field.name, field.default)
    return c


def resolve_model_config(
    model: ml_collections.ConfigDict, n_genes: int, n_perturbations: int, n_qc: int
) -> ModelConfig:
    """The ModelConfig of a `model` section for a dataset of the given sizes."""
    return ModelConfig(
        n_genes=n_genes, n_perturbations=n_perturbations, n_qc=n_qc, **model.to_dict()
    )
