"""Training configuration: ``TrainConfig`` (how to train), ``TrainStatic`` (its shape part) and ``TrainCell``.

Depth convention: ``NetworkConfig.depth`` counts hidden layers L_h; the papers' layers = depth + 1.

``TrainConfig`` fields are also the keys of a sweep's ``[train]`` TOML table. They split in two:

* **static** (fix the compiled program, see ``TrainConfig.static_part``): target, loss, optimizer kind,
  schedule, steps, batch_size, n_train, whether targets are rescaled / normalized, half_width, test_points,
  collapse_rtol;
* **traced values** (``TrainConfig.values``): lr, momentum, beta1, beta2, target_scale and the float
  ``optimizer_options``. Cells that differ only in these share one compilation.

``loss`` and ``optimizer`` are names from the registries ``losses.LOSSES`` and ``optimizers.OPTIMIZERS``
(every optax alias by name) or Python callables (see ``collapse_mc.registry``).

Defaults (Adam, lr 1e-3, batch 64, n_train 3000, 5000 steps) were chosen so that networks that do not
collapse fit the target well (see the project README for the evidence).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..config import (MAX_POINTS, MAX_STEPS, ConfigError, Cost, InitConfig, NetworkConfig, DEFAULT_HALF_WIDTH,
                      _finite, _is_int, cell_id, check_cost, check_int, to_dict)
from . import optimizers as _opt
from .losses import CLASSIFICATION_LOSSES, LOSSES as LOSS_REGISTRY
from .targets import TARGET_NAMES, Target, get_target, target_name

LOSSES = LOSS_REGISTRY.names()
OPTIMIZERS = _opt.OPTIMIZERS.names()
SCHEDULES = ("constant", "cosine")
VALUE_FIELDS = ("lr", "momentum", "beta1", "beta2", "target_scale")

DEFAULT_STEPS = 5000
DEFAULT_MOMENTUM, DEFAULT_BETA1, DEFAULT_BETA2 = 0.0, 0.9, 0.999
# the value settings each optimizer reads (a value given to an optimizer that ignores it is refused: it would
# change the cell's identity, and so its random stream, without changing how it trains); any other optimizer
# reads lr, and its own settings come in optimizer_options
OPTIMIZER_VALUES = _opt.BUILTIN_VALUES
OPTION_TYPES = (bool, int, float, str)


def _normalize_options(options) -> tuple:
    """``optimizer_options`` (a dict or pairs) as sorted ``(name, value)`` pairs; ints stay ints."""
    if isinstance(options, dict):
        options = tuple(options.items())
    _require(isinstance(options, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2
                                                      and isinstance(p[0], str) for p in options),
             "optimizer_options must be a dict {name: value}")
    out = []
    for k, v in options:
        _require(isinstance(v, OPTION_TYPES), f"optimizer option {k} must be a number, true/false or a string, "
                                              f"got {v!r}")
        _require(not isinstance(v, float) or _finite(v), f"optimizer option {k} must be finite, got {v!r}")
        out.append((k, v))
    names = [k for k, _ in out]
    _require(len(set(names)) == len(names), "optimizer_options: an option is given twice")
    return tuple(sorted(out))


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class TrainStatic:
    """The shape part of a ``TrainConfig``: everything that fixes the compiled program."""

    target: "str | Target"
    loss: Any                    # a registered name or a callable
    optimizer: Any               # a registered name or a factory callable
    schedule: str
    steps: int
    batch_size: int | None      # None = full batch
    n_train: int
    scaled: bool                 # target_scale is not None
    normalize_target: bool
    half_width: float
    test_points: int
    collapse_rtol: float
    optimizer_options: tuple = ()  # (name, value) pairs, float values replaced by optimizers.TRACED


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How every trial of a cell is trained and classified.

    ``target``: abs | xsin5x | step | f4, or a ``targets.Target``. ``loss``: mse | l1 | softmax_cross_entropy
    (classification data), or a callable ``(pred, target) -> scalar``. ``optimizer``: adam (lr, beta1, beta2)
    | sgd (heavy-ball ``momentum``) | nesterov (Nesterov ``momentum``) | rmsprop (decay = ``beta2``,
    ``momentum``) | any other optax alias by name (``adamw``, ``lion``, ...), or a callable
    ``(learning_rate, **options) -> optax.GradientTransformation``. ``optimizer_options``: the optimizer's
    other keyword arguments (``{"weight_decay": 1e-4}``; floats are traced). ``schedule``: constant | cosine
    (lr * (1 + cos(pi t / steps)) / 2).
    ``batch_size``: minibatch size, drawn with replacement every step; 0, None or ``n_train`` = full batch.
    ``n_train``: training points drawn uniformly on [-a, a]^d_in independently for every trial (a =
    ``half_width``). ``target_scale``: None keeps the natural scale; else targets are multiplied so that their
    population standard deviation is ``target_scale``. ``normalize_target``: subtract the population mean and
    divide by the population standard deviation (then times ``target_scale`` if given). ``test_points``: the
    size of the dense test grid (see ``targets.dense_grid``). ``collapse_rtol``: a trained network is collapsed
    when, for every output, (max - min) of its output over the test grid is <= ``collapse_rtol`` times the
    (scaled) target's population standard deviation.
    """

    target: "str | Target" = "abs"
    loss: str = "mse"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = DEFAULT_MOMENTUM
    beta1: float = DEFAULT_BETA1
    beta2: float = DEFAULT_BETA2
    steps: int = DEFAULT_STEPS
    batch_size: int | None = 64
    n_train: int = 3000
    target_scale: float | None = None
    normalize_target: bool = False
    schedule: str = "constant"
    half_width: float = DEFAULT_HALF_WIDTH
    test_points: int = 1025
    collapse_rtol: float = 1e-2
    optimizer_options: Any = ()

    def __post_init__(self):
        _require(isinstance(self.target, Target) or self.target in TARGET_NAMES,
                 f"unknown target {self.target!r}; choose one of {', '.join(TARGET_NAMES)}")
        LOSS_REGISTRY.check(self.loss)
        _opt.OPTIMIZERS.check(self.optimizer)
        object.__setattr__(self, "optimizer_options", _normalize_options(self.optimizer_options))
        accepted = _opt.option_names(self.optimizer)
        for k, _ in self.optimizer_options:
            _require(k not in ("learning_rate", "lr"), "the learning rate is lr, not an optimizer option")
            _require(accepted is None or k in accepted,
                     f"{k} is not an option of optimizer {_opt.OPTIMIZERS.label(self.optimizer)!r}"
                     + (f" (its options: {', '.join(accepted)})" if accepted else " (it takes none)")
                     + (f"; use {', '.join(OPTIMIZER_VALUES[self.optimizer][1:])}"
                        if self.optimizer in OPTIMIZER_VALUES and k in _opt.BUILTIN_KEYWORDS[self.optimizer] else ""))
        _require(self.schedule in SCHEDULES,
                 f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        _require(_finite(self.lr) and 0 <= self.lr <= 1e6,
                 f"learning rate must be a finite number in [0, 1e6], got {self.lr!r}")
        _require(_finite(self.momentum) and 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}")
        _require(_finite(self.beta1) and 0 <= self.beta1 < 1, f"beta1 must be in [0, 1), got {self.beta1!r}")
        _require(_finite(self.beta2) and 0 <= self.beta2 < 1, f"beta2 must be in [0, 1), got {self.beta2!r}")
        used = OPTIMIZER_VALUES.get(self.optimizer, ("lr",)) if isinstance(self.optimizer, str) else ("lr",)
        for name, default in (("momentum", DEFAULT_MOMENTUM), ("beta1", DEFAULT_BETA1), ("beta2", DEFAULT_BETA2)):
            _require(name in used or getattr(self, name) == default,
                     f"{name} is not used by optimizer {self.optimizer!r} (it reads {', '.join(used)}); leave it at "
                     f"its default {default}")
        check_int("steps", self.steps, 1, MAX_STEPS)
        check_int("n_train", self.n_train, 1, MAX_POINTS)
        _require(self.batch_size is None or (_is_int(self.batch_size) and self.batch_size >= 0),
                 f"batch size must be an integer >= 0 (0 = full batch), got {self.batch_size!r}")
        _require(self.batch_size is None or self.batch_size <= self.n_train,
                 f"batch size {self.batch_size} is larger than n_train {self.n_train}")
        _require(self.target_scale is None or (_finite(self.target_scale) and 0 < self.target_scale <= 1e6),
                 f"target scale must be a finite number in (0, 1e6] (or None), got {self.target_scale!r}")
        _require(isinstance(self.normalize_target, bool), "normalize_target must be true or false")
        _require(_finite(self.half_width) and 0 < self.half_width <= 1e6,
                 f"domain half-width must be a number in (0, 1e6], got {self.half_width!r}")
        check_int("test_points", self.test_points, 2, MAX_POINTS)
        _require(_finite(self.collapse_rtol) and 0 < self.collapse_rtol <= 1e6,
                 f"collapse_rtol must be a number in (0, 1e6], got {self.collapse_rtol!r}")

    @property
    def full_batch(self) -> bool:
        return not self.batch_size or self.batch_size >= self.n_train

    @property
    def effective_batch(self) -> int:
        """Points per step (n_train for full batch)."""
        return self.n_train if self.full_batch else int(self.batch_size)

    def static_part(self) -> TrainStatic:
        """The settings that fix the compiled program (cache compiled functions on this)."""
        return TrainStatic(
            target=self.target, loss=self.loss, optimizer=self.optimizer, schedule=self.schedule,
            steps=self.steps, batch_size=None if self.full_batch else int(self.batch_size), n_train=self.n_train,
            scaled=self.target_scale is not None, normalize_target=self.normalize_target,
            half_width=float(self.half_width), test_points=self.test_points, collapse_rtol=float(self.collapse_rtol),
            optimizer_options=_opt.static_options(self.optimizer_options))

    def values(self) -> dict[str, float]:
        """The traced settings as floats (``target_scale`` is 1.0 when None; ``static_part().scaled`` says;
        float optimizer options as ``opt:<name>``)."""
        return {"lr": float(self.lr), "momentum": float(self.momentum), "beta1": float(self.beta1),
                "beta2": float(self.beta2),
                "target_scale": 1.0 if self.target_scale is None else float(self.target_scale),
                **_opt.option_values(self.optimizer_options)}

    def identity(self) -> dict:
        """JSON-able settings (the target by name; batch_size 0 -> None; a callable loss or optimizer as
        ``custom:<name>#<hash>``; ``optimizer_options`` only when given, so older cells keep their ids)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["target"] = target_name(self.target)
        d["loss"] = LOSS_REGISTRY.cell_value(self.loss)
        d["optimizer"] = _opt.OPTIMIZERS.cell_value(self.optimizer)
        if self.optimizer_options:
            d["optimizer_options"] = dict(self.optimizer_options)
        else:
            del d["optimizer_options"]
        d["batch_size"] = None if self.full_batch else int(self.batch_size)
        return d


DATA_FIXED = ("target", "target_scale", "normalize_target", "half_width", "test_points", "n_train")  # uniform domain only


@dataclasses.dataclass(frozen=True)
class TrainCell:
    """One cell of a training study: a network family, its initialization and how it is trained.

    ``network.depth`` counts hidden layers (the papers' layers = depth + 1). The target's input and output
    dimensions must match ``network.d_in`` / ``network.d_out``. ``model``: a user's model, a callable
    ``(network, init) -> flax.linen.Module`` (see ``nets.user_model``); None = the built-in MLP. ``data``: a
    ``training.data.Dataset`` to train on instead of the uniform domain and its target (its points replace
    ``n_train``; the uniform domain's settings must stay at their defaults). Either one makes the cell train on
    the generic model path (``training.generic``) and enters its identity (model: name and source hash;
    data: content hash).
    """

    network: NetworkConfig
    init: InitConfig = InitConfig()
    train: TrainConfig = TrainConfig()
    model: Any = None
    data: Any = None

    def __post_init__(self):
        _require(isinstance(self.network, NetworkConfig) and isinstance(self.init, InitConfig)
                 and isinstance(self.train, TrainConfig),
                 "TrainCell(network: NetworkConfig, init: InitConfig, train: TrainConfig)")
        _require(self.model is None or callable(self.model),
                 "model must be a callable (network, init) -> flax.linen.Module (e.g. a module class), or None")
        if self.data is None:
            t = get_target(self.train.target)
            _require(t.d_in == self.network.d_in and t.d_out == self.network.d_out,
                     f"target {t.name!r} maps R^{t.d_in} -> R^{t.d_out} but the network has d_in={self.network.d_in}, "
                     f"d_out={self.network.d_out}")
            _require(self.train.loss not in CLASSIFICATION_LOSSES,
                     f"loss {self.train.loss!r} needs classification data (TrainCell(data=Dataset(...)))")
        else:
            self._check_data()
        check_cost(f"width {self.network.width}, depth {self.network.depth}", self.cost())

    def _check_data(self) -> None:
        from .data import Dataset
        d, t = self.data, self.train
        _require(isinstance(d, Dataset), "data must be a collapse_mc.training.data.Dataset")
        _require(d.d_in == self.network.d_in and d.d_out == self.network.d_out,
                 f"the data set has {d.d_in} features and {d.d_out} {'classes' if d.task == 'classification' else 'outputs'}"
                 f" but the network has d_in={self.network.d_in}, d_out={self.network.d_out}")
        default = TrainConfig()
        changed = [k for k in DATA_FIXED if getattr(t, k) != getattr(default, k)]
        _require(not changed, f"{', '.join(changed)} describe the uniform domain and would be ignored with a data set; "
                              f"leave them at their defaults")
        if t.full_batch:
            _require(not t.batch_size or t.batch_size >= d.n_train,
                     f"batch size {t.batch_size} >= n_train {t.n_train} means full batch; with a data set give 0 for "
                     f"full batch or a batch size below {t.n_train}")
        else:
            _require(t.batch_size <= d.n_train,
                     f"batch size {t.batch_size} is larger than the data set's {d.n_train} training points")
        if d.task == "classification":
            _require(t.loss in CLASSIFICATION_LOSSES or callable(t.loss),
                     f"classification data needs loss = {' or '.join(CLASSIFICATION_LOSSES)} (got {t.loss!r})")
        else:
            _require(t.loss not in CLASSIFICATION_LOSSES, f"loss {t.loss!r} needs classification data (integer labels)")

    @property
    def n_train(self) -> int:
        """Training points: the data set's, or ``train.n_train`` on the uniform domain."""
        return self.train.n_train if self.data is None else self.data.n_train

    def cost(self) -> Cost:
        """Estimated memory and operations of training one network of this cell (see ``config.check_cost``;
        for a user's model, the built-in MLP of the same width and depth stands in)."""
        n, t = self.network, self.train
        b = t.effective_batch if self.data is None or not t.full_batch else self.data.n_train
        n_test = t.test_points if self.data is None else self.data.n_test
        params = (n.d_in + 1) * n.width + (n.depth - 1) * (n.width + 1) * n.width + (n.width + 1) * n.d_out
        device = 4.0 * (4 * n.depth * n.width * b + 8 * params + 3 * (n.d_in + n.d_out) * self.n_train
                        + 4 * n_test * (n.width + n.d_out))
        ops = 6.0 * params * (t.steps * b + n_test + self.n_train)
        return Cost(device, 8.0 * n.depth + 4.0 * n.d_out + 64, ops)

    def identity(self) -> dict:
        """Every setting that determines the outcomes (hashed into the cell's random stream)."""
        d = {"kind": "train", "network": to_dict(self.network), "init": to_dict(self.init),
             "train": self.train.identity()}
        if self.model is not None:
            from ..nets.user_model import model_identity
            d["model"] = model_identity(self.model)
        if self.data is not None:
            d["data"] = self.data.identity()
        return d

    @property
    def cell(self) -> int:
        return cell_id(self.identity())
