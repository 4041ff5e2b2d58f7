"""Fast exact born-dead kernel for Gaussian weights, zero biases, d_in = 1 (relu).

Exactness. With zero biases the network is positively homogeneous, so deadness on any interval around 0 is
decided by the two inputs x = +1 and x = -1 ("paths" a and b). Given the previous layer's outputs ``a, b``
(vectors of size N), the pre-activations of neuron j at the two inputs are ``(w_j . a, w_j . b)`` with
``w_j ~ N(0, s^2 I)`` independent across j: a bivariate Gaussian with covariance ``s^2 G``,
``G = [[a.a, a.b], [a.b, b.b]]``. So each layer needs only 2N standard normals (not N^2) and the 2x2 Gram
matrix as state; since ReLU is positively homogeneous, ``G`` is renormalized every layer and the weight scale
s drops out (any zero-mean Gaussian init: he_normal, lecun_normal). Layer 1 starts from ``G = [[1, -1], [-1, 1]]``.

Once one path is all-zero it stays zero (zero biases), and the other path's neurons are then negative
independently with probability 1/2 at every layer whatever its state. So the kernel runs in two phases:

1. *joint phase* (Gaussian draws) until a path dies or the last layer is reached. Trials finish this phase
   after very different numbers of layers, so a fixed pool of slots processes a queue of trials in a
   ``while_loop``: every slot advances one layer per iteration and a finished slot loads the next trial.
   No work is spent on trials that are already finished.
2. *single-path phase* (random bits only): one bit per neuron and layer decides the sign; the surviving path
   dies at the first layer whose N bits are all "negative".

Draws per trial: 2N normals per joint layer, plus ceil(L_h N / 32) random words. The joint phase hashes the
trial's ``fold_in(trial_key, TAG_GRAM)`` key with Threefry-2x32 at counters given by (layer, neuron), the
counter-based construction ``jax.random`` itself uses, written out so that one pool iteration is one
vectorized hash (3x faster on CPU than vmapped ``fold_in`` + ``normal``); the single-path phase uses
``jax.random.bits(fold_in(trial_key, TAG_BITS))``. A trial's outcome thus depends only on its key, never on the
pool size, chunk size or device count.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from .. import rng
from .dense_kernel import dead_dtype, first_true_layer

# end codes of the joint phase
BOTH_ALIVE, A_DEAD, B_DEAD, BOTH_DEAD = 0, 1, 2, 3


_SQRT2 = np.float32(np.sqrt(2.0))
_ABOVE_MINUS_ONE = np.nextafter(np.float32(-1.0), np.float32(1.0))


def normals_from_bits(bits: jax.Array) -> jax.Array:
    """uint32 words -> standard normals, as ``jax.random.normal`` maps bits (uniform on (-1, 1), erf_inv)."""
    unit = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0  # [0, 1)
    return _SQRT2 * jax.lax.erf_inv(jnp.maximum(_ABOVE_MINUS_ONE, unit * 2.0 - 1.0))


def layer_normals(key_data: jax.Array, layer: jax.Array, width: int) -> jax.Array:
    """The 2N standard normals of one trial's joint layer: the Threefry-2x32 hash of the trial's Gram-stream
    key (``key_data (2,) uint32``) at counters ``layer * 2N .. layer * 2N + 2N - 1``. Returns ``(2, N)``."""
    counters = (layer * (2 * width) + jnp.arange(2 * width)).astype(jnp.uint32)
    return normals_from_bits(threefry_2x32((key_data[0], key_data[1]), counters)).reshape(2, width)


def _joint_layer(u, gram):
    """One joint layer from normals ``u (2, N)`` and ``gram (3,) = (a.a, a.b, b.b)``
    -> (dead neuron count, next gram, a dead, b dead)."""
    aa, ab, bb = gram[0], gram[1], gram[2]
    l11 = jnp.sqrt(aa)
    l21 = jnp.where(aa > 0, ab / jnp.where(aa > 0, l11, 1.0), 0.0)
    l22 = jnp.sqrt(jnp.maximum(bb - l21 * l21, 0.0))
    za = l11 * u[0]
    zb = l21 * u[0] + l22 * u[1]
    dead = jnp.sum((za <= 0) & (zb <= 0)).astype(jnp.int32)
    ra, rb = jnp.maximum(za, 0.0), jnp.maximum(zb, 0.0)
    new = jnp.stack([jnp.sum(ra * ra), jnp.sum(ra * rb), jnp.sum(rb * rb)])  # no TF32 dots on GPUs
    scale = new[0] + new[2]
    new = new / jnp.where(scale > 0, scale, 1.0)
    return dead, new, new[0] == 0, new[2] == 0


def gaussian_chunk_fn(width: int, depth: int, pool_size: int = 4096):
    """Chunk function ``(trials (c,) int32, root (2,) uint32[, active_depth]) -> outcomes`` (see
    ``dense_chunk_fn``).

    ``active_depth`` (int32 scalar, 1 .. ``depth``; default ``depth``) is the depth estimated: the program is
    built for ``depth`` hidden layers (its capacity) and gives the outcomes of ``active_depth`` hidden layers in
    ``first_dead_layer`` and the first ``active_depth`` columns of ``dead_neurons (c, depth)`` (the later columns
    are meaningless), so one compilation serves every depth up to the capacity. These equal the outcomes of the
    program built for ``active_depth`` layers when ``jax.random.bits`` draws a prefix of its longer draws (the
    partitionable threefry, JAX's default; see ``born_dead.gaussian_capacity``): the joint phase's normals
    depend on (layer, neuron) only, and the single-path phase reads the first ``active_depth * width`` of its
    ``depth * width`` bits.
    """
    N, L = width, depth
    out_dtype = dead_dtype(N)
    g0 = jnp.array([1.0, -1.0, 1.0], jnp.float32)

    def chunk(trials, root, active_depth=None):
        last = jnp.int32(L) if active_depth is None else jnp.asarray(active_depth, jnp.int32)  # last hidden layer
        c = trials.shape[0]
        pool = min(pool_size, c)
        tkeys = rng.root_keys(root, trials)
        gram_keys = jax.random.key_data(jax.vmap(lambda k: rng.stream(k, rng.TAG_GRAM))(tkeys))  # (c, 2) uint32

        # ---- phase 1: joint Gaussian phase over a pool of slots --------------------------------------------
        def body(state):
            slot, layer, gram, nxt, dead_out, end_layer, end_code = state
            active = slot < c
            t = jnp.minimum(slot, c - 1)
            u = jax.vmap(lambda kd, l: layer_normals(kd, l, N))(gram_keys[t], layer)
            dead, new_gram, a_dead, b_dead = jax.vmap(_joint_layer)(u, gram)
            row = jnp.where(active, slot, c)
            dead_out = dead_out.at[row, layer - 1].set(dead.astype(out_dtype))
            done = active & (a_dead | b_dead | (layer == last))
            code = a_dead.astype(jnp.int8) + 2 * b_dead.astype(jnp.int8)
            done_row = jnp.where(done, slot, c)
            end_layer = end_layer.at[done_row].set(layer)
            end_code = end_code.at[done_row].set(code)
            need = done | ~active
            rank = jnp.cumsum(need) - 1
            loaded = jnp.where(nxt + rank < c, nxt + rank, c)
            slot = jnp.where(need, loaded, slot)
            layer = jnp.where(need, 1, layer + 1)
            gram = jnp.where(need[:, None], g0, new_gram)
            nxt = jnp.minimum(nxt + jnp.sum(need), c)
            return slot, layer, gram, nxt, dead_out, end_layer, end_code

        state = (
            jnp.arange(pool, dtype=jnp.int32),
            jnp.ones(pool, jnp.int32),
            jnp.broadcast_to(g0, (pool, 3)),
            jnp.int32(pool),
            jnp.zeros((c + 1, L), out_dtype),
            jnp.zeros(c + 1, jnp.int32),
            jnp.zeros(c + 1, jnp.int8),
        )
        state = jax.lax.while_loop(lambda s: jnp.any(s[0] < c), body, state)
        dead_out, end_layer, end_code = state[4][:c], state[5][:c], state[6][:c]

        # ---- phase 2: the surviving path, from random bits ---------------------------------------------------
        n_bits = L * N
        n_words = -(-n_bits // 32)
        words = jax.vmap(lambda k: jax.random.bits(rng.stream(k, rng.TAG_BITS), (n_words,), jnp.uint32))(tkeys)
        b = jnp.arange(n_bits)
        bits = (words[:, b // 32] >> (b % 32).astype(jnp.uint32)) & 1
        negative = bits.reshape(c, L, N).astype(jnp.int32)
        count = jnp.sum(negative, axis=-1)                         # (c, L) dead neurons if one path is dead
        layers = jnp.arange(1, L + 1)
        after = layers[None, :] > end_layer[:, None]               # layers beyond the joint phase
        single = (end_code == A_DEAD) | (end_code == B_DEAD)
        dies = after & single[:, None] & (count == N)
        if active_depth is not None:
            dies = dies & (layers[None, :] <= last)
        first_single = first_true_layer(dies)
        first = jnp.where(end_code == BOTH_DEAD, end_layer, jnp.where(single, first_single, 0))
        fill = jnp.where(single[:, None], count, 0).astype(out_dtype)
        dead_out = jnp.where(after, fill, dead_out)
        dead_out = jnp.where((first[:, None] > 0) & (layers[None, :] >= first[:, None]), jnp.asarray(N, out_dtype),
                             dead_out)
        return {"first_dead_layer": first, "dead_neurons": dead_out}

    return chunk
