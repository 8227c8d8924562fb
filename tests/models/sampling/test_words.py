"""The samplers' random stream against Random123's Philox test vectors, 64-bit products and SciPy's
normal quantiles."""

import jax.numpy as jnp
import numpy as np
from scipy import stats

from cradle_jax.models.sampling.words import high_word, open_uniform, philox4x32, standard_normal


def test_philox_matches_random123_known_answers():
    """The Philox-4x32-10 known-answer vectors of Random123 (kat_vectors)."""
    cases = [
        ((0, 0), (0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 2, (0xFFFFFFFF,) * 4, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0xA4093822, 0x299F31D0),
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for key, counter, expected in cases:
        out = philox4x32(tuple(jnp.uint32(k) for k in key), tuple(jnp.uint32(c) for c in counter))
        assert [int(x) for x in out] == list(expected)


def test_high_word_matches_a_64_bit_product():
    x = np.random.default_rng(0).integers(0, 2**32, 10_000, dtype=np.uint64)
    x[:3] = [0, 1, 2**32 - 1]
    for constant in (0xD2511F53, 0xCD9E8D57, 0xFFFFFFFF):
        expected = (x * np.uint64(constant)) >> np.uint64(32)
        got = high_word(np.uint32(constant), jnp.asarray(x.astype(np.uint32)))
        np.testing.assert_array_equal(np.asarray(got), expected.astype(np.uint32))


def test_uniforms_and_normals_from_words():
    words = jnp.array([0, 511, 512, 2**32 - 1], jnp.uint32)
    np.testing.assert_array_equal(
        open_uniform(words), np.array([0.5, 0.5, 1.5, 2**23 - 0.5]) / 2**23
    )
    u = np.asarray(open_uniform(words), np.float64)
    np.testing.assert_allclose(standard_normal(words), stats.norm.ppf(u), rtol=1e-4, atol=1e-5)
