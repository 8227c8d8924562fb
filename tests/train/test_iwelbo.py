import jax
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from cradle_jax.train import objective
from tests.tiny_model import init_params, tiny_config

iwelbo = jax.jit(objective.predictive_iwelbo, static_argnames=("cfg",))


@pytest.fixture(scope="module")
def setup():
    from tests.tiny_model import tiny_batch, tiny_stats

    cfg = tiny_config(n_particles=4)
    batch, stats = tiny_batch(), tiny_stats()
    params = init_params(jax.random.key(0), batch, stats, cfg)
    global_samples = objective.sample_global_posterior(params, jax.random.key(1), cfg)
    return cfg, batch, stats, params, global_samples


def test_global_samples_have_the_particle_axis(setup):
    _, _, _, _, samples = setup
    assert samples["mask"].shape == (4, 3, 4)
    assert samples["E"].shape == (4, 3, 4)
    assert samples["artifact_E"].shape == (4, 1, 4)
    assert set(np.unique(np.asarray(samples["mask"]))) <= {0.0, 1.0}


def test_iwelbo_is_the_log_mean_exp_of_the_particle_weights(setup):
    cfg, batch, stats, params, samples = setup
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, batch["X"].shape[0], cfg.n_latent)).astype(np.float32)
    fixed = {**samples, "z_basal": z}
    got = np.asarray(iwelbo(params, fixed, batch, stats, jax.random.key(2), cfg))
    # independent pieces: log p(z) and log q(z) from the recorded posterior parameters
    weights_unit = objective.SiteWeights(
        perturbation=np.ones(3), qc=np.ones(1), cell=batch["weight"], reconstruction=batch["weight"]
    )
    guide_trace, model_trace = objective._traces(
        {**params, **fixed}, batch, stats, weights_unit, cfg, jax.random.key(2)
    )
    loc = np.asarray(guide_trace["z_loc"]["value"], np.float64)
    scale = np.asarray(guide_trace["z_scale"]["value"], np.float64)
    log_q = norm.logpdf(z, loc, scale).sum(-1)
    log_p = norm.logpdf(z).sum(-1)
    log_px = np.asarray(model_trace["x"]["fn"].log_prob(batch["X"]), np.float64)
    expected = logsumexp(log_px + log_p - log_q, axis=0) - np.log(4)
    real = np.asarray(batch["weight"]) > 0
    np.testing.assert_allclose(got[real], expected[real], rtol=1e-4)
    assert (got[~real] == 0).all()
    # Jensen: the IWELBO bounds the mean single-particle ELBO from above
    assert (got[real] >= (log_px + log_p - log_q).mean(0)[real] - 1e-4).all()
