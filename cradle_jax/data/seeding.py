"""Host-side random generators derived from the one run seed (docs/method.md#randomness).

Every consumer names its purpose, so adding a new consumer never shifts the numbers another one
draws, and the shuffle of epoch e depends on (seed, e) alone.
"""

import zlib

import numpy as np


def host_rng(seed: int, purpose: str, *extra: int) -> np.random.Generator:
    """A NumPy generator for `purpose` (e.g. "split", "references", "shuffle") under `seed`."""
    return np.random.default_rng([int(seed), zlib.crc32(purpose.encode()), *map(int, extra)])
