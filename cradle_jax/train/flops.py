"""An analytic count of the matrix-product FLOPs of one CRADLE train step.

XLA's cost analysis of the compiled step counts everything it executes; this count is the one
a reader can check by hand, layer by layer, from the shapes in docs/method.md#networks and
docs/method.md#cradle-guide: each dense layer applied to R rows costs 2·R·fan_in·fan_out FLOPs
forward, as much again for its weight gradient, and as much again for its input gradient unless
its input is data (the counts, a one-hot, a constant). Elementwise work (the likelihood,
activations, Adam) is not counted.

Rows per step with P particles, B cells, T perturbations, Q QC columns:
- embedding encoder on [M; one-hot] and QC encoder on [1; one-hot]: P·T and P·Q rows, twice
  (the guide and the counterfactual reference pass draw their own global samples,
  docs/method.md#counterfactual-kl);
- basal encoder: its first layer's counts part once per cell for the cells and for their
  references (2·B rows), the rest on the factual and counterfactual flips and the references
  (3·P·B rows);
- decoder: P·B rows, one path per cell (docs/method.md#cradle-model).
"""

from dataclasses import dataclass

from cradle_jax.models import cradle
from cradle_jax.models.config import ModelConfig
from cradle_jax.models.sites import perturbation_columns


@dataclass(frozen=True)
class Dense:
    """`rows` applications of a fan_in → fan_out layer; `data_input` when no gradient reaches
    its input."""

    name: str
    rows: int
    fan_in: int
    fan_out: int
    data_input: bool = False

    @property
    def flops(self) -> int:
        passes = 2 if self.data_input else 3
        return passes * 2 * self.rows * self.fan_in * self.fan_out


def _trunk(name: str, rows: int, width: int, n_layers: int) -> list[Dense]:
    return [Dense(f"{name}/layer_{i}", rows, width, width) for i in range(1, n_layers)]


def cradle_step_layers(cfg: ModelConfig, batch_size: int) -> list[Dense]:
    """The dense layers of one CRADLE train step (concat mode) with their row counts."""
    P, B, T, Q, L, G = (
        cfg.n_particles,
        batch_size,
        cfg.n_perturbations,
        cfg.n_qc,
        cfg.n_latent,
        cfg.n_genes,
    )
    he, hb, hd = (
        cfg.embedding_encoder_n_hidden,
        cfg.basal_encoder_n_hidden,
        cfg.decoder_n_hidden,
    )
    decoder_in = cradle.decoder_width(cfg)
    layers = [
        Dense("embedding_encoder/layer_0 mask", 2 * P * T, L, he),
        Dense("embedding_encoder/layer_0 one-hot", 2 * P * T, T, he, data_input=True),
        Dense("qc_encoder/layer_0", 2 * P * Q, L + Q, he, data_input=True),
    ]
    for rows, part in ((2 * P * T, "embedding"), (2 * P * Q, "qc")):
        layers += _trunk(f"{part}_encoder", rows, he, cfg.embedding_encoder_n_layers)
        layers.append(Dense(f"{part}_encoder/heads", rows, he, 2 * L))
    flips = 3 * P * B
    layers += [
        Dense("basal_encoder/layer_0 counts", 2 * B, G, hb, data_input=True),
        Dense("basal_encoder/layer_0 latents", flips, 2 * L, hb),
        *_trunk("basal_encoder", flips, hb, cfg.basal_encoder_n_layers),
        Dense("basal_encoder/heads", flips, hb, 2 * L),
        Dense("decoder/layer_0", P * B, decoder_in, hd),
        *_trunk("decoder", P * B, hd, cfg.decoder_n_layers + 1),
        Dense("decoder/gene_logits", P * B, hd, G),
    ]
    if cfg.decoder_linear_skip:
        start, stop = perturbation_columns(cfg)
        layers.append(Dense("decoder/skip", P * B, stop - start, hd))
    return layers


def cradle_step_flops(cfg: ModelConfig, batch_size: int) -> int:
    """Matrix-product FLOPs of one CRADLE train step, forward and backward."""
    return sum(layer.flops for layer in cradle_step_layers(cfg, batch_size))
