"""Closed-form results (SCIENCE.md section 3). Depth = hidden layers L_h throughout.

Assumptions shared by every function here: weights i.i.d. from a continuous distribution symmetric about 0
(He/LeCun/Glorot normal or uniform, ...), biases zero or i.i.d. symmetric, ReLU activation, width N in every
hidden layer.
"""
from __future__ import annotations

import math


def layer_death_probability(width: int) -> float:
    """P(a hidden layer is all-zero at a fixed input | the layer below is non-zero there) = 2^-N.

    Each of the N pre-activations is positive with probability 1/2, independently given the layer below.
    """
    return 2.0 ** (-width)


def p_dead_single_input(width: int, depth: int) -> float:
    """P(some hidden layer is all-zero at one fixed input x0) = 1 - (1 - 2^-N)^L_h.

    Exact for a single input; an **upper bound** on the born-dead probability on any domain containing x0,
    for any input dimension. Computed stably with log1p/expm1.
    """
    if width < 1 or depth < 0:
        raise ValueError("need width >= 1 and depth >= 0")
    return -math.expm1(depth * math.log1p(-layer_death_probability(width)))


def max_depth_below(width: int, p: float) -> int:
    """The largest depth L_h whose single-input bound stays at or below ``p``:
    floor(ln(1 - p) / ln(1 - 2^-N)) (about 2^N * (-ln(1 - p)) for large N). Returns 0 when even one layer
    exceeds p; raises for p outside (0, 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    q = layer_death_probability(width)
    if q >= 1.0:
        return 0
    return int(math.floor(math.log1p(-p) / math.log1p(-q) + 1e-12))


def min_width_for(depth: int, p: float) -> int:
    """The smallest width N whose single-input bound at ``depth`` is at or below ``p``
    (grows like log2(L_h / p))."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    n = 1
    while p_dead_single_input(n, depth) > p:
        n += 1
    return n


def p_dead_limit(width: int) -> float:
    """Limit of the born-dead probability as depth -> infinity at fixed width: 1 (each layer kills the
    network with probability at least 2^-N > 0 independently of the past, so survival decays geometrically)."""
    if width < 1:
        raise ValueError("need width >= 1")
    return 1.0


def single_input_applies(network, init) -> bool:
    """Whether ``p_dead_single_input`` bounds a cell's born-dead probability: ReLU, symmetric weights (not
    RAI), zero biases, plain (not residual) hidden layers. Elsewhere no closed form is offered."""
    return (network.activation == "relu" and not network.residual and init.weights != "rai"
            and isinstance(init.weights, str)
            and init.zero_bias)
