"""Frozen configuration dataclasses shared by every estimate.

Depth convention (used everywhere in collapse_mc):

* ``depth`` is the number of **hidden** layers L_h.
* ``layers`` is the papers' count, which includes the linear output layer: ``layers = depth + 1``.
  The papers' "10-layer network" is ``depth=9``.

Shape settings (``width``, ``depth``, ``d_in``, ``d_out``, activation, residual) are static: they fix the
compiled program. Value settings (learning rate, momentum, init and target scales) live in the training
configuration and are traced, so a sweep over them shares one compilation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "selu", "swish")
WEIGHT_INITS = ("he_normal", "he_uniform", "lecun_normal", "glorot_uniform", "orthogonal", "rai")
BIAS_INITS = ("zeros", "constant", "normal")
RAI_LAYERS = ("hidden", "all", "hidden_except_first")
GAUSSIAN_WEIGHT_INITS = ("he_normal", "lecun_normal")

DEFAULT_HALF_WIDTH = math.sqrt(3.0)


class ConfigError(ValueError):
    """A setting is invalid. The message is one line, fit to show a user."""


def depth_from_layers(layers: int) -> int:
    """The papers' layer count L (output layer included) -> hidden layers L_h = L - 1."""
    return int(layers) - 1


def layers_from_depth(depth: int) -> int:
    """Hidden layers L_h -> the papers' layer count L = L_h + 1."""
    return int(depth) + 1


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """A fully connected network: ``d_in -> [width] * depth -> d_out``.

    ``depth`` counts hidden layers (L_h); the papers' ``layers`` is ``depth + 1``.
    With ``residual=True`` hidden layers 2..depth are residual blocks ``h + act(h W + b)``.
    """

    width: int
    depth: int
    d_in: int = 1
    d_out: int = 1
    activation: str = "relu"
    negative_slope: float = 0.01
    residual: bool = False

    def __post_init__(self):
        _require(isinstance(self.width, int) and self.width >= 1, f"width must be an integer >= 1, got {self.width!r}")
        _require(isinstance(self.depth, int) and self.depth >= 1,
                 f"depth (hidden layers) must be an integer >= 1, got {self.depth!r}")
        _require(isinstance(self.d_in, int) and self.d_in >= 1, f"d_in must be an integer >= 1, got {self.d_in!r}")
        _require(isinstance(self.d_out, int) and self.d_out >= 1, f"d_out must be an integer >= 1, got {self.d_out!r}")
        _require(self.activation in ACTIVATIONS,
                 f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")

    @property
    def layers(self) -> int:
        """The papers' layer count (hidden layers + the output layer)."""
        return layers_from_depth(self.depth)


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """How parameters are drawn.

    ``weights``: one of WEIGHT_INITS for the hidden layers. ``bias``: zeros | constant | normal, with
    ``bias_value`` the constant or the normal's standard deviation sigma_b. ``output_weights``: the output
    layer's weight init (default: same as ``weights``, except He normal when ``weights='rai'``).
    ``rai_layers``: for RAI, which layers use it: ``hidden`` (every hidden layer, the default), ``all``
    (the output layer too) or ``hidden_except_first``. RAI draws its own bias wherever it is used.
    """

    weights: str = "he_normal"
    bias: str = "zeros"
    bias_value: float = 0.0
    output_weights: str | None = None
    rai_layers: str = "hidden"

    def __post_init__(self):
        _require(self.weights in WEIGHT_INITS,
                 f"unknown initializer {self.weights!r}; choose one of {', '.join(WEIGHT_INITS)}")
        _require(self.bias in BIAS_INITS, f"unknown bias init {self.bias!r}; choose one of {', '.join(BIAS_INITS)}")
        _require(self.output_weights is None or self.output_weights in WEIGHT_INITS,
                 f"unknown output initializer {self.output_weights!r}; choose one of {', '.join(WEIGHT_INITS)}")
        _require(self.rai_layers in RAI_LAYERS,
                 f"unknown rai_layers {self.rai_layers!r}; choose one of {', '.join(RAI_LAYERS)}")
        _require(math.isfinite(self.bias_value), "bias value must be finite")
        _require(not (self.bias == "normal" and self.bias_value < 0), "bias standard deviation must be >= 0")

    @property
    def zero_bias(self) -> bool:
        """True when every hidden layer's bias is exactly zero."""
        if self.weights == "rai":
            return False
        return self.bias == "zeros" or (self.bias in ("constant", "normal") and self.bias_value == 0.0)

    def layer_init_name(self, layer: str) -> str:
        """Weight init used by ``layer`` in {'first', 'hidden', 'output'}."""
        if layer == "output":
            if self.output_weights is not None:
                return self.output_weights
            if self.weights == "rai":
                return "rai" if self.rai_layers == "all" else "he_normal"
            return self.weights
        if self.weights == "rai" and layer == "first" and self.rai_layers == "hidden_except_first":
            return "he_normal"
        return self.weights


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Where deadness is tested: the domain [-a, a]^d_in and its probe points.

    The exact +-1 test is used when d_in = 1 and biases are zero (positive homogeneity makes it exact on any
    interval around 0). Otherwise the probes are a uniform grid of ``grid_points`` points when ``d_in = 1``,
    a grid of about ``sample_points`` points when ``d_in = 2``, and ``sample_points`` fixed uniform samples of
    the cube when ``d_in >= 3`` (see ``deadness.probes``). ``points``, when given, replaces all of this by an
    explicit probe set (a tuple of d_in-tuples); a single point gives the single-input death probability of
    SCIENCE.md section 3.
    """

    half_width: float = DEFAULT_HALF_WIDTH
    grid_points: int = 1025
    sample_points: int = 4096
    points: tuple | None = None

    def __post_init__(self):
        _require(math.isfinite(self.half_width) and self.half_width > 0,
                 f"domain half-width must be > 0, got {self.half_width!r}")
        _require(self.grid_points >= 2, "grid_points must be >= 2")
        _require(self.sample_points >= 1, "sample_points must be >= 1")
        if self.points is not None:
            _require(len(self.points) >= 1, "points: need at least one probe point")
            object.__setattr__(self, "points", tuple(tuple(float(v) for v in p) for p in self.points))


def to_dict(obj: Any) -> dict:
    """A dataclass (possibly nested) as a plain dict."""
    return dataclasses.asdict(obj)


def config_hash(payload: dict) -> str:
    """Stable SHA-256 hex digest of a JSON-able configuration."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cell_id(payload: dict) -> int:
    """The 31-bit integer that a cell's configuration contributes to every trial key."""
    return int(config_hash(payload)[:8], 16) & 0x7FFFFFFF
