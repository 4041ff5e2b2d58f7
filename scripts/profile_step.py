#!/usr/bin/env python
"""Where a training step's time goes, for one width and depth, on one device (prints JSON).

    python scripts/profile_step.py [--width 12] [--depth 48] [--chunk 32] [--init he_normal]

Times (best of 3, compiled, one device, ``chunk`` networks vmapped) of:

* ``block``: 100 full training steps of the main job's protocol (``TrainProgram.full_steps``, own depth);
* ``death_check``: one death check on the whole 3,000-point training set (``is_dead``), made every 100 steps;
* ``minibatch_rng``: drawing the 100 steps' minibatch indices alone (Threefry, ``jax.random.randint``);
* ``cheap_block``: 100 steps of a network dead on its training set (``cheap_block``);
* the hidden stack alone on 64 points (the part that grows with depth), in XLA's code: ``stack_forward``,
  ``stack_forward_backward`` (``hidden_stack`` and its hand-written backward pass), and
  ``stack_weight_gradients``: the backward pass's weight-gradient reductions alone (per layer
  ``sum_p h[i, p] delta[j, p]``, the same fused reduction on arrays of the same shapes); and, where the
  native CPU kernel applies (``collapse_mc.native``), ``native_stack_forward`` and
  ``native_stack_forward_backward``: the same two in the kernel. ``block`` and the others use the kernel
  where it applies (``COLLAPSE_MC_NO_NATIVE=1``: XLA's code everywhere).

Also the useful FLOP rate of the hidden stack's forward + backward (3 x 2 x width^2 x 64 per layer and network).
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp

from collapse_mc import rng
from collapse_mc.config import ConfigError
from collapse_mc.jobs.trained_region import TrainedRegion, trained_spec
from collapse_mc.training import forward
from collapse_mc.training.trainer import _program, values_array

BLOCK = 100
POINTS = 64


def best_of(fn, *args, repeats=3) -> float:
    """Seconds per call of the compiled ``fn`` (best of ``repeats``, after one warm-up call)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=12)
    ap.add_argument("--depth", type=int, default=48, help="hidden layers L_h")
    ap.add_argument("--chunk", type=int, default=32, help="networks per call (vmapped)")
    ap.add_argument("--init", default="he_normal")
    args = ap.parse_args()
    w, d, n = args.width, args.depth, args.chunk
    if w < 1 or d < 2 or n < 1:
        ap.error("need width >= 1, depth >= 2, chunk >= 1")

    try:
        cell = trained_spec(TrainedRegion(), args.init, w, d, n).cells[0].cell
    except ConfigError as e:
        ap.error(str(e))
    prog = _program(cell.network, cell.init, cell.train.static_part(), None)
    values = values_array(cell)
    keys = rng.root_keys(jnp.array([0, cell.cell], jnp.uint32), jnp.arange(n, dtype=jnp.int32))
    state, data, _ = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(keys, values)
    step0 = jnp.int32(0)

    def draws(key):
        batch_key = rng.stream(key, rng.TAG_BATCH)

        def body(acc, t):
            idx = jax.random.randint(jax.random.fold_in(batch_key, t), (POINTS,), 0, prog.n_train)
            return acc + jnp.sum(idx), None

        return jax.lax.scan(body, jnp.int32(0), jnp.arange(BLOCK, dtype=jnp.int32))[0]

    per_trial = {
        "block": lambda s, dd, k: prog.full_steps(s, dd, k, values, step0, BLOCK),
        "death_check": lambda s, dd, k: prog.is_dead(s.params, dd.xt),
        "minibatch_rng": lambda s, dd, k: draws(k),
        "cheap_block": lambda s, dd, k: prog.cheap_block(s, dd, k, values, step0, BLOCK),
    }
    ms = {name: 1e3 * best_of(jax.jit(jax.vmap(fn)), state, data, keys) for name, fn in per_trial.items()}

    relu = jax.nn.relu
    h = jax.random.normal(jax.random.PRNGKey(1), (n, w, POINTS))
    stacked = state.params["hidden"]["affine"]

    def stack_forward(h, a):
        return jnp.sum(forward.hidden_stack(relu, False, None, h, a, None))

    def stack_loss(h, a):
        out = forward.hidden_stack(relu, False, None, h, a, None)
        return jnp.sum(out * out)

    saved = jax.random.normal(jax.random.PRNGKey(2), (d - 1, n, w, POINTS))

    def weight_gradients(hs, deltas):
        reduce = jax.vmap(lambda h, g: jnp.sum(h[:, None, :] * g[None, :, :], axis=-1))
        return jax.lax.scan(lambda c, xs: (c, reduce(*xs)), 0, (hs, deltas))[1]

    ms["stack_forward"] = 1e3 * best_of(jax.jit(jax.vmap(stack_forward)), h, stacked)
    ms["stack_forward_backward"] = 1e3 * best_of(jax.jit(jax.vmap(jax.grad(stack_loss, (0, 1)))), h, stacked)
    ms["stack_weight_gradients"] = 1e3 * best_of(jax.jit(weight_gradients), saved, saved * 0.5)
    kernel = forward.native_spec(cell.network)
    if kernel is not None:
        def native_forward(h, a):
            return jnp.sum(forward.hidden_stack(relu, False, kernel, h, a, None))

        def native_loss(h, a):
            out = forward.hidden_stack(relu, False, kernel, h, a, None)
            return jnp.sum(out * out)

        ms["native_stack_forward"] = 1e3 * best_of(jax.jit(jax.vmap(native_forward)), h, stacked)
        ms["native_stack_forward_backward"] = 1e3 * best_of(jax.jit(jax.vmap(jax.grad(native_loss, (0, 1)))), h,
                                                            stacked)
    flop = 3 * 2 * w * w * POINTS * (d - 1) * n
    print(json.dumps({
        "width": w, "depth": d, "layers": d + 1, "chunk": n, "device": str(jax.devices()[0]),
        "ms": {k: round(v, 3) for k, v in ms.items()},
        "block_net_steps_per_s": round(n * BLOCK / ms["block"] * 1e3),
        "death_check_per_block": round(ms["death_check"] / ms["block"], 3),
        "rng_share_of_block": round(ms["minibatch_rng"] / ms["block"], 3),
        "rng_share_of_cheap_block": round(ms["minibatch_rng"] / ms["cheap_block"], 3),
        "stack_backward_over_forward": round((ms["stack_forward_backward"] - ms["stack_forward"])
                                             / ms["stack_forward"], 2),
        "stack_weight_gradient_share": round(ms["stack_weight_gradients"] / ms["stack_forward_backward"], 3),
        "stack_useful_gflop_per_s": round(flop / ms["stack_forward_backward"] / 1e6, 1),
        "native_stack_useful_gflop_per_s": (round(flop / ms["native_stack_forward_backward"] / 1e6, 1)
                                            if "native_stack_forward_backward" in ms else None),
    }, indent=1))


if __name__ == "__main__":
    main()
