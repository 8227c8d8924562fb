"""Residual trunk, likelihood heads and PyTorch init vs hand NumPy (docs/method.md#networks)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.contrib.module import flax_module
from scipy.special import gammaln, softmax

from cradle_jax.models.networks import LIKELIHOODS, LikelihoodMLP, ResidualTrunk

# One set of shapes for every test: eager JAX compiles each op once per shape.
B, F, H, G, N_LAYERS = 5, 3, 4, 4, 3


def leaky(a):
    return np.where(a >= 0, a, 0.01 * a)


def softplus(a):
    return np.logaddexp(0.0, a)


def np_params(variables) -> dict:
    return jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])


def dense(p, h):
    return h @ p["kernel"] + p["bias"]


def np_trunk(p, x, n_layers):
    h = leaky(dense(p["layer_0"], x))
    for i in range(1, n_layers):
        h = leaky(dense(p[f"layer_{i}"], h)) + h
    return h


def init(module, x, *args, seed=0):
    return module.init(jax.random.key(seed), jnp.asarray(x, jnp.float32), *args)


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(B, F)).astype(np.float32)


def test_trunk_matches_numpy_and_adds_skip_after_activation(x):
    trunk = ResidualTrunk(n_layers=N_LAYERS, n_hidden=H)
    variables = init(trunk, x)
    out = np.asarray(trunk.apply(variables, x))
    p = np_params(variables)
    np.testing.assert_allclose(out, np_trunk(p, x, N_LAYERS), rtol=1e-5, atol=1e-6)

    # The skip added before the activation gives a different function.
    h = leaky(dense(p["layer_0"], x))
    for i in (1, 2):
        h = leaky(dense(p[f"layer_{i}"], h) + h)
    assert np.abs(out - h).max() > 1e-3


def test_normal_head(x):
    m = LikelihoodMLP("normal", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    variables = init(m, x)
    d = m.apply(variables, x)
    assert isinstance(d, dist.Normal)
    assert d.batch_shape == (B, G)
    p = np_params(variables)
    h = np_trunk(p["trunk"], x, N_LAYERS)
    np.testing.assert_allclose(d.loc, dense(p["loc"], h), rtol=1e-5, atol=1e-6)
    scale = np.sqrt(np.exp(dense(p["log_variance"], h)) + 1e-4)
    np.testing.assert_allclose(d.scale, scale, rtol=1e-5)


def test_normal_head_sanitises_inf_and_nan_and_caps_the_log_variance():
    m = LikelihoodMLP("normal", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    x = np.ones((B, F), np.float32)
    variables = init(m, x)
    params = jax.tree.map(np.asarray, variables["params"])
    # Zero head kernels: the pre-activations are the biases, set to non-finite values.
    params["loc"] = {"kernel": np.zeros((H, G)), "bias": np.array([np.inf, -np.inf, np.nan, 1.0])}
    params["log_variance"] = {  # v = exp(min(·, 20)) + 1e-4 = e¹⁰ + 1e-4, e²⁰ + 1e-4, NaN, 1e-4
        "kernel": np.zeros((H, G)),
        "bias": np.array([10.0, np.inf, np.nan, -np.inf]),
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    d = m.apply({"params": params}, x)
    np.testing.assert_allclose(d.loc, np.broadcast_to([1e6, 1e-6, 1e-6, 1.0], (B, G)), rtol=1e-6)
    v = np.array([np.exp(10.0) + 1e-4, np.exp(20.0) + 1e-4, 1e-6, 1e-4])
    np.testing.assert_allclose(d.scale, np.broadcast_to(np.sqrt(v), (B, G)), rtol=1e-6)


def test_normal_fixed_variance_head(x):
    m = LikelihoodMLP("normal_fixed_variance", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    variables = init(m, x)
    np.testing.assert_array_equal(variables["params"]["log_variance"], np.zeros(G))
    log_v = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    params = {**variables["params"], "log_variance": jnp.asarray(log_v)}
    d = m.apply({"params": params}, x)
    p = np_params({"params": params})
    np.testing.assert_allclose(
        d.loc, dense(p["loc"], np_trunk(p["trunk"], x, N_LAYERS)), rtol=1e-5, atol=1e-6
    )
    scale = np.broadcast_to(np.sqrt(np.exp(log_v.astype(np.float64)) + 1e-4), (B, G))
    np.testing.assert_allclose(d.scale, scale, rtol=1e-6)


def test_poisson_head_softplus_and_clamp(x):
    m = LikelihoodMLP("poisson", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    variables = init(m, x)
    params = jax.tree.map(lambda a: a, variables["params"])
    params["rate"] = {  # output 2 has pre-activation −200: softplus underflows, clamp to 1e-6
        "kernel": params["rate"]["kernel"].at[:, 2].set(0.0),
        "bias": params["rate"]["bias"].at[2].set(-200.0),
    }
    d = m.apply({"params": params}, x, jnp.full(B, 1e4))  # library ignored
    assert isinstance(d, dist.Poisson)
    assert d.batch_shape == (B, G)
    p = np_params({"params": params})
    rate = np.maximum(softplus(dense(p["rate"], np_trunk(p["trunk"], x, N_LAYERS))), 1e-6)
    np.testing.assert_allclose(d.rate, rate, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(d.rate)[:, 2], np.float32(1e-6))


def test_library_nb_log_pmf_matches_formula(x):
    m = LikelihoodMLP("library_nb", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    variables = init(m, x, jnp.ones(B))
    np.testing.assert_array_equal(variables["params"]["log_theta"], np.zeros(G))
    rng = np.random.default_rng(1)
    params = {**variables["params"], "log_theta": jnp.asarray(rng.normal(size=G), jnp.float32)}
    library = np.array([10.0, 250.0, 3.0, 1e4, 0.0], np.float32)
    counts = rng.poisson(5.0, size=(B, G)).astype(np.float32)
    counts[3, 0] = 2000.0

    d = m.apply({"params": params}, x, library)
    assert isinstance(d, dist.GammaPoisson)
    assert d.batch_shape == (B, G)

    p = np_params({"params": params})
    mu = library[:, None] * softmax(
        dense(p["gene_logits"], np_trunk(p["trunk"], x, N_LAYERS)), axis=-1
    )
    theta = np.exp(p["log_theta"])
    r = np.maximum(theta / (mu + 1e-4), 1e-6)
    xs = counts.astype(np.float64)
    expected = (
        gammaln(xs + theta)
        - gammaln(theta)
        - gammaln(xs + 1)
        + theta * np.log(r)
        - (xs + theta) * np.log1p(r)
    )
    # float32 rounding of the lgamma terms: a few ulps of their magnitude (4e-4 at x = 2000)
    lgamma_ulps = 4 * np.finfo(np.float32).eps * (gammaln(xs + theta) + gammaln(xs + 1))
    assert np.all(
        np.abs(d.log_prob(counts) - expected) <= 1e-5 + 1e-5 * np.abs(expected) + lgamma_ulps
    )
    np.testing.assert_allclose(d.mean, mu + 1e-4, rtol=1e-5)  # mean θ/r = μ + 1e-4


def test_linear_skip_adds_a_linear_map_of_the_chosen_columns_to_the_trunk_output(x):
    m = LikelihoodMLP(
        "library_nb", n_output=G, n_layers=N_LAYERS, n_hidden=H, linear_skip=True,
        skip_columns=(1, 3),
    )  # fmt: skip
    params = init(m, x, jnp.ones(B))["params"]
    assert params["skip"]["kernel"].shape == (2, H)
    p = np_params({"params": params})
    library = np.full(B, 100.0, np.float32)
    mean = np.asarray(m.apply({"params": params}, x, library).mean)
    logits = dense(
        p["gene_logits"], np_trunk(p["trunk"], x, N_LAYERS) + dense(p["skip"], x[:, 1:3])
    )
    expected = library[:, None] * softmax(logits, axis=-1)
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-3)  # the mean's offset 1e-4
    plain = LikelihoodMLP("library_nb", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    assert "skip" not in init(plain, x, jnp.ones(B))["params"]


def test_library_nb_requires_library(x):
    m = LikelihoodMLP("library_nb", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    variables = init(m, x)  # initialisation alone does not need the library
    with pytest.raises(ValueError, match="library"):
        m.apply(variables, x)


def test_unknown_likelihood_and_init_are_errors():
    with pytest.raises(ValueError, match=r"normal, normal_fixed_variance, poisson, library_nb"):
        LikelihoodMLP("negative_binomial", n_output=2, n_layers=1, n_hidden=3)
    with pytest.raises(ValueError, match="torch, flax"):
        LikelihoodMLP("poisson", n_output=2, n_layers=1, n_hidden=3, init_scheme="xavier")


def linear_layers(tree):
    """All {"kernel", "bias"} dicts in a parameter tree."""
    if isinstance(tree, dict) and "kernel" in tree:
        return [tree]
    if isinstance(tree, dict):
        return [layer for sub in tree.values() for layer in linear_layers(sub)]
    return []


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_torch_init_bounds_and_flax_zero_bias(likelihood, x):
    m = LikelihoodMLP(likelihood, n_output=G, n_layers=N_LAYERS, n_hidden=H)
    layers = linear_layers(init(m, x, jnp.ones(B))["params"])
    assert len(layers) >= 4
    for layer in layers:
        kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
        bound = 1.0 / np.sqrt(kernel.shape[0])
        assert np.abs(kernel).max() <= bound
        assert np.abs(bias).max() <= bound
        assert np.abs(kernel).max() > 0.5 * bound  # uniform over the whole range
        assert np.all(bias != 0.0)

    m = LikelihoodMLP(likelihood, G, N_LAYERS, H, init_scheme="flax")
    for layer in linear_layers(init(m, x, jnp.ones(B))["params"]):
        np.testing.assert_array_equal(layer["bias"], 0.0)
        assert np.abs(np.asarray(layer["kernel"])).max() > 0.0


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_particle_axis_equals_per_particle(likelihood):
    rng = np.random.default_rng(2)
    P = 3
    x = rng.normal(size=(P, B, F)).astype(np.float32)
    library = rng.uniform(1, 100, size=B).astype(np.float32)
    m = LikelihoodMLP(likelihood, n_output=G, n_layers=N_LAYERS, n_hidden=H)
    variables = init(m, x[0], library)
    d = m.apply(variables, x, library)
    assert d.batch_shape == (P, B, G)
    counts = rng.poisson(3.0, size=(P, B, G)).astype(np.float32)
    lp = np.asarray(d.log_prob(counts))
    for i in range(P):
        d_i = m.apply(variables, x[i], library)
        np.testing.assert_allclose(d.mean[i], d_i.mean, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(lp[i], d_i.log_prob(counts[i]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_flax_module_inside_numpyro_model(likelihood):
    def model():
        net = flax_module("decoder", LikelihoodMLP(likelihood, G, N_LAYERS, H), input_shape=(1, F))
        return net(jnp.ones((B, F)), jnp.arange(1.0, B + 1))

    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    params = tr["decoder$params"]["value"]
    assert isinstance(params, dict)
    assert all(isinstance(a, jax.Array) for a in jax.tree.leaves(params))
    d = handlers.seed(handlers.substitute(model, data={"decoder$params": params}), 1)()
    assert isinstance(d, numpyro.distributions.Distribution)
    assert d.batch_shape == (B, G)


def test_split_input_equals_its_concatenation():
    """Parts (B, F₁), (P, B, F₂) give the network of the concatenated (P, B, F₁ + F₂) input: same
    parameters (from the same key), outputs equal to float tolerance."""
    rng = np.random.default_rng(4)
    P, F2 = 3, 2
    per_cell = rng.normal(size=(B, F)).astype(np.float32)
    per_particle = rng.normal(size=(P, B, F2)).astype(np.float32)
    joined = np.concatenate([np.broadcast_to(per_cell, (P, B, F)), per_particle], axis=-1)
    m = LikelihoodMLP("normal", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    variables = init(m, joined[0])
    split_variables = m.init(
        jax.random.key(0), (jnp.asarray(per_cell), jnp.asarray(joined[0, :, F:]))
    )
    jax.tree.map(np.testing.assert_array_equal, variables, split_variables)
    whole = m.apply(variables, joined)
    split = m.apply(variables, (per_cell, per_particle))
    assert split.batch_shape == (P, B, G)
    np.testing.assert_allclose(split.loc, whole.loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.scale, whole.scale, rtol=1e-5, atol=1e-6)


def test_bfloat16_products_stay_close_to_float32(x):
    """compute_dtype bfloat16: float32 parameters and outputs, products within bf16 rounding
    (8 mantissa bits: relative error ~4e-3 per product, accumulated in float32)."""
    m32 = LikelihoodMLP("normal", n_output=G, n_layers=N_LAYERS, n_hidden=H)
    m16 = LikelihoodMLP(
        "normal", n_output=G, n_layers=N_LAYERS, n_hidden=H, compute_dtype="bfloat16"
    )
    variables = init(m32, x)
    d32, d16 = m32.apply(variables, x), m16.apply(variables, x)
    assert d16.loc.dtype == jnp.float32
    np.testing.assert_allclose(d16.loc, d32.loc, rtol=0.05, atol=0.02)
    assert not np.array_equal(d16.loc, d32.loc)
    with pytest.raises(ValueError, match="compute_dtype"):
        LikelihoodMLP("normal", G, N_LAYERS, H, compute_dtype="float16").init(
            jax.random.key(0), jnp.asarray(x)
        )
