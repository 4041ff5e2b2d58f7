"""Regression targets on the domain [-a, a]^d_in, their population statistics, and the test grid.

Built-in targets (CLI names):

* ``abs``     f(x) = |x|                                   (d_in 1, d_out 1)
* ``xsin5x``  f(x) = x sin(5x)                             (d_in 1, d_out 1)
* ``step``    f(x) = 1{x > 0} + 0.2 sin(5x)                (d_in 1, d_out 1)
* ``f4``      f(x1, x2) = (|x1 + x2|, |x1 - x2|)           (d_in 2, d_out 2)

Any JAX function can be used from Python: ``Target(name, fn, d_in, d_out)`` with ``fn`` mapping ``x (P, d_in)``
to ``(P, d_out)``. The ``name`` is what identifies the target in a cell's identity (and thus its random
stream), so give different functions different names.

Population statistics (``target_stats``) are the mean, median and standard deviation per output of f(x) for x
uniform on [-a, a]^d_in, computed (f evaluated in float32, statistics accumulated in float64) on a midpoint grid (2^20 points for d_in = 1, 1024^2 for d_in = 2,
2^20 uniform samples, numpy seed 0, for d_in >= 3). For ``step`` every value in [0.2, 0.8] is a median; the
grid median reported is one of them.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Target:
    """A target function ``fn: x (P, d_in) -> (P, d_out)`` (pure JAX), identified by ``name``."""

    name: str
    fn: Callable[[jax.Array], jax.Array] = dataclasses.field(compare=False, hash=False, repr=False)
    d_in: int = 1
    d_out: int = 1

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


def _abs(x):
    return jnp.abs(x)


def _xsin5x(x):
    return x * jnp.sin(5.0 * x)


def _step(x):
    return (x > 0).astype(x.dtype) + 0.2 * jnp.sin(5.0 * x)


def _f4(x):
    return jnp.stack([jnp.abs(x[..., 0] + x[..., 1]), jnp.abs(x[..., 0] - x[..., 1])], axis=-1)


BUILTIN: dict[str, Target] = {
    "abs": Target("abs", _abs, 1, 1),
    "xsin5x": Target("xsin5x", _xsin5x, 1, 1),
    "step": Target("step", _step, 1, 1),
    "f4": Target("f4", _f4, 2, 2),
}
TARGET_NAMES = tuple(BUILTIN)


def get_target(target: "str | Target") -> Target:
    """A built-in target by name, or a ``Target`` as is. Unknown names raise ``KeyError``."""
    if isinstance(target, Target):
        return target
    return BUILTIN[target]


def target_name(target: "str | Target") -> str:
    return target.name if isinstance(target, Target) else str(target)


@dataclasses.dataclass(frozen=True)
class TargetStats:
    """Population statistics per output, each a tuple of length d_out (natural scale, x ~ U[-a, a]^d_in)."""

    mean: tuple[float, ...]
    median: tuple[float, ...]
    std: tuple[float, ...]
    median_low: tuple[float, ...] = ()   # every value in [median_low, median_high] is a median (L1 optimum);
    median_high: tuple[float, ...] = ()  # the interval is wide when the target's distribution has a gap

    @property
    def var(self) -> tuple[float, ...]:
        return tuple(s * s for s in self.std)


def _stat_points(d_in: int, half_width: float) -> np.ndarray:
    a = half_width
    if d_in == 1:
        n = 1 << 20
        return (-a + (np.arange(n) + 0.5) * (2 * a / n))[:, None]
    if d_in == 2:
        n = 1024
        g = -a + (np.arange(n) + 0.5) * (2 * a / n)
        return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return np.random.default_rng(0).uniform(-a, a, (1 << 20, d_in))


@functools.lru_cache(maxsize=128)
def target_stats(target: "str | Target", half_width: float) -> TargetStats:
    """Mean, median and standard deviation per output of the target on the uniform domain (float64)."""
    t = get_target(target)
    x = _stat_points(t.d_in, half_width)
    y = np.asarray(t.fn(jnp.asarray(x, jnp.float32)), np.float64).reshape(len(x), t.d_out)
    ys = np.sort(y, axis=0)
    half = len(ys) // 2
    return TargetStats(tuple(float(v) for v in y.mean(0)), tuple(float(v) for v in np.median(y, 0)),
                       tuple(float(v) for v in y.std(0)), tuple(float(v) for v in ys[half - 1]),
                       tuple(float(v) for v in ys[half]))


def dense_grid(d_in: int, half_width: float, points: int) -> np.ndarray:
    """The dense test set of the domain used to classify trained networks, ``(P, d_in)`` float32.

    d_in = 1: ``points`` equally spaced points on [-a, a] (endpoints included); d_in = 2: a
    ``ceil(sqrt(points))``-per-axis grid; d_in >= 3: the 2^d_in corners (when at most ``points``) and uniform
    samples (numpy seed 0), ``points`` in all.
    """
    a = half_width
    if d_in == 1:
        return np.linspace(-a, a, points, dtype=np.float32)[:, None]
    if d_in == 2:
        k = math.ceil(math.sqrt(points))
        g = np.linspace(-a, a, k, dtype=np.float32)
        return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    pts = np.random.default_rng(0).uniform(-a, a, (points, d_in)).astype(np.float32)
    if 2 ** d_in <= points:
        corners = np.array(list(itertools.product([-a, a], repeat=d_in)), np.float32)
        pts = np.concatenate([corners, pts[: points - len(corners)]], axis=0)
    return pts
