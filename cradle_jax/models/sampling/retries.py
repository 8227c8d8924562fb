"""Tries until every element is accepted: retry buffers of the unfinished elements.

Every element makes one try from random words drawn for the whole array at once; the few left
unfinished (~5%) are gathered into a buffer an eighth of the size and tried once there, those
still unfinished into one an eighth of that, which is retried in place until done. An element
draws fresh words at each try and keeps its first accepted value, so every sample follows its
distribution exactly, whatever the others do; and since the words depend only on the key and the
element's place, so do the samples.
"""

from collections.abc import Callable
from typing import Protocol, Self

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cradle_jax.models.sampling.words import Count, Words, random_words

SHRINK = 8  # a retry buffer holds 1/SHRINK of the elements of the level above
MIN_SIZE = 1024  # arrays this small retry in place
MAX_DEPTH = 2  # buffers of buffers: deeper ones would save little and take compile time
PREFIX_BLOCK = 64  # block of `prefix_sums`
MAX_TRIES = 64  # per loop: a guard against non-termination, never reached in practice

Params = tuple[jax.Array, ...]


class State(Protocol):
    """What `finish` needs of a sampler's state: which elements are accepted, and a copy with
    some elements marked accepted (the padding of a retry buffer)."""

    @property
    def done(self) -> jax.Array: ...

    def finished_where(self, mask: jax.Array) -> Self: ...


Try = Callable[[Words, Params, State], State]  # one try where the state is not yet accepted


def prefix_sums(x: jax.Array, bound: int) -> jax.Array:
    """Inclusive prefix sums of a 1-D int32 array whose entries are at most `bound`.

    Blocks of PREFIX_BLOCK are summed by a product with a triangular matrix (float32 while the
    sums stay exact, below 2²⁴), the block totals recursively: a handful of matrix products,
    where `lax.associative_scan` compiled for seconds and `jnp.cumsum` ran slower on a CPU.
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


def run(key: jax.Array, first: Try, attempt: Try, params: Params, state: State) -> State:
    """`first` for every element, then `finish` with `attempt`, on words from one Philox seed
    drawn from `key`."""
    seed = jax.random.bits(key, (2,), jnp.uint32)
    state = first(random_words(seed, state.done.shape[0], (0, 0)), params, state)
    return finish(seed, attempt, params, state)
