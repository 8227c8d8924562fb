"""The analytic FLOP count of a train step (benchmarks) against hand arithmetic and XLA's own."""

import jax
import pytest

from cradle_jax.models.config import default_model_config
from cradle_jax.train.flops import cradle_step_flops, cradle_step_layers
from cradle_jax.train.objective import init_params, placeholder_inputs
from cradle_jax.train.state import TrainState
from cradle_jax.train.step import make_train_step
from tests.settings import original_loss, plain_optimizer

# Widths at which the products dominate, as at the published configs (elementwise work, which
# only XLA counts, grows with G but not with the widths).
CFG = default_model_config(
    n_genes=300,
    n_perturbations=6,
    n_latent=16,
    n_particles=2,
    decoder_n_hidden=256,
    basal_encoder_n_hidden=128,
    embedding_encoder_n_hidden=32,
    embedding_encoder_n_layers=2,
)
B = 64


def test_layers_by_hand():
    layers = {layer.name: layer.flops for layer in cradle_step_layers(CFG, B)}
    P, G, L = 2, 300, 16
    # forward, weight gradient and input gradient: 3 × 2·rows·fan_in·fan_out
    assert layers["decoder/gene_logits"] == 3 * 2 * (P * B) * 256 * G
    assert layers["decoder/layer_0"] == 3 * 2 * (P * B) * (3 * L) * 256
    assert layers["decoder/skip"] == 3 * 2 * (P * B) * L * 256  # from z_p only
    # the counts part: once per cell and per reference, no input gradient
    assert layers["basal_encoder/layer_0 counts"] == 2 * 2 * (2 * B) * G * 128
    # factual, counterfactual and reference passes over the particles
    assert layers["basal_encoder/layer_0 latents"] == 3 * 2 * (3 * P * B) * (2 * L) * 128
    assert layers["embedding_encoder/layer_1"] == 3 * 2 * (2 * P * 6) * 32 * 32


def test_analytic_count_is_close_to_xla_cost_analysis():
    """XLA also counts elementwise work, so its count is a little higher; both within 15%."""
    batch, stats = placeholder_inputs(CFG)
    batch = {k: jax.numpy.broadcast_to(v, (B, *v.shape[1:])) for k, v in batch.items()}
    optimizer = plain_optimizer(1e-3)
    params = init_params(jax.random.key(0), batch, stats, CFG)
    state = TrainState.create(params, optimizer)
    step = make_train_step(CFG, original_loss(), optimizer)
    run_key = jax.random.key_data(jax.random.key(1))
    xla = step.lower(state, batch, stats, run_key).compile().cost_analysis()["flops"]
    analytic = cradle_step_flops(CFG, B)
    assert analytic == pytest.approx(xla, rel=0.15)
    assert analytic < xla
