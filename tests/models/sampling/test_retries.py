"""The retry buffers' index arithmetic against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np

from cradle_jax.models.sampling import retries


def test_first_unfinished_and_prefix_sums_match_numpy():
    rng = np.random.default_rng(0)
    done = rng.random(10_001) < 0.9
    expected = np.flatnonzero(~done)
    first_unfinished = jax.jit(retries.first_unfinished, static_argnums=1)
    for size in (expected.size - 100, expected.size + 100):
        index = np.asarray(first_unfinished(jnp.asarray(done), size))
        padded = np.full(size, done.size)
        padded[: min(size, expected.size)] = expected[:size]
        np.testing.assert_array_equal(index, padded)
    x = rng.integers(0, 2**18, 5000).astype(np.int32)  # totals beyond 2²⁴: the int32 path
    sums = jax.jit(retries.prefix_sums, static_argnums=1)(jnp.asarray(x), 2**18)
    np.testing.assert_array_equal(sums, np.cumsum(x))
