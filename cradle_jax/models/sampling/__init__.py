"""Exact, vectorised samplers for Gamma(α, 1), Poisson(λ) and the Gamma–Poisson (negative
binomial) counts of the `library_nb` head (docs/method.md#networks), for generating many cells at
once (docs/method.md#generation).

`jax.random.gamma` and `jax.random.poisson` run a rejection loop per element in which every try
splits a Threefry key, which dominates the cost of a count on a CPU. Here every element makes one
try from random words drawn for the whole array at once (Philox, four words per element and
try); the few elements left unfinished (~5%) are gathered into a buffer an eighth of the size and
tried once there, those still unfinished into one an eighth of that, which is retried in place
until done (benchmarks/README.md#sampling). An element draws fresh words at each try and keeps
its first accepted value, so every sample follows its distribution exactly, whatever the others
do; and since the words depend only on the key and the element's place, so do the samples.

The modules, one job each:

- `words`: the random stream, Philox-4x32-10 words named by element and try; uniforms, normals.
- `tries`: one try per element at Gamma (Marsaglia–Tsang) and Poisson (inversion, PTRS).
- `retries`: trying again where a try was rejected, in buffers of the unfinished elements.
- `samplers`: each sampler's state and try, and the public functions below.
"""

from cradle_jax.models.sampling.samplers import sample_gamma, sample_gamma_poisson, sample_poisson

__all__ = ["sample_gamma", "sample_gamma_poisson", "sample_poisson"]
