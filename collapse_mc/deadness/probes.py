"""Probe points: the finite set on which deadness is decided.

* ``d_in == 1``, zero biases and a positively homogeneous activation (relu, leaky_relu): the two points
  ``x = +1`` and ``x = -1``. The network is then positively homogeneous, so a neuron or layer is dead on any
  interval around 0 exactly when it is dead at both points: the test is **exact**.
* otherwise ``d_in == 1``: a uniform grid of ``grid_points`` points on [-a, a] (default 1025);
  ``d_in == 2``: a uniform grid of ``ceil(sqrt(sample_points))`` points per axis (default 64 x 64);
  ``d_in >= 3``: ``sample_points`` points drawn uniformly from the cube once (numpy seed 0) plus the
  ``2^d_in`` corners when that is at most ``sample_points``.
  A network dead on the domain is dead on the probes, so these estimates are upper bounds on the domain's
  born-dead probability; a neuron alive only between probes is missed. The resolution is reported with
  every result (``probes``).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..config import ConfigError, InitConfig, NetworkConfig, ProbeConfig

HOMOGENEOUS_ACTIVATIONS = ("relu", "leaky_relu")


def exact_two_point(network: NetworkConfig, init: InitConfig) -> bool:
    """Whether the exact +-1 test applies (d_in 1, zero biases, homogeneous activation)."""
    return network.d_in == 1 and init.zero_bias and network.activation in HOMOGENEOUS_ACTIVATIONS


def probe_points(network: NetworkConfig, init: InitConfig, probe: ProbeConfig) -> np.ndarray:
    """The probe set, ``(P, d_in)`` float32."""
    a = probe.half_width
    d = network.d_in
    if probe.points is not None:
        pts = np.array(probe.points, np.float32)
        if pts.ndim != 2 or pts.shape[1] != d:
            raise ConfigError(f"probe points must have {d} coordinate(s) each")
        return pts
    if exact_two_point(network, init):
        return np.array([[1.0], [-1.0]], np.float32)
    if d == 1:
        return np.linspace(-a, a, probe.grid_points, dtype=np.float32)[:, None]
    if d == 2:
        k = math.ceil(math.sqrt(probe.sample_points))
        g = np.linspace(-a, a, k, dtype=np.float32)
        return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    pts = np.random.default_rng(0).uniform(-a, a, (probe.sample_points, d)).astype(np.float32)
    if 2 ** d <= probe.sample_points:
        corners = np.array(list(itertools.product([-a, a], repeat=d)), np.float32)
        pts = np.concatenate([corners, pts[: probe.sample_points - len(corners)]], axis=0)
    return pts


def describe(network: NetworkConfig, init: InitConfig, probe: ProbeConfig) -> str:
    """A short human description of the probe set (stored and printed with results)."""
    n = len(probe_points(network, init, probe))
    if probe.points is not None:
        return f"explicit: {n} point(s)"
    if exact_two_point(network, init):
        return "exact: x=+1 and x=-1 (d_in=1, zero biases)"
    if network.d_in == 1:
        return f"grid: {n} points on [-{probe.half_width:.4g}, {probe.half_width:.4g}]"
    if network.d_in == 2:
        return f"grid: {n} points on [-{probe.half_width:.4g}, {probe.half_width:.4g}]^2"
    return f"sample: {n} points in [-{probe.half_width:.4g}, {probe.half_width:.4g}]^{network.d_in}"
