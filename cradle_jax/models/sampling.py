"""Exact, vectorised samplers for Gamma(α, 1), Poisson(λ) and the Gamma–Poisson (negative
binomial) counts of the `library_nb` head (docs/method.md#networks), for generating many cells at
once (docs/method.md#generation).

`jax.random.gamma` and `jax.random.poisson` run a rejection loop per element in which every try
splits a Threefry key: 1.4–1.7 µs per count on our 2-core CPU. Here every element makes one
try from random words drawn for the whole array at once (Philox, four words per element and
try); the few elements left unfinished (~5%) are gathered into a buffer an eighth of the size and
tried once there, those still unfinished into one an eighth of that, which is retried in place
until done: ~35 ns per count. An element draws fresh words at each try and keeps its first
accepted value, so every sample follows its distribution exactly, whatever the others do; and
since the words depend only on the key and the element's place, so do the samples.

Algorithms, in float32:

- Gamma(α, 1): Marsaglia & Tsang (2000), "A simple method for generating gamma variables",
  ACM TOMS 26(3), 363–372. For α < 1, Gamma(α) = Gamma(α + 1)·W^(1/α) (their section 6), in log
  space so that tiny α cannot underflow to log 0. W is the acceptance uniform recycled: given
  that u < h(x) was accepted, u / h(x) is uniform on (0, 1) and independent of x.
- Poisson(λ), λ < 10: inversion, a sequential search of the pmf on 0 … 36 (P(X > 36) ≤ 5e-11
  at λ = 10, far below the 2⁻²³ resolution of a float32 uniform); a uniform beyond the float32
  sum of those 37 terms (possible only by rounding) is rejected, so the search samples the
  truncated pmf renormalised by that sum.
- Poisson(λ), λ ≥ 10: Hörmann (1993), "The transformed rejection method for generating Poisson
  random variables" (PTRS), Insurance: Mathematics and Economics 12(1), 39–45, with the
  log-pmf in a Stirling form that keeps its float32 precision at large λ. The first try of the
  Gamma–Poisson leaves these elements unfinished: the retries, on a fraction of the elements,
  run PTRS, and the first try (on all of them) only the inversion.
- Gamma–Poisson(θ, r): X ~ Poisson(G / r), G ~ Gamma(θ, 1).

Uniforms take the top 23 bits of a word, (m + ½)·2⁻²³, in the open interval (0, 1); normals are
√2·erfinv(2u − 1), as `jax.random.normal` computes them. A try returns one array per quantity,
with a sentinel for "not accepted" (log G = +∞, count = −1): a second output of the same
computation made XLA compute it twice.
"""

from collections.abc import Callable
from typing import NamedTuple, Protocol, Self

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cradle_jax.models.nb_math import stirling_correction

SHRINK = 8  # a retry buffer holds 1/SHRINK of the elements of the level above
MIN_SIZE = 1024  # arrays this small retry in place
MAX_DEPTH = 2  # buffers of buffers: deeper ones would save little and take compile time
PREFIX_BLOCK = 64  # block of `prefix_sums`
MAX_TRIES = 64  # per loop: a guard against non-termination, never reached in practice
INVERSION_LIMIT = 10.0  # Poisson(λ) by inversion below, by PTRS from here (Hörmann's range)
INVERSION_STEPS = 36  # the inversion searches 0 … 36
MAX_POISSON_RATE = 2.0**23  # λ is capped here: counts near 2²⁴ are not float32 integers
REJECTED = -1.0  # the count of a try that was not accepted

_LOG_FACTORIALS = np.array([np.sum(np.log(np.arange(1, k + 1))) for k in range(10)], np.float32)
_PHILOX_M0, _PHILOX_M1 = np.uint32(0xD2511F53), np.uint32(0xCD9E8D57)
_PHILOX_W0, _PHILOX_W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)

Words = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
Params = tuple[jax.Array, ...]
Count = jax.Array | int


# ---------------------------------------------------------------- random words and variates


def high_word(constant: np.uint32, x: jax.Array) -> jax.Array:
    """The high 32 bits of the 64-bit product constant·x, from four 16-bit half products.

    `lax.mulhi` would say it in one operation, but XLA's CPU backend fails to compile it in a
    program partitioned over several devices (SPMD), which `generate_cells` is.
    """
    c_hi, c_lo = np.uint32(constant >> 16), np.uint32(constant & 0xFFFF)
    x_hi, x_lo = x >> 16, x & 0xFFFF
    low_low, low_high, high_low = x_lo * c_lo, x_lo * c_hi, x_hi * c_lo
    carry = ((low_low >> 16) + (low_high & 0xFFFF) + (high_low & 0xFFFF)) >> 16
    return x_hi * c_hi + (low_high >> 16) + (high_low >> 16) + carry


def philox4x32(key: tuple[jax.Array, jax.Array], counter: Words) -> Words:
    """Philox-4x32-10 of Salmon, Moraes, Dror & Shaw (2011), "Parallel random numbers: as easy
    as 1, 2, 3" (SC '11): four uint32 words from a 64-bit key and a 128-bit counter,
    elementwise: cuRAND's default generator, and JAX's "philox4x32" key type."""
    k0, k1 = key
    x0, x1, x2, x3 = counter
    for i in range(10):
        if i:
            k0, k1 = k0 + _PHILOX_W0, k1 + _PHILOX_W1
        hi0, lo0 = high_word(_PHILOX_M0, x0), x0 * _PHILOX_M0
        hi1, lo1 = high_word(_PHILOX_M1, x2), x2 * _PHILOX_M1
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
    return x0, x1, x2, x3


def random_words(seed: jax.Array, size: int, stream: tuple[Count, int]) -> Words:
    """Four (size,) arrays of independent uniform uint32 words for the elements 0 … size − 1
    of one try: Philox-4x32-10 under the 64-bit `seed` of the counters (element, *stream, 0).

    `stream` = (path, level) names the try (see `finish`); every try of a sampling has its own,
    so no two tries share a word. Philox rather than `jax.random.bits`: on a CPU (12.8M
    elements) its Threefry took 9.5 ns per element for one word, Philox 12.7 ns for four; and
    naming tries by counters instead of splitting keys leaves no Threefry hash inside the retry
    loops (each took ~0.1 s to compile).
    """
    if size >= 2**32:
        raise ValueError(f"{size} elements do not fit the 32-bit counter")
    element = lax.iota(jnp.uint32, size)
    path, level = (jnp.full_like(element, x) for x in stream)
    return philox4x32((seed[0], seed[1]), (element, path, level, jnp.zeros_like(element)))


def open_uniform(words: jax.Array) -> jax.Array:
    """Uniform on (0, 1): (m + ½)·2⁻²³ for m the top 23 bits of each word, never 0 or 1."""
    return ((words >> 9).astype(jnp.float32) + 0.5) * 2.0**-23


def standard_normal(words: jax.Array) -> jax.Array:
    """N(0, 1) as √2·erfinv(2u − 1) of `open_uniform(words)`; 2u − 1 is exact in float32."""
    centred = ((words >> 9).astype(jnp.float32) * 2.0 + 1.0) * 2.0**-23 - 1.0
    return np.float32(np.sqrt(2.0)) * lax.erf_inv(centred)


# ---------------------------------------------------------------- one try per element


def gamma_try(normal_words: jax.Array, uniform_words: jax.Array, alpha: jax.Array) -> jax.Array:
    """log G for one Marsaglia–Tsang try at Gamma(α, 1) per element, +∞ where it is rejected.

    With d = α − 1/3 (α + 2/3 if α < 1), c = 1/√(9d), x ~ N(0, 1), v = (1 + cx)³: accept iff
    cx > −1 and log u < h = x²/2 + d(1 − v + log v); then G = d·v, times W^(1/α) with
    W = u·e^(−h) if α < 1. v − 1 and log v are formed from cx (log1p) so that d(1 − v + log v)
    keeps its precision at large d.
    """
    boosted = alpha < 1.0
    d = jnp.where(boosted, alpha + 1.0, alpha) - 1.0 / 3.0
    x = standard_normal(normal_words)
    cx = lax.rsqrt(9.0 * d) * x
    positive = cx > -1.0
    log_v = 3.0 * jnp.log1p(jnp.where(positive, cx, 0.0))
    v_minus_1 = cx * (3.0 + cx * (3.0 + cx))
    log_h = 0.5 * x * x + d * (log_v - v_minus_1)
    log_u = jnp.log(open_uniform(uniform_words))
    log_gamma = jnp.log(d) + log_v + jnp.where(boosted, (log_u - log_h) / alpha, 0.0)
    return jnp.where(positive & (log_u < log_h), log_gamma, jnp.inf)


def poisson_try(u_words: jax.Array, v_words: jax.Array, rate: jax.Array, ptrs: bool = True):
    """One try at Poisson(λ) per element: inversion for λ < 10, PTRS for λ ≥ 10 (REJECTED
    there without `ptrs`). The count, or REJECTED."""
    u = open_uniform(u_words)
    by_inversion = poisson_inversion(u, jnp.minimum(rate, INVERSION_LIMIT))
    if ptrs:
        large = ptrs_try(u, open_uniform(v_words), jnp.maximum(rate, INVERSION_LIMIT))
    else:
        large = REJECTED
    return jnp.where(rate < INVERSION_LIMIT, by_inversion, large)


def poisson_inversion(u: jax.Array, rate: jax.Array) -> jax.Array:
    """The first k ∈ {0 … 36} with u ≤ F(k), F the Poisson(λ) cdf summed in float32; REJECTED
    if u > F(36)."""
    p = jnp.exp(-rate)
    cdf = p
    count = jnp.zeros_like(u)
    for k in range(1, INVERSION_STEPS + 1):
        count = count + (cdf < u).astype(jnp.float32)
        p = p * (rate * (1.0 / k))
        cdf = cdf + p
    return jnp.where(u <= cdf, count, REJECTED)


def ptrs_try(u: jax.Array, v: jax.Array, rate: jax.Array) -> jax.Array:
    """One try of Hörmann's PTRS at Poisson(λ), λ ≥ 10 (his constants), from two uniforms: the
    count, or REJECTED."""
    b = 0.931 + 2.53 * jnp.sqrt(rate)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    u = u - 0.5
    us = 0.5 - jnp.abs(u)
    k = jnp.floor((2.0 * a / us + b) * u + rate + 0.43)
    squeeze = (us >= 0.07) & (v <= v_r)
    bound = jnp.log(v * inv_alpha / (a / (us * us) + b))
    in_range = (k >= 0.0) & ~((us < 0.013) & (v > us))
    accepted = squeeze | (in_range & (bound <= poisson_log_pmf(k, rate)))
    return jnp.where(accepted, k, REJECTED)


def poisson_log_pmf(k: jax.Array, rate: jax.Array) -> jax.Array:
    """log(λᵏe^(−λ)/k!) for integers k ≥ 0 (values at k < 0 are meaningless).

    For k ≥ 10 as (k − λ) − k·log1p((k − λ)/λ) − ½log(2πk) − δ(k), δ the tail of Stirling's
    series (`nb_math.stirling_correction`, error < 1e-10): each term is of the size of the
    result, where k log λ − λ − lgamma(k + 1) cancels numbers of size k log k (a float32 error
    of 0.01 at λ ≈ 10⁴). For k < 10 from a table of log k!.
    """
    large = jnp.maximum(k, 10.0)
    diff = large - rate
    stirling = (
        diff
        - large * jnp.log1p(diff / rate)
        - 0.5 * jnp.log(2.0 * np.pi * large)
        - stirling_correction(large)
    )
    small = jnp.clip(k, 0.0, 9.0)
    log_factorial = jnp.asarray(_LOG_FACTORIALS)[small.astype(jnp.int32)]
    direct = small * jnp.log(rate) - rate - log_factorial
    return jnp.where(k >= 10.0, stirling, direct)


def capped_rate(log_rate: jax.Array) -> jax.Array:
    """λ = exp(log λ): 0 at log λ = −∞, at most MAX_POISSON_RATE."""
    return jnp.exp(jnp.minimum(log_rate, np.log(MAX_POISSON_RATE)))


# ---------------------------------------------------------------- states and their tries


class State(Protocol):
    @property
    def done(self) -> jax.Array: ...

    def finished_where(self, mask: jax.Array) -> Self: ...


class GammaState(NamedTuple):
    log_gamma: jax.Array  # +∞ until accepted

    @property
    def done(self) -> jax.Array:
        return self.log_gamma < jnp.inf

    def finished_where(self, mask: jax.Array) -> "GammaState":
        return GammaState(jnp.where(mask, 0.0, self.log_gamma))


class PoissonState(NamedTuple):
    count: jax.Array  # REJECTED until accepted

    @property
    def done(self) -> jax.Array:
        return self.count >= 0.0

    def finished_where(self, mask: jax.Array) -> "PoissonState":
        return PoissonState(jnp.where(mask, 0.0, self.count))


class GammaPoissonState(NamedTuple):
    log_gamma: jax.Array  # +∞ until the gamma try is accepted
    count: jax.Array  # REJECTED until the Poisson try (after it) is accepted

    @property
    def done(self) -> jax.Array:
        return self.count >= 0.0

    def finished_where(self, mask: jax.Array) -> "GammaPoissonState":
        return GammaPoissonState(self.log_gamma, jnp.where(mask, 0.0, self.count))


Try = Callable[[Words, Params, State], State]


def _keep(old: jax.Array, done: jax.Array, new: jax.Array) -> jax.Array:
    return jnp.where(done, old, new)


def gamma_attempt(words: Words, params: Params, s: GammaState) -> GammaState:
    (alpha,) = params
    return GammaState(_keep(s.log_gamma, s.done, gamma_try(words[0], words[1], alpha)))


def poisson_attempt(words: Words, params: Params, s: PoissonState) -> PoissonState:
    (rate,) = params
    return PoissonState(_keep(s.count, s.done, poisson_try(words[2], words[3], rate)))


def gamma_poisson_attempt(
    words: Words, params: Params, s: GammaPoissonState, ptrs: bool = True
) -> GammaPoissonState:
    """A gamma try where G is not accepted yet, then a Poisson(G / r) try where it is (λ ≥ 10
    left for later without `ptrs`). log G is materialised before the Poisson try reads it."""
    alpha, log_rate = params
    gamma_done = s.log_gamma < jnp.inf
    log_gamma = _keep(s.log_gamma, gamma_done, gamma_try(words[0], words[1], alpha))
    log_gamma = lax.optimization_barrier(log_gamma)
    count = poisson_try(words[2], words[3], capped_rate(log_gamma - log_rate), ptrs)
    count = jnp.where(log_gamma < jnp.inf, count, REJECTED)
    return GammaPoissonState(log_gamma, _keep(s.count, s.done, count))


# ---------------------------------------------------------------- tries until accepted


def prefix_sums(x: jax.Array, bound: int) -> jax.Array:
    """Inclusive prefix sums of a 1-D int32 array whose entries are at most `bound`.

    Blocks of PREFIX_BLOCK are summed by a product with a triangular matrix (float32 while the
    sums stay exact, below 2²⁴), the block totals recursively: a handful of matrix products,
    where `lax.associative_scan` compiled for seconds and `jnp.cumsum` ran 3× slower on a CPU.
    """
    m = x.shape[0]
    block = min(PREFIX_BLOCK, m)
    blocks = jnp.pad(x, (0, -m % block)).reshape(-1, block)
    upper = np.triu(np.ones((block, block), np.int32))
    if bound * block < 2**24:
        inner = jnp.dot(blocks.astype(jnp.float32), upper.astype(np.float32)).astype(jnp.int32)
    else:
        inner = jnp.dot(blocks, upper, preferred_element_type=jnp.int32)
    if blocks.shape[0] > 1:
        totals = inner[:, -1]
        inner = inner + (prefix_sums(totals, bound * block) - totals)[:, None]
    return inner.reshape(-1)[:m]


def first_unfinished(done: jax.Array, size: int) -> jax.Array:
    """Indices of the first `size` elements with done = False, in order, padded with len(done).

    Each element's rank among the unfinished comes from its 32-element group packed into a
    word: the prefix sums of the words' popcounts plus the popcount of the bits below it. The
    unfinished elements are scattered to their ranks, the others (and ranks ≥ size) dropped.
    """
    n = done.shape[0]
    todo = jnp.pad(~done, (0, -n % 32)).reshape(-1, 32)
    bit = jnp.uint32(1) << jnp.arange(32, dtype=jnp.uint32)
    word = jnp.sum(jnp.where(todo, bit, jnp.uint32(0)), axis=1, dtype=jnp.uint32)
    count = lax.population_count(word).astype(jnp.int32)
    before = prefix_sums(count, 32) - count
    below = lax.population_count(word[:, None] & (bit - 1)).astype(jnp.int32)
    slot = jnp.where(todo, before[:, None] + below, size)
    index = jnp.arange(todo.size, dtype=jnp.int32).reshape(todo.shape)
    return jnp.full((size,), n, jnp.int32).at[slot].set(index, mode="drop")


def finish(
    seed: jax.Array,
    attempt: Try,
    params: Params,
    state: State,
    depth: int = 0,
    path: Count = 0,
) -> State:
    """Retry every unfinished element (1-D arrays) until all are done.

    Arrays of MIN_SIZE or less, or MAX_DEPTH buffers down, retry in place. Larger ones gather
    the unfinished elements into a buffer of 1/SHRINK the size and finish the buffer
    recursively (trying every element once first, unless the buffer retries in place anyway),
    then scatter it back; more unfinished elements than the buffer holds take further rounds.
    Each loop stops after MAX_TRIES rounds whatever happens, a guard against non-termination.

    A try's words come from the stream (path, level): level 2·depth for the try made on
    gathering into a buffer `depth` levels down (and for the first try, at depth 0), 2·depth + 1
    for retries in place; path lists the loop rounds that led to it, in base MAX_TRIES.
    """
    n = state.done.shape[0]
    if _in_place(n, depth):

        def retry(i: jax.Array, s: State) -> State:
            words = random_words(seed, n, (_extend(path, i), 2 * depth + 1))
            return attempt(words, params, s)

    else:
        size = max(n // SHRINK, MIN_SIZE)

        def retry(i: jax.Array, s: State) -> State:
            index = first_unfinished(s.done, size)
            sub_params = tuple(p.at[index].get(mode="clip") for p in params)
            sub = jax.tree.map(lambda a: a.at[index].get(mode="clip"), s)
            sub = sub.finished_where(index == n)
            sub_path = _extend(path, i)
            if not _in_place(size, depth + 1):
                words = random_words(seed, size, (sub_path, 2 * depth + 2))
                sub = attempt(words, sub_params, sub)
            sub = finish(seed, attempt, sub_params, sub, depth + 1, sub_path)
            return jax.tree.map(lambda a, b: a.at[index].set(b, mode="drop"), s, sub)

    def unfinished(carry: tuple[jax.Array, State]) -> jax.Array:
        i, s = carry
        return (i < MAX_TRIES) & ~jnp.all(s.done)

    return lax.while_loop(unfinished, lambda c: (c[0] + 1, retry(*c)), (0, state))[1]


def _in_place(size: int, depth: int) -> bool:
    return size <= MIN_SIZE or depth == MAX_DEPTH


def _extend(path: Count, i: jax.Array) -> jax.Array:
    """The path of round i of the loop reached by `path`."""
    return jnp.uint32(path) * MAX_TRIES + i.astype(jnp.uint32)


def _run(key: jax.Array, first: Try, attempt: Try, params: Params, state: State) -> State:
    """`first` for every element, then `finish` with `attempt`, on words from one Philox seed
    drawn from `key`."""
    seed = jax.random.bits(key, (2,), jnp.uint32)
    state = first(random_words(seed, state.done.shape[0], (0, 0)), params, state)
    return finish(seed, attempt, params, state)


# ---------------------------------------------------------------- public samplers


def _flat(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(x, jnp.float32), shape).reshape(-1)


def sample_gamma(key: jax.Array, concentration: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Gamma(α, 1) samples of `shape` (α > 0 broadcast to it), float32."""
    alpha = _flat(concentration, shape)
    state = GammaState(jnp.full_like(alpha, jnp.inf))
    state = _run(key, gamma_attempt, gamma_attempt, (alpha,), state)
    return jnp.exp(state.log_gamma).reshape(shape)


def sample_poisson(key: jax.Array, rate: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Poisson(λ) samples of `shape` (λ ≥ 0 broadcast to it, capped at 2²³), float32."""
    lam = jnp.minimum(_flat(rate, shape), MAX_POISSON_RATE)
    state = PoissonState(jnp.full_like(lam, REJECTED))
    state = _run(key, poisson_attempt, poisson_attempt, (lam,), state)
    return jnp.maximum(state.count, 0.0).reshape(shape)


def sample_gamma_poisson(
    key: jax.Array, concentration: jax.Array, rate: jax.Array, shape: tuple[int, ...]
) -> jax.Array:
    """Gamma–Poisson(θ, r) samples of `shape`: NB with mean θ/r and variance θ/r·(1 + 1/r).

    θ > 0 and r > 0 broadcast to `shape`; r = ∞ (mean 0) gives 0. float32 counts.
    """
    alpha = _flat(concentration, shape)
    log_rate = jnp.log(_flat(rate, shape))
    state = GammaPoissonState(jnp.full_like(alpha, jnp.inf), jnp.full_like(alpha, REJECTED))

    def first(words: Words, params: Params, s: GammaPoissonState) -> GammaPoissonState:
        return gamma_poisson_attempt(words, params, s, ptrs=False)

    state = _run(key, first, gamma_poisson_attempt, (alpha, log_rate), state)
    return jnp.maximum(state.count, 0.0).reshape(shape)
