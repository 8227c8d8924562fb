"""The samplers' random stream: uniform uint32 words from Philox-4x32-10, whose counters name an
element and a try, and the uniforms and normals made from them.

Uniforms take the top 23 bits of a word, (m + ½)·2⁻²³, in the open interval (0, 1); normals are
√2·erfinv(2u − 1), as `jax.random.normal` computes them.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_PHILOX_M0, _PHILOX_M1 = np.uint32(0xD2511F53), np.uint32(0xCD9E8D57)
_PHILOX_W0, _PHILOX_W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)

Words = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
Count = jax.Array | int


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

    `stream` = (path, level) names the try (see `retries.finish`); every try of a sampling has
    its own, so no two tries share a word. Philox rather than `jax.random.bits`: on a CPU it makes
    four words for little more than Threefry's cost of one (benchmarks/README.md#sampling); and
    naming tries by counters instead of splitting keys leaves no Threefry hash inside the retry
    loops, each of which would have to be compiled.
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
