"""Per-trial random keys.

Every trial's key is ``fold_in(fold_in(key(seed), cell), trial_index)``: it depends only on the root seed, the
cell (an integer derived from the cell's configuration, see ``config.cell_id``) and the trial's global index,
never on batch size, chunking or the number of devices. Streams inside a trial are split off by further
``fold_in`` with fixed tags (see ``TAG_*``), so adding a use of randomness never shifts another.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

TAG_INIT = 1        # network parameters
TAG_DATA = 2        # training inputs
TAG_BATCH = 3       # minibatch indices (further folded with the step)
TAG_GRAM = 4        # Gaussian born-dead kernel, joint phase (further folded with the layer)
TAG_BITS = 5        # Gaussian born-dead kernel, single-path phase


def cell_key(seed: int, cell: int) -> jax.Array:
    """The key of one cell: ``fold_in(key(seed), cell)``."""
    return jax.random.fold_in(jax.random.key(seed), jnp.uint32(cell))


def trial_key(key_of_cell: jax.Array, trial: jax.Array) -> jax.Array:
    """The key of one trial (``trial``: a global index, integer scalar)."""
    return jax.random.fold_in(key_of_cell, trial.astype(jnp.uint32))


def trial_keys(key_of_cell: jax.Array, trials: jax.Array) -> jax.Array:
    """Keys for a vector of global trial indices ``(T,) -> (T,)`` keys."""
    return jax.vmap(lambda t: trial_key(key_of_cell, t))(trials)


def root_keys(root: jax.Array, trials: jax.Array) -> jax.Array:
    """Keys of global trial indices ``trials (c,)`` from a compiled program's ``root = [seed, cell]`` (uint32
    ``(2,)``, a traced argument so one compilation serves every seed and cell)."""
    return trial_keys(jax.random.fold_in(jax.random.key(root[0]), root[1]), trials)


def stream(key: jax.Array, tag: int) -> jax.Array:
    """A named sub-stream of a trial's key."""
    return jax.random.fold_in(key, tag)


def threefry_partitionable() -> bool:
    """Whether ``jax.random`` draws with the partitionable threefry (JAX's default): each word of a draw is a
    hash of the key and the word's index alone, so a shorter draw is a prefix of a longer one. The native
    kernel's minibatch draws and the born-dead kernel's depth capacity rely on it."""
    return (bool(jax.config.jax_threefry_partitionable)
            and str(jax.config.jax_default_prng_impl) in ("threefry2x32", "threefry"))
