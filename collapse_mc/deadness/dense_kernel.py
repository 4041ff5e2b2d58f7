"""Generic born-dead kernel: materialize each network and evaluate it on the probe set.

Works for every initializer, bias, activation, residual setting and input dimension. Cost per trial:
drawing all ``d_in*N + (L_h - 1)*N^2`` weights, plus ``P * L_h * N^2`` multiply-adds for P probes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..config import InitConfig, NetworkConfig
from ..nets.mlp import MLP
from ..nets.observe import first_true_layer  # noqa: F401  (re-exported)
from .. import rng


def dead_dtype(width: int):
    return jnp.uint8 if width < 256 else jnp.uint16


def dense_chunk_fn(network: NetworkConfig, init: InitConfig, probes):
    """Chunk function ``(trials (c,) int32, root (2,) uint32 = [seed, cell]) -> outcomes``.

    Outcomes: ``first_dead_layer (c,) int32`` (1-based hidden layer whose output is constant over the probes,
    0 when none) and ``dead_neurons (c, L_h)`` (neurons with pre-activation <= 0 at every probe).
    """
    from ..training.forward import deadness_t  # the training package imports this one
    model = MLP(network, init)
    x = jnp.asarray(probes)

    def one(key):
        params = model.init(rng.stream(key, rng.TAG_INIT), x[:1])["params"]
        _, dead, constant = deadness_t(network, params, x.T)  # the training path's test, O(P * width) memory
        return first_true_layer(constant), dead.astype(dead_dtype(network.width))

    def chunk(trials, root):
        first, dead = jax.vmap(one)(rng.root_keys(root, trials))
        return {"first_dead_layer": first, "dead_neurons": dead}

    return chunk
