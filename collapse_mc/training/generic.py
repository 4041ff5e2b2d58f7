"""The generic training program: any Flax (linen) module, on the uniform domain or on a user's ``Dataset``.

``ModelProgram`` has ``TrainProgram``'s phases (init, init_checks, full_block, finish), so the same driver
(``trainer.TrainMap``: vmapped, chunked, sharded, blocked) trains it and the same rules classify it. What
differs from the built-in fast path:

* the model is ``model(network, init)``, a ``flax.linen.Module`` mapping points ``(P, d_in) -> (P, d_out)``
  that sows its hidden layers' outputs as ``nets.observe`` asks (the built-in ``nets.MLP`` does); the model
  is applied with ``module.apply`` and differentiated by autodiff, points-major;
* deadness is ``observe.hidden_report`` of the sown layers (a layer dead on the training inputs: constant
  there with every neuron's output 0; born dead: some layer constant on the probe set);
* no dead network is retired to a cheap path: for an arbitrary module a dead layer need not stop the
  gradient below it (a skip connection carries it around), so every trial runs full steps to the end (death
  checks are still made and reported as ``died_at_step``);
* the depth is not traced (``depth_capacity`` is refused).

Losses take points-major ``(B, d_out)`` predictions and targets (classification: ``(B, C)`` logits and
``(B,)`` integer labels). On the uniform domain the training set, minibatches, probe set and test grid are
exactly those of the fast path, so the built-in MLP trained here gives the fast path's outcomes (up to float
rounding in the sums; tested trial for trial).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from .. import rng
from ..config import ConfigError, InitConfig, NetworkConfig
from ..nets.mlp import MLP
from ..nets.observe import HiddenReport, observed_apply
from . import classify
from .config import TrainStatic
from .data import Dataset
from .losses import get_loss
from .program import TrainProgram, TrainState, TrialData


def _first_constant_layer(report: HiddenReport) -> jax.Array:
    if report.constant.shape[0] == 0:
        return jnp.int32(0)
    return classify.first_dead_layer(report.constant)


class ModelProgram(TrainProgram):
    """Pure per-trial functions of a user's model (see the module docstring).

    ``model``: a callable ``(network, init) -> flax.linen.Module`` (a module class with fields ``network``
    and ``init_config``, like ``nets.MLP``, is one); None = ``nets.MLP``. ``dataset``: a ``Dataset`` or None
    (the uniform domain and target of ``static``).
    """

    has_cheap_path = False
    fused_steps = False  # any model: steps in XLA (the kernel's whole steps know the built-in MLP only)

    def __init__(self, network: NetworkConfig, init: InitConfig, static: TrainStatic, model=None,
                 dataset: Dataset | None = None, optimizer: optax.GradientTransformation | None = None,
                 traced_depth: bool = False):
        if traced_depth:
            raise ConfigError("the generic model path does not trace the depth (depth_capacity applies to the "
                              "built-in MLP only)")
        self.network, self.init_config, self.static = network, init, static
        self.traced_depth = False
        self.model = (model or MLP)(network, init)
        self.dataset = dataset
        self.loss_fn = get_loss(static.loss)
        self.custom_optimizer = optimizer
        self.classification = dataset is not None and dataset.task == "classification"
        if dataset is None:
            self.n_train = static.n_train
            self._setup_domain()
        else:
            self.n_train = dataset.n_train

    # -- data ------------------------------------------------------------------------------------------------
    def data(self, key, values) -> TrialData:
        if self.dataset is None:
            return super().data(key, values)
        return TrialData(jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.float32))  # shared: in ``values``

    def train_set(self, data: TrialData, values):
        if self.dataset is None:
            return data.xt, data.yt
        return values["x_train"], values["y_train"]

    def probe_points(self, values) -> jax.Array:
        """Points-major inputs for the born-dead test: the probe set, or the training inputs."""
        return jnp.asarray(self.probes) if self.dataset is None else values["x_train"].T

    def test_set(self, values) -> tuple[jax.Array, jax.Array]:
        """Points-major test inputs ``(P, d_in)`` and targets (``(P, d_out)`` trained targets, or ``(P,)``
        labels)."""
        if self.dataset is None:
            shift, factor = self.transform(values)
            return jnp.asarray(self.grid), (jnp.asarray(self.target_grid) - shift) * factor
        if self.classification:
            return values["x_test"].T, values["y_test"][0]
        return values["x_test"].T, values["y_test"].T

    def target_std(self, values) -> jax.Array:
        if self.dataset is None:
            return super().target_std(values)
        return jnp.std(values["y_test"], axis=1)

    # -- the model -------------------------------------------------------------------------------------------
    def apply(self, params, xt: jax.Array) -> jax.Array:
        """The model on features-major ``xt (d_in, B)``: points-major ``(B, d_out)``."""
        return self.model.apply({"params": params}, xt.T)

    def loss(self, params, xt, yt, depth=None) -> jax.Array:
        pred = self.apply(params, xt)
        return self.loss_fn(pred, yt[0] if self.classification else yt.T)

    def is_dead(self, params, xt, depth=None) -> jax.Array:
        """Some sown layer constant on ``xt (d_in, P)`` with every neuron's output 0 there."""
        report = observed_apply(self.model, params, xt.T)[1]
        return jnp.any(report.constant & (report.dead == report.units))

    def _flat(self, y, values) -> jax.Array:
        if self.classification:
            pred = jnp.argmax(y, axis=-1)
            return jnp.all(pred == pred[0])
        spread = jnp.max(y, axis=0) - jnp.min(y, axis=0)
        return jnp.all(spread <= self.static.collapse_rtol * self.target_std(values))

    # -- the phases ------------------------------------------------------------------------------------------
    def init(self, key, values):
        params = self.model.init(rng.stream(key, rng.TAG_INIT), jnp.zeros((1, self.network.d_in)))["params"]
        first = _first_constant_layer(observed_apply(self.model, params, self.probe_points(values))[1])
        return TrainState(params, self.optimizer(values).init(params), jnp.array(True)), self.data(key, values), first

    def init_checks(self, state: TrainState, data: TrialData, values) -> dict:
        x_test = self.test_set(values)[0]
        return {"near_flat_at_init": self._flat(self.model.apply({"params": state.params}, x_test), values),
                "dead_on_train": self.is_dead(state.params, self.train_set(data, values)[0])}

    def cheap_block(self, *args, **kwargs):
        raise NotImplementedError("the generic model path has no cheap path for dead networks")

    def finish(self, state: TrainState, data: TrialData, values) -> dict:
        xt, yt = self.train_set(data, values)
        final_loss = self.loss(state.params, xt, yt)
        finite = state.finite & jnp.isfinite(final_loss)
        x_test, target = self.test_set(values)
        y, report = observed_apply(self.model, state.params, x_test)
        if self.classification:
            out = classify.classify_labels(y, report.dead, report.constant, state.params, target, report.units,
                                           finite)
        else:
            out = classify.classify_trained(y, report.dead, report.constant, state.params, target,
                                            self.target_std(values), self.static.collapse_rtol, finite,
                                            units=report.units)
            out["test_accuracy"] = jnp.float32(jnp.nan)
        out["final_loss"] = final_loss.astype(jnp.float32)
        out["dead_on_train"] = self.is_dead(state.params, xt)
        return out
