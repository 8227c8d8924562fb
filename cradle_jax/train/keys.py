"""Named JAX keys of a run: one per purpose, all derived from the run's one seed
(docs/method.md#randomness)."""

import zlib

import jax
import numpy as np


def purpose_key(seed: int, purpose: str) -> np.ndarray:
    """Raw key data (uint32) of `purpose` ("init", "train", "validation", ...) for `seed`.

    Raw data rather than a typed key so the same host value can be handed to every process and
    replicated over a mesh; programs wrap it with `jax.random.wrap_key_data`.
    """
    key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(purpose.encode()) & 0x7FFFFFFF)
    return np.asarray(jax.random.key_data(key))
