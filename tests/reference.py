"""Independent numpy reference implementations used by the tests (no collapse_mc code)."""
import math

import numpy as np


def born_dead_numpy(width, depth, trials, seed, probes=(1.0, -1.0), bias_std=0.0, d_in=1):
    """Materialize He-normal networks with numpy and return first_dead_layer (0 = alive) per trial.

    ``probes``: 1-D inputs (d_in = 1). A layer is dead when its output is all-zero at every probe (ReLU).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(probes, np.float64).reshape(1, -1, d_in)
    h = np.broadcast_to(x, (trials,) + x.shape[1:])
    first = np.zeros(trials, np.int64)
    fan = d_in
    for layer in range(1, depth + 1):
        w = rng.standard_normal((trials, fan, width)) * math.sqrt(2.0 / fan)
        b = rng.standard_normal((trials, 1, width)) * bias_std
        h = np.maximum(h @ w + b, 0.0)
        dead_now = ~h.any(axis=(1, 2))
        first = np.where((first == 0) & dead_now, layer, first)
        fan = width
    return first


def binom_se(p1, n1, p2=None, n2=None):
    """Standard error of p1 (or of p1 - p2), with p clipped away from 0 and 1 by half a count."""
    def var(p, n):
        p = min(max(p, 0.5 / n), 1 - 0.5 / n)
        return p * (1 - p) / n
    v = var(p1, n1)
    if p2 is not None:
        v += var(p2, n2)
    return math.sqrt(v)
