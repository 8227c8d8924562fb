"""Flax building blocks (docs/method.md#networks): a residual MLP trunk and likelihood heads.

Every module works on any leading axes: an input (..., F) gives outputs (..., n_output), so a
particle axis (P, B, F) needs no reshaping. Parameter trees are plain nested dicts, usable with
`numpyro.contrib.module.flax_module`:

    {"trunk": {"layer_0": {"kernel", "bias"}, ...}, "loc": {...}, "log_variance": {...}}

An input may also be a tuple of parts, read as their concatenation along the last axis with
leading axes broadcast: the first layer computes Σₖ partₖ Wₖ, so a part without a particle axis
(a cell's standardised counts) is multiplied once per cell, not once per particle. The
parameters are those of the concatenated input.

Initialisation (`model.init`, docs/method.md#networks): "torch" draws kernel AND bias from
U(−1/√fan_in, 1/√fan_in) like PyTorch's nn.Linear; "flax" uses LeCun-normal kernels and zero
biases. Kernels are stored (fan_in, features), Flax's convention (the transpose of PyTorch's).
"""

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from cradle_jax.models.config import COMPUTE_DTYPES, INITS, LIKELIHOODS
from cradle_jax.models.distributions import LogitsNegativeBinomial

LEAKY_SLOPE = 0.01  # PyTorch's nn.LeakyReLU default

VARIANCE_FLOOR = 1e-4  # v = exp(·) + 1e-4 in the normal heads
# Cap on the log-variance of the normal head (ours, not the original's). Without it, an input far
# outside the training range (e.g. a reference cell expressing a gene that no training cell
# expresses: its standardised value is ~1e3, or 1e6 where the input standardisation replaces
# +inf) drives exp(·) to ~1e38, and the cf-KL overflows to inf and its gradient to NaN.
# e^20 ≈ 5e8 leaves ordinary variances untouched and keeps every KL term finite in float32.
MAX_LOG_VARIANCE = 20.0
NB_MEAN_OFFSET = 1e-4  # r = θ / (μ + 1e-4)
RATE_FLOOR = 1e-6  # clamp of Poisson and Gamma–Poisson rates

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]
Input = jax.Array | tuple[jax.Array, ...]


def torch_linear_init(fan_in: int) -> Initializer:
    """PyTorch nn.Linear's init of its weight and its bias alike: U(−1/√fan_in, 1/√fan_in), with
    fan_in of the kernel for the bias too.

    Not `jax.nn.initializers.variance_scaling(1/3, "fan_in", "uniform")`, the same distribution:
    it multiplies a U(−1, 1) draw by the bound where this draws U(−bound, bound) at once, which
    rounds differently (a 20-input kernel differs in 524 of 640 entries, by up to 1.5e-8, for the
    same key), and new initial values would change every trained number; nor can it take a
    bias's fan_in from its kernel.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")


def _parts(x: Input) -> tuple[jax.Array, ...]:
    return tuple(x) if isinstance(x, tuple | list) else (x,)


class Linear(nn.Module):
    """y = x W + b, (..., fan_in) → (..., features); fan_in is read from the input at init.

    `x` may be a tuple of parts (see the module docstring). With compute_dtype "bfloat16" the
    products run in bf16 with float32 accumulation; parameters and outputs stay float32.
    """

    features: int
    init_scheme: str = "torch"  # "torch" | "flax"; not `init`, which would shadow Module.init
    compute_dtype: str = "float32"

    def __post_init__(self):
        _check_choice("init_scheme", self.init_scheme, INITS)
        _check_choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Input) -> jax.Array:
        parts = _parts(x)
        fan_in = sum(part.shape[-1] for part in parts)
        if self.init_scheme == "torch":
            kernel_init = bias_init = torch_linear_init(fan_in)
        else:
            kernel_init, bias_init = nn.initializers.lecun_normal(), nn.initializers.zeros
        kernel = self.param("kernel", kernel_init, (fan_in, self.features), jnp.float32)
        bias = self.param("bias", bias_init, (self.features,), jnp.float32)
        y, start = None, 0
        for part in parts:
            width = part.shape[-1]
            term = self._matmul(part, kernel[start : start + width])
            y, start = term if y is None else y + term, start + width
        return y + bias

    def _matmul(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        if self.compute_dtype == "float32":
            return x @ kernel
        dtype = jnp.dtype(self.compute_dtype)
        return jnp.matmul(x.astype(dtype), kernel.astype(dtype), preferred_element_type=jnp.float32)


def leaky_relu(x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


class ResidualTrunk(nn.Module):
    """(..., F) → (..., n_hidden): h = σ(W₀x + b₀), then h ← σ(Wᵢh + bᵢ) + h for i ≥ 1.

    The skip is added after the LeakyReLU σ, and the last layer is residual too.
    """

    n_layers: int
    n_hidden: int
    init_scheme: str = "torch"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: Input) -> jax.Array:
        if self.n_layers < 1:
            raise ValueError(f"ResidualTrunk needs n_layers >= 1, got {self.n_layers}")
        h = leaky_relu(self._linear("layer_0")(x))
        for i in range(1, self.n_layers):
            h = leaky_relu(self._linear(f"layer_{i}")(h)) + h
        return h

    def _linear(self, name: str) -> Linear:
        return Linear(self.n_hidden, self.init_scheme, self.compute_dtype, name=name)


def sanitize(x: jax.Array) -> jax.Array:
    """NaN → 1e-6, +inf → 1e6, −inf → 1e-6 (sic: positive), as the original's normal head."""
    return jnp.nan_to_num(x, nan=1e-6, posinf=1e6, neginf=1e-6)


class LikelihoodMLP(nn.Module):
    """Residual trunk + likelihood head: x (..., F) → a distribution of batch shape (..., n_output).

    The distribution is not `to_event`-ed; callers do `.to_event(1)`.

    likelihood:
      "normal"                 Normal(μ, √v), μ = W_μh + b_μ, v = exp(W_vh + b_v) + 1e-4, sanitised.
      "normal_fixed_variance"  as "normal" with log v a free per-output parameter `log_variance`.
      "poisson"                Poisson(max(softplus(Wh + b), 1e-6)); no library scaling.
      "library_nb"             Gamma–Poisson(θ, r): ρ = softmax(Wh + b) over genes, μ = ℓρ,
                               θ = exp(`log_theta`) per gene, r = max(θ / (μ + 1e-4), 1e-6);
                               a `log_theta_shift` broadcastable to (cells, genes) is added to
                               log θ per cell (CRADLE's artifact dispersion).
    `library` (ℓ, anything broadcastable to the input's leading axes) is required by "library_nb"
    only; while the parameters are being initialised (e.g. by `flax_module(..., input_shape=...)`)
    a missing library is replaced by ones, since no parameter depends on it. `compute_dtype` is
    that of the matrix products (see `Linear`); the heads' arithmetic stays float32. With
    `linear_skip` the trunk's output gets a linear map of the input's `skip_columns` added (layer
    `skip`): the heads are linear, so the output has a linear path from them beside the MLP's.
    """

    likelihood: str
    n_output: int
    n_layers: int
    n_hidden: int
    init_scheme: str = "torch"
    compute_dtype: str = "float32"
    linear_skip: bool = False
    skip_columns: tuple[int, int] | None = None  # the input columns the skip reads; None: all

    def __post_init__(self):
        _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        _check_choice("init_scheme", self.init_scheme, INITS)
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: Input, library: jax.Array | None = None, log_theta_shift: jax.Array | None = None
    ) -> dist.Distribution:
        h = ResidualTrunk(
            self.n_layers, self.n_hidden, self.init_scheme, self.compute_dtype, name="trunk"
        )(x)
        if self.linear_skip:  # the heads are linear: a linear path from the input to the output
            start, stop = self.skip_columns or (0, x.shape[-1])
            skip = Linear(self.n_hidden, self.init_scheme, self.compute_dtype, name="skip")
            h = h + skip(x[..., start:stop])
        if self.likelihood == "normal":
            loc = self._head("loc")(h)
            log_v = self._head("log_variance")(h)
            log_v = jnp.minimum(log_v, MAX_LOG_VARIANCE)
            v = sanitize(jnp.abs(jnp.exp(log_v) + VARIANCE_FLOOR))
            return dist.Normal(sanitize(loc), jnp.sqrt(v))
        if self.likelihood == "normal_fixed_variance":
            loc = self._head("loc")(h)
            log_v = self.param("log_variance", nn.initializers.zeros, (self.n_output,), jnp.float32)
            v = jnp.exp(log_v) + VARIANCE_FLOOR
            return dist.Normal(loc, jnp.broadcast_to(jnp.sqrt(v), loc.shape))
        if self.likelihood == "poisson":
            rate = jax.nn.softplus(self._head("rate")(h))
            return dist.Poisson(jnp.maximum(rate, RATE_FLOOR))
        return self._library_nb(h, library, log_theta_shift)

    def _head(self, name: str) -> Linear:
        return Linear(self.n_output, self.init_scheme, self.compute_dtype, name=name)

    def _library_nb(self, h, library, log_theta_shift) -> dist.Distribution:
        cell_shape = h.shape[:-1]
        logits = self._head("gene_logits")(h)
        log_theta = self.param("log_theta", nn.initializers.zeros, (self.n_output,), jnp.float32)
        if library is None:
            if not self.is_initializing():
                raise ValueError("likelihood 'library_nb' needs the library size `library`")
            library = jnp.ones(cell_shape, h.dtype)
        library = jnp.broadcast_to(jnp.asarray(library, h.dtype), cell_shape)
        theta = jnp.exp(log_theta if log_theta_shift is None else log_theta + log_theta_shift)
        # The data layer has checked that the counts are non-negative integers; NumPyro's
        # per-element support check would add a pass over every (particle, cell, gene) value.
        return LogitsNegativeBinomial(
            logits, library, theta, NB_MEAN_OFFSET, RATE_FLOOR, validate_args=False
        )
