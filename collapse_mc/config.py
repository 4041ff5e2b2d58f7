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
DEFAULT_NEGATIVE_SLOPE = 0.01

# ---- input limits, shared by the command line and sweep specs (listed in the README, "Input limits").
MAX_TRIALS = 2 ** 31 - 1        # trial indices are int32 inside the compiled programs (and keys fold them as uint32)
MAX_SEED = 2 ** 32 - 1          # the root seed is a uint32 word of every key
MAX_WIDTH = 65535               # dead-neuron counts per layer are stored as uint16
MAX_DEPTH = 1_000_000           # hidden layers
MAX_DIM = 1024                  # d_in, d_out
MAX_POINTS = 1 << 24            # n_train, test_points, grid_points, sample_points (about 16.8 million)
MAX_STEPS = 100_000_000         # training steps (the step counter is int32)
MAX_CELLS = 100_000             # cells of one sweep or one command (e.g. widths x depths of born-dead)
MAX_BLOCKS_PER_CELL = 1_000_000  # stored blocks of one cell (trials / block_size): one row and transaction each
MAX_TRIAL_BYTES = 2 << 30       # memory one trial (one network) may need inside a compiled chunk: 2 GiB
MAX_HOST_BYTES = 16 << 30       # per-trial outcomes of one block (or one CLI run) held in host memory: 16 GiB
MAX_CHUNK_BYTES = 32 << 30      # a chunk_size given by the user: chunk x the memory of one network: 32 GiB
MAX_WORK = 1e17                 # floating-point operations of one run (about a day of a whole GPU)


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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_int(name: str, value, minimum: int, maximum: int) -> int:
    """``value`` as an int in ``[minimum, maximum]`` or ``ConfigError`` naming ``name`` (one line)."""
    _require(_is_int(value), f"{name} must be an integer, got {value!r}")
    _require(minimum <= value <= maximum, f"{name} must be in {minimum:,} .. {maximum:,}, got {value:,}")
    return value


def check_trial_range(start: int, stop: int) -> None:
    """Trial indices ``[start, stop)`` must lie in ``[0, MAX_TRIALS]`` (they are int32 in the programs)."""
    _require(_is_int(start) and _is_int(stop) and 0 <= start <= stop <= MAX_TRIALS,
             f"trial indices must satisfy 0 <= start <= stop <= {MAX_TRIALS:,} (2^31 - 1), got [{start}, {stop})")


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
    negative_slope: float = DEFAULT_NEGATIVE_SLOPE
    residual: bool = False

    def __post_init__(self):
        check_int("width", self.width, 1, MAX_WIDTH)
        check_int("depth (hidden layers)", self.depth, 1, MAX_DEPTH)
        check_int("d_in", self.d_in, 1, MAX_DIM)
        check_int("d_out", self.d_out, 1, MAX_DIM)
        _require(self.activation in ACTIVATIONS,
                 f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        _require(_finite(self.negative_slope), f"negative slope must be finite, got {self.negative_slope!r}")
        _require(self.activation == "leaky_relu" or self.negative_slope == DEFAULT_NEGATIVE_SLOPE,
                 f"negative slope applies to leaky_relu only (activation is {self.activation})")
        _require(isinstance(self.residual, bool), f"residual must be true or false, got {self.residual!r}")

    @property
    def layers(self) -> int:
        """The papers' layer count (hidden layers + the output layer)."""
        return layers_from_depth(self.depth)


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """How parameters are drawn.

    ``weights``: one of WEIGHT_INITS for the hidden layers, or a callable in the ``jax.nn.initializers``
    style ``init(key, (fan_in, fan_out), dtype)`` (recorded by name and source hash; its bias comes from
    ``bias``). ``bias``: zeros | constant | normal, with
    ``bias_value`` the constant or the normal's standard deviation sigma_b. ``output_weights``: the output
    layer's weight init (default: same as ``weights``, except He normal when ``weights='rai'``).
    ``rai_layers``: for RAI, which layers use it: ``hidden`` (every hidden layer, the default), ``all``
    (the output layer too) or ``hidden_except_first``. RAI draws its own bias wherever it is used.
    """

    weights: Any = "he_normal"
    bias: str = "zeros"
    bias_value: float = 0.0
    output_weights: Any = None
    rai_layers: str = "hidden"

    def __post_init__(self):
        from .nets.initializers import WEIGHT_INIT_REGISTRY  # lazy: the nets package imports this module
        WEIGHT_INIT_REGISTRY.check(self.weights)
        _require(self.bias in BIAS_INITS, f"unknown bias init {self.bias!r}; choose one of {', '.join(BIAS_INITS)}")
        if self.output_weights is not None:
            WEIGHT_INIT_REGISTRY.check(self.output_weights, "output initializer")
        _require(self.rai_layers in RAI_LAYERS,
                 f"unknown rai_layers {self.rai_layers!r}; choose one of {', '.join(RAI_LAYERS)}")
        _require(_finite(self.bias_value), f"bias value must be finite, got {self.bias_value!r}")
        _require(not (self.bias == "normal" and self.bias_value < 0), "bias standard deviation must be >= 0")
        _require(self.bias != "zeros" or self.bias_value == 0,
                 "a bias value needs bias 'constant' or 'normal' (bias is 'zeros')")
        _require(self.weights == "rai" or self.rai_layers == "hidden",
                 f"rai_layers applies to the rai initializer only (initializer is {self.weights})")
        _require(not (self.weights == "rai" and self.rai_layers == "all" and self.bias != "zeros"),
                 "with rai on every layer (rai_layers 'all') RAI draws every bias: the bias setting would be "
                 "ignored; leave it at 'zeros'")

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
        _require(_finite(self.half_width) and 0 < self.half_width <= 1e6,
                 f"domain half-width must be a number in (0, 1e6], got {self.half_width!r}")
        check_int("grid_points", self.grid_points, 2, MAX_POINTS)
        check_int("sample_points", self.sample_points, 1, MAX_POINTS)
        if self.points is not None:
            _require(1 <= len(self.points) <= MAX_POINTS, f"points: need 1 .. {MAX_POINTS:,} probe points")
            try:
                pts = tuple(tuple(float(v) for v in p) for p in self.points)
            except (TypeError, ValueError):
                raise ConfigError("points: each probe point must be a list of numbers") from None
            _require(all(math.isfinite(v) for p in pts for v in p), "points: coordinates must be finite")
            _require(len({len(p) for p in pts}) == 1, "points: every probe point needs the same dimension")
            object.__setattr__(self, "points", pts)


def probe_count(network: NetworkConfig, init: InitConfig, probe: ProbeConfig) -> int:
    """An upper bound on the number of probe points of a born-dead test (see ``deadness.probes``)."""
    if probe.points is not None:
        return len(probe.points)
    if network.d_in == 1 and init.zero_bias and network.activation in ("relu", "leaky_relu"):
        return 2   # the exact test at x = +1 and x = -1
    return probe.grid_points if network.d_in == 1 else probe.sample_points


def check_born_dead(network: NetworkConfig, init: InitConfig, probe: ProbeConfig) -> None:
    """Consistency of a born-dead setting beyond each dataclass: probe points match ``d_in``, and no setting
    that cannot change a born-dead outcome (``ConfigError``, one line)."""
    if probe.points is not None:
        dim = len(probe.points[0])
        _require(dim == network.d_in, f"probe points have dimension {dim} but the network has d_in={network.d_in}")
    _require(not (init.weights == "rai" and init.rai_layers != "hidden_except_first" and init.bias != "zeros"),
             "with rai on every hidden layer RAI draws the hidden biases: the bias setting would only reach "
             "the output layer, which never changes whether a network is born dead; leave it at 'zeros'")
    _require(init.output_weights is None,
             "output_weights never changes whether a network is born dead (only hidden layers can die)")


@dataclasses.dataclass(frozen=True)
class Cost:
    """Estimated resources of one trial (one network): ``device_bytes`` inside a compiled chunk, ``host_bytes``
    of its outcomes kept in host memory, ``ops`` floating-point operations."""

    device_bytes: float
    host_bytes: float
    ops: float


def born_dead_cost(network: NetworkConfig, init: InitConfig, probe: ProbeConfig, method: str) -> Cost:
    """``Cost`` of one born-dead trial with ``method`` 'gaussian' (the two-input kernel) or 'dense'."""
    n, d, p = network.width, network.depth, probe_count(network, init, probe)
    host = 12.0 * d + 16            # dead-neuron counts (int32) and their float64 fractions per hidden layer
    if method == "gaussian":
        return Cost(4.0 * (d * n + 16 * n + 16), host, 40.0 * d * n)
    params = network.d_in * n + d * (n + 1) * n
    return Cost(4.0 * (3 * p * n + params + p * network.d_in), host, 2.0 * p * (params + 2 * d * n))


def _bytes(b: float) -> str:
    for unit, size in (("TiB", 2.0 ** 40), ("GiB", 2.0 ** 30), ("MiB", 2.0 ** 20)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{b:,.0f} bytes"


def check_cost(what: str, cost: Cost, trials: int | None = None, held: int | None = None,
               chunk: int | None = None) -> None:
    """Refuse (``ConfigError`` with the estimate) a setting whose one trial needs more than ``MAX_TRIAL_BYTES``
    of memory, whose ``trials`` trials exceed ``MAX_WORK`` operations, whose ``held`` trials' outcomes exceed
    ``MAX_HOST_BYTES``, or whose ``chunk`` (a chunk size given by the user) exceeds ``MAX_CHUNK_BYTES``.
    ``what`` names the setting in the message."""
    _require(cost.device_bytes <= MAX_TRIAL_BYTES,
             f"{what}: one network needs about {_bytes(cost.device_bytes)} of memory (limit "
             f"{_bytes(MAX_TRIAL_BYTES)} per network); lower the width, depth or number of points")
    if chunk is not None:
        _require(chunk * cost.device_bytes <= MAX_CHUNK_BYTES,
                 f"{what}: a chunk of {chunk:,} networks needs about {_bytes(chunk * cost.device_bytes)} of memory "
                 f"(limit {_bytes(MAX_CHUNK_BYTES)}); lower the chunk size")
    if trials is not None:
        ops = trials * cost.ops
        _require(ops <= MAX_WORK,
                 f"{what}: {trials:,} networks need about {ops:.1e} floating-point operations (limit "
                 f"{MAX_WORK:.0e}, roughly a day of a whole GPU); "
                 "lower the trials, steps, width or depth")
    if held is not None:
        _require(held * cost.host_bytes <= MAX_HOST_BYTES,
                 f"{what}: the outcomes of {held:,} networks held at once need about "
                 f"{_bytes(held * cost.host_bytes)} (limit {_bytes(MAX_HOST_BYTES)}); lower the trials, block "
                 "size or depth")


def to_dict(obj: Any) -> dict:
    """A dataclass (possibly nested) as a plain dict; a callable setting (a user's initializer) becomes
    ``custom:<qualified name>#<source hash>`` so that the dict is JSON-able and reproducible."""
    from .registry import callable_value
    return {k: callable_value(v) if callable(v) and not isinstance(v, (str, type)) else v
            for k, v in dataclasses.asdict(obj).items()}


def config_hash(payload: dict) -> str:
    """Stable SHA-256 hex digest of a JSON-able configuration."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cell_id(payload: dict) -> int:
    """The 31-bit integer that a cell's configuration contributes to every trial key."""
    return int(config_hash(payload)[:8], 16) & 0x7FFFFFFF
