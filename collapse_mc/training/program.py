"""The pure per-trial functions of one training configuration (``TrainProgram``).

For a trial key and the traced ``values`` (lr, momentum, beta1, beta2, target_scale), depth = hidden layers L_h:

1. ``init``: parameters from ``MLP(network, init).init(stream(key, TAG_INIT))`` (augmented matrices), the
   optimizer state, the trial's training set (``n_train`` points uniform on [-a, a]^d_in from
   ``stream(key, TAG_DATA)``, features-major) and ``first_dead_layer`` on the probe set (born dead); then
   ``init_checks``: ``near_flat_at_init`` (output flat on the test grid) and ``dead_on_train``;
2. ``full_block``: ``lax.scan`` over global steps ``step0 .. step0 + length - 1`` (steps >= ``static.steps``
   are skipped); the minibatch of step t is ``batch_size`` indices drawn with replacement from
   ``fold_in(stream(key, TAG_BATCH), t)``, so nothing depends on how steps are blocked. Then the death check:
   ``dead_on_train`` (``is_dead``) on the trial's whole training set;
3. ``cheap_block``: the same steps for a trial that is **dead on its training set**: some hidden layer's
   pre-activations are <= 0 at every training point, so that layer and everything below it get exactly zero
   gradient at every later step (every minibatch is drawn from the training set) and the output is one
   constant ``c`` at every training point. A step then needs the network at a single training point: the
   loss of the minibatch is ``loss(c broadcast, y_batch)`` with the same minibatch indices, and the optimizer
   update is applied to every parameter (zero gradients below, so momentum carries exactly as in a full
   step). Only float rounding differs from ``full_block`` (sums over the minibatch are taken in another
   order);
4. ``finish``: classification (``classify``) after training.

With ``traced_depth`` the program is built for ``network.depth`` hidden layers (its *capacity*) and
``values["depth"]`` (int32, at most the capacity) is the depth actually trained: the layers above it are
skipped everywhere (``forward.active_stacked``), so one compilation serves every depth up to the capacity and a
trial's outcomes equal those of the program built for its own depth (the first layers of a deeper
initialization are the same draws; tested).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import native, rng
from ..rng import threefry_partitionable
from ..config import InitConfig, NetworkConfig, ProbeConfig
from ..deadness.probes import probe_points
from ..nets.mlp import MLP
from . import classify
from .config import TrainStatic
from .forward import active_stacked, any_dead_t, deadness_t, forward_t, loss_and_grad_t, native_spec, saved_buffers
from .losses import get_loss
from .optimizers import make_optimizer
from .targets import dense_grid, get_target, target_stats

RETIRING_ACTIVATIONS = ("relu",)  # a dead ReLU layer passes no gradient; leaky/smooth activations never die


def adam_hyper(values, count) -> jax.Array:
    """``native.adam_update``'s hyperparameters for the update of Adam count ``count`` (int32, any shape):
    ``(..., 7)`` = lr, b1, b2, eps, eps_root and the bias corrections ``1 - b^count``."""
    b1, b2 = values["beta1"], values["beta2"]
    ones = jnp.ones(jnp.shape(count), jnp.float32)
    return jnp.stack([values["lr"] * ones, b1 * ones, b2 * ones, jnp.float32(1e-8) * ones, jnp.float32(0.0) * ones,
                      (1 - b1 ** count).astype(jnp.float32), (1 - b2 ** count).astype(jnp.float32)], axis=-1)


class TrainState(NamedTuple):
    """One trial's training state (vmapped: every leaf gains a leading trial axis)."""

    params: dict
    opt_state: optax.OptState
    finite: jax.Array  # bool: every training loss so far was finite


class TrialData(NamedTuple):
    """One trial's training set, features-major: ``xt (d_in, n_train)``, ``yt (d_out, n_train)``."""

    xt: jax.Array
    yt: jax.Array


class TrainProgram:
    """Pure per-trial functions for one static configuration (see the module docstring).

    ``optimizer``: an optax ``GradientTransformation`` used instead of the configured one (its
    hyperparameters are then fixed, not traced).
    """

    has_cheap_path = True  # ``cheap_block`` trains a network dead on its training set exactly (see above)

    def __init__(self, network: NetworkConfig, init: InitConfig, static: TrainStatic,
                 optimizer: optax.GradientTransformation | None = None, traced_depth: bool = False):
        self.network, self.init_config, self.static = network, init, static
        self.traced_depth = traced_depth
        self.model = MLP(network, init)
        self.loss_fn = get_loss(static.loss)
        self.custom_optimizer = optimizer
        self.retires = network.activation in RETIRING_ACTIVATIONS
        self.n_train = static.n_train
        self._setup_domain()

    def _setup_domain(self) -> None:
        """The uniform domain's probe set, dense test grid and the target on it."""
        network, static, init = self.network, self.static, self.init_config
        self.target = get_target(static.target)
        self.stats = target_stats(static.target, static.half_width)
        probe = ProbeConfig(static.half_width, static.test_points, static.test_points)
        self.probes = np.asarray(probe_points(network, init, probe), np.float32)
        self.grid = dense_grid(network.d_in, static.half_width, static.test_points)
        self.target_grid = np.asarray(self.target(jnp.asarray(self.grid)), np.float32).reshape(
            len(self.grid), network.d_out)

    # -- targets and data ----------------------------------------------------------------------------------
    def transform(self, values) -> tuple[jax.Array, jax.Array]:
        """``(shift, factor)``, each ``(d_out,)``: the trained target is ``(f - shift) * factor``."""
        st, mean, std = self.static, jnp.asarray(self.stats.mean), jnp.asarray(self.stats.std)
        s = jnp.asarray(values["target_scale"], jnp.float32)
        if st.normalize_target:
            return mean, s / std
        if st.scaled:
            return jnp.zeros_like(mean), s / std
        return jnp.zeros_like(mean), jnp.ones_like(mean)

    def target_std(self, values) -> jax.Array:
        """Population standard deviation of the trained target, ``(d_out,)``."""
        return jnp.asarray(self.stats.std) * jnp.abs(self.transform(values)[1])

    def data(self, key, values) -> TrialData:
        """The trial's training set (features-major)."""
        st, a = self.static, self.static.half_width
        x = jax.random.uniform(rng.stream(key, rng.TAG_DATA), (st.n_train, self.network.d_in), jnp.float32, -a, a)
        shift, factor = self.transform(values)
        y = (self.target(x).reshape(st.n_train, self.network.d_out) - shift) * factor
        return TrialData(x.T, y.T)

    def optimizer(self, values) -> optax.GradientTransformation:
        if self.custom_optimizer is not None:
            return self.custom_optimizer
        return make_optimizer(self.static, values)

    def depth(self, values):
        """The active depth: ``values["depth"]`` (traced int32) with ``traced_depth``, else None (all
        ``network.depth`` hidden layers)."""
        return values["depth"] if self.traced_depth else None

    def train_set(self, data: TrialData, values) -> tuple[jax.Array, jax.Array]:
        """The arrays trained on, features-major: ``xt (d_in, n_train)``, ``yt (d_out, n_train)``."""
        return data.xt, data.yt

    def loss(self, params, xt, yt, depth=None) -> jax.Array:
        return self.loss_fn(forward_t(self.network, params, xt, depth), yt)

    # -- the death check -----------------------------------------------------------------------------------
    def is_dead(self, params, xt, depth=None) -> jax.Array:
        """Whether some hidden layer is dead on the points ``xt (d_in, P)``: its output is the same at every
        point and every one of its neurons has pre-activation <= 0 at every point (bool scalar; always False
        for activations other than ReLU). Dead on the training set is permanent: see the module docstring."""
        if not self.retires:
            return jnp.array(False)
        return any_dead_t(self.network, params, xt, depth)

    # -- the phases ----------------------------------------------------------------------------------------
    def init(self, key, values) -> tuple[TrainState, TrialData, jax.Array]:
        """State, training set and ``first_dead_layer`` on the probe set (born dead: > 0)."""
        params = self.model.init(rng.stream(key, rng.TAG_INIT), jnp.zeros((1, self.network.d_in)))["params"]
        constant = deadness_t(self.network, params, jnp.asarray(self.probes.T), self.depth(values))[2]
        first = classify.first_dead_layer(constant)
        return TrainState(params, self.optimizer(values).init(params), jnp.array(True)), self.data(key, values), first

    def init_checks(self, state: TrainState, data: TrialData, values) -> dict:
        """At initialization: ``near_flat_at_init`` (the output flat on the test grid, as ``collapsed`` tests
        after training) and ``dead_on_train`` (``is_dead`` on the training set)."""
        y0 = forward_t(self.network, state.params, jnp.asarray(self.grid.T), self.depth(values))
        spread = jnp.max(y0, axis=1) - jnp.min(y0, axis=1)
        return {"near_flat_at_init": jnp.all(spread <= self.static.collapse_rtol * self.target_std(values)),
                "dead_on_train": self.is_dead(state.params, data.xt, self.depth(values))}

    def _steps(self, state: TrainState, key, values, step0, length: int, batch_loss=None, batch_grad=None,
               saved=None) -> TrainState:
        """``length`` optimizer steps from global step ``step0`` (steps >= ``static.steps`` skipped). The
        minibatch ``idx`` (None = full batch) is trained with ``batch_loss(params, idx)`` (the loss,
        differentiated by ``jax.value_and_grad``) or ``batch_grad(params, idx, saved)`` -> ``(loss, grads,
        saved)``, whose buffers ``saved`` are carried from step to step."""
        st = self.static
        opt = self.optimizer(values)
        batch_key = rng.stream(key, rng.TAG_BATCH)
        if batch_grad is None:
            def batch_grad(params, idx, saved):
                return (*jax.value_and_grad(batch_loss)(params, idx), saved)

        def step(carry, t):
            params, opt_state, finite, saved = carry
            idx = None if st.batch_size is None else jax.random.randint(
                jax.random.fold_in(batch_key, t), (st.batch_size,), 0, self.n_train)
            value, grads, saved = batch_grad(params, idx, saved)
            if self.native_adam:
                params, opt_state = self._adam_native(grads, opt_state, params, values)
            else:
                updates, opt_state = opt.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
            return (params, opt_state, finite & jnp.isfinite(value), saved)

        def body(carry, i):
            t = step0 + i
            return jax.lax.cond(t < st.steps, step, lambda c, _: c, carry, t), None

        carry = (state.params, state.opt_state, state.finite, saved)
        return TrainState(*jax.lax.scan(body, carry, jnp.arange(length, dtype=jnp.int32))[0][:3])

    @property
    def native_adam(self) -> bool:
        """Whether the update runs in the native kernel's Adam (``native.adam_update``): plain ``adam``
        (constant schedule, no options) of a network whose hidden stack runs in the kernel. Only the active
        stacked layers are updated (those above a traced depth keep zero gradient and moments, which Adam
        leaves unchanged), where optax's update passes over the whole capacity."""
        st = self.static
        return (st.optimizer == "adam" and st.schedule == "constant" and not st.optimizer_options
                and native_spec(self.network) is not None)

    def _adam_native(self, grads, opt_state, params, values):
        """``optax.adam``'s update and ``apply_updates`` through ``native.adam_update``: ``(params, opt_state)``
        with ``opt_state``'s structure (``ScaleByAdamState``, ``EmptyState``) unchanged."""
        adam = opt_state[0]
        count = optax.safe_increment(adam.count)
        hyper = adam_hyper(values, count)
        depth = self.depth(values)
        n = active_stacked(self.network, depth) if depth is not None else None

        def leaf(path, p, g, m, v):
            stacked = any(getattr(k, "key", None) == "hidden" for k in path)
            rows = n if (stacked and n is not None) else (p.shape[0] if p.ndim else 1)
            return native.adam_update(p, g, m, v, rows, hyper)

        out = jax.tree_util.tree_map_with_path(leaf, params, grads, adam.mu, adam.nu)
        pick = lambda i: jax.tree.map(lambda t: t[i], out, is_leaf=lambda t: isinstance(t, tuple))  # noqa: E731
        return pick(0), (adam._replace(count=count, mu=pick(1), nu=pick(2)), *opt_state[1:])

    @property
    def fused_steps(self) -> bool:
        """Whether full steps run whole in the native kernel (``native.train_steps``: one call per block of
        steps instead of a dozen small XLA operations per step): ``native_adam``, the mean squared error
        (minibatches or the full batch), ReLU without residual blocks (any depth). The same arithmetic as the
        step-by-step path (summation orders aside); the minibatch indices are drawn as there
        (``fold_in(stream(key, TAG_BATCH), t)``)."""
        st = self.static
        net = self.network
        return (self.native_adam and st.loss == "mse"
                and net.activation == "relu" and not net.residual and native.fused_enabled()
                and threefry_partitionable())

    def _fused_steps(self, state: TrainState, xt, yt, key, values, step0, length: int, run=True) -> TrainState:
        """``length`` steps in ``native.train_steps`` from ``step0``; none where ``run`` (traced bool) is False
        (the state is returned unchanged)."""
        st = self.static
        batch_key = rng.stream(key, rng.TAG_BATCH)
        adam = state.opt_state[0]
        counts = optax.safe_increment(adam.count) + jnp.arange(length, dtype=jnp.int32)  # each step's count
        hyper = adam_hyper(values, counts)
        valid = jnp.where(run, jnp.clip(st.steps - step0, 0, length), 0).astype(jnp.int32)
        depth = self.depth(values)
        net = self.network
        n = active_stacked(net, depth)
        n = net.depth - 1 if n is None else n
        p, mu, nu = state.params, adam.mu, adam.nu
        stack = "hidden" in p  # (one hidden layer: no stacked layers, an empty leaf for the kernel)
        empty = jnp.zeros((0, net.width + 1, net.width), jnp.float32)
        flat = [(t[k]["affine"] if stack else empty) if k == "hidden" else t[k]
                for t in (p, mu, nu) for k in ("input", "hidden", "output")]
        out, finite = native.train_steps(flat, xt, yt, jax.random.key_data(batch_key), step0, st.batch_size,
                                         hyper, n, valid, state.finite, net.activation,
                                         float(net.negative_slope), bool(net.residual))

        def tree(i):
            t = {**p, "input": out[3 * i], "output": out[3 * i + 2]}
            if stack:
                t["hidden"] = {**p["hidden"], "affine": out[3 * i + 1]}
            return t

        count = jnp.where(valid > 0, counts[jnp.maximum(valid - 1, 0)], adam.count)
        opt_state = (adam._replace(count=count, mu=tree(1), nu=tree(2)), *state.opt_state[1:])
        return TrainState(tree(0), opt_state, finite)

    def full_steps(self, state: TrainState, data: TrialData, key, values, step0, length: int) -> TrainState:
        """``length`` full training steps from global step ``step0``."""
        depth = self.depth(values)
        xt, yt = self.train_set(data, values)

        def batch(idx):
            return (xt, yt) if idx is None else (xt[:, idx], yt[:, idx])

        if self.fused_steps:
            return self._fused_steps(state, xt, yt, key, values, step0, length)

        if not self.traced_depth:  # own depth: autodiff (the hidden stack's activations are scan outputs)
            return self._steps(state, key, values, step0, length,
                               batch_loss=lambda params, idx: self.loss(params, *batch(idx), depth))

        # traced depth: the capacity-sized activation buffers are carried from step to step, not re-allocated
        def batch_grad(params, idx, saved):
            return loss_and_grad_t(self.network, params, *batch(idx), self.loss_fn, depth, saved)

        points = self.n_train if self.static.batch_size is None else self.static.batch_size
        return self._steps(state, key, values, step0, length, batch_grad=batch_grad,
                           saved=saved_buffers(self.network, points))

    def full_window(self, state: TrainState, data: TrialData, key, values, step0, blocks: int, length: int,
                    stop: bool):
        """``blocks`` consecutive ``full_block``s of ``length`` steps from ``step0`` in one program (whole steps
        in the kernel: ``fused_steps``), the death check after each: ``(state, dead_at)``, ``dead_at`` the first
        block (0-based) after which the trial was found dead, -1 if none. With ``stop`` a trial found dead is
        not trained in the later blocks (its state stays as it was at the check, as the blocked driver's
        ``after_death="stop"`` leaves it) and its death check skips the stacked layers; the outcomes equal
        those of ``blocks`` calls of ``full_block``."""
        xt, yt = self.train_set(data, values)
        depth = self.depth(values)
        full = jnp.int32(self.network.depth) if depth is None else depth

        def body(carry, j):
            state, dead_at = carry
            alive = (dead_at < 0) if stop else jnp.bool_(True)
            state = self._fused_steps(state, xt, yt, key, values, step0 + j * length, length, run=alive)
            dead = alive & self.is_dead(state.params, xt, jnp.where(alive, full, 1))
            return (state, jnp.where((dead_at < 0) & dead, j, dead_at)), None

        (state, dead_at), _ = jax.lax.scan(body, (state, jnp.int32(-1)), jnp.arange(blocks, dtype=jnp.int32))
        return state, dead_at

    def full_block(self, state: TrainState, data: TrialData, key, values, step0, length: int):
        """``full_steps``, then ``dead_on_train`` (bool): the death check on the whole training set."""
        state = self.full_steps(state, data, key, values, step0, length)
        return state, self.is_dead(state.params, self.train_set(data, values)[0], self.depth(values))

    def cheap_block(self, state: TrainState, data: TrialData, key, values, step0, length: int) -> TrainState:
        """``length`` steps of a trial dead on its training set (see the module docstring)."""
        x0, depth = data.xt[:, :1], self.depth(values)

        def batch_loss(params, idx):
            yb = data.yt if idx is None else data.yt[:, idx]
            c = forward_t(self.network, params, x0, depth)  # (d_out, 1): the output at every training point
            return self.loss_fn(jnp.broadcast_to(c, yb.shape), yb)

        return self._steps(state, key, values, step0, length, batch_loss=batch_loss)

    def finish(self, state: TrainState, data: TrialData, values) -> dict:
        """Classification after training (see ``classify.classify_trained``) plus ``final_loss`` (on the whole
        training set) and ``dead_on_train`` (the death check after the last step)."""
        depth = self.depth(values)
        final_loss = self.loss(state.params, data.xt, data.yt, depth)
        shift, factor = self.transform(values)
        target_grid = (jnp.asarray(self.target_grid) - shift) * factor
        y, dead, constant = deadness_t(self.network, state.params, jnp.asarray(self.grid.T), depth)
        out = classify.classify_trained(y.T, dead, constant, state.params, target_grid, self.target_std(values),
                                        self.static.collapse_rtol, state.finite & jnp.isfinite(final_loss))
        out["final_loss"] = final_loss.astype(jnp.float32)
        out["dead_on_train"] = self.is_dead(state.params, data.xt, depth)
        out["test_accuracy"] = jnp.float32(jnp.nan)  # regression
        return out

    def trained(self, key, values) -> tuple[TrainState, TrialData, dict]:
        """One whole trial, every step a full step, in one scan: ``(state, data, checks at initialization)``."""
        state, data, first = self.init(key, values)
        checks = {"first_dead_layer": first, **self.init_checks(state, data, values)}
        return self.full_steps(state, data, key, values, jnp.int32(0), self.static.steps), data, checks

    def train(self, key, values) -> dict:
        """One whole trial (``trained``) classified: the reference for the blocked driver. Returns the
        ``finish`` outcomes plus ``first_dead_layer``, ``near_flat_at_init`` and ``dead_on_train_at_init``."""
        state, data, checks = self.trained(key, values)
        out = self.finish(state, data, values)
        out["first_dead_layer"] = checks["first_dead_layer"]
        out["near_flat_at_init"] = checks["near_flat_at_init"]
        out["dead_on_train_at_init"] = checks["dead_on_train"]
        return out
