"""Paper 3's single-ReLU model: ``y = w2 relu(w1 x + b1) + b2`` trained by full-batch heavy-ball descent.

The model (SCIENCE.md section 7). Inputs x uniform on [-a, a] (a = sqrt 3). Target, normalized to mean 0 and
standard deviation ``s``: ``t(x) = s (relu(x) - mu) / sigma`` with ``mu = a / 4`` and ``sigma = a sqrt(5 / 48)``
the mean and standard deviation of relu(x), so the single unit fits it exactly (the *live optimum*: b1 = 0,
w1 w2 = s / sigma, b2 = -s mu / sigma, loss 0). The loss is the **population** mean squared error
``E_x[(y(x) - t(x))^2]``, computed exactly (``population_loss``): between the breakpoints {-a, the unit's kink,
0, a} both functions are linear, so the squared error is a quadratic there and Simpson's rule on each piece is
exact; gradients are exact by autodiff (the error is continuous at the moving kink, so the pieces' boundary
terms cancel). "Full batch" therefore means the whole domain, not a sample.

Dead unit: ``w1 x + b1 <= 0`` on all of [-a, a], i.e. ``b1 + |w1| a <= 0``. Then w1 and b1 get exactly zero
gradient and stay where they are (tested): dead is permanent.

Optimizer: heavy ball as ``optax.sgd(eta, momentum=beta)``: ``v <- g + beta v``, ``theta <- theta - eta v``, i.e.
``theta_{t+1} = theta_t - eta g_t + beta (theta_t - theta_{t-1})`` with ``v_0 = 0``.

Oscillation condition (SCIENCE.md section 7): on a quadratic of curvature ``lam`` the error obeys
``e_{t+1} = (1 + beta - eta lam) e_t - beta e_{t-1}``, characteristic roots of
``z^2 - (1 + beta - eta lam) z + beta``: complex (oscillating, ``|z| = sqrt(beta)``) iff
``(1 + beta - eta lam)^2 < 4 beta``, i.e. ``(1 - sqrt beta)^2 < eta lam < (1 + sqrt beta)^2``.

The relevant curvature: at the live optimum the Hessian is ``2 E[g g^T]`` (zero residual), g the gradient of
y in (w1, b1, w2, b2) (``optimum_hessian``, closed form). The direction that carries the unit towards its dead
set is the bias b1, with curvature ``lam_b1 = H[b1, b1] = w2*^2``. Which optimum: the loss is invariant under
``(w1, b1, w2) -> (c w1, c b1, w2 / c)``, and gradient flow conserves ``w2^2 - w1^2 - b1^2`` (the unit is
positively homogeneous), so a run from ``(w1_0, b1_0, w2_0)`` heads for the optimum with the same invariant
(``live_optimum``); heavy-ball steps conserve it only approximately (to O(eta)).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

HALF_WIDTH = math.sqrt(3.0)
# outcome codes of one run (``run_map``)
ALIVE, DIED, BORN_DEAD, DIVERGED = 0, 1, 2, 3
OUTCOME_NAMES = ("alive", "died in training", "dead at start", "diverged")


class Unit(NamedTuple):
    """Parameters of the single-ReLU model (scalars or arrays of one shape)."""

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array


def target_moments(a: float = HALF_WIDTH) -> tuple[float, float]:
    """``(mu, sigma)``: mean and standard deviation of relu(x) for x ~ U[-a, a]."""
    return a / 4.0, a * math.sqrt(5.0 / 48.0)


def population_loss(p: Unit, s, a: float = HALF_WIDTH) -> jax.Array:
    """Exact ``E_x[(w2 relu(w1 x + b1) + b2 - t(x))^2]``, x ~ U[-a, a], target std ``s`` (scalars in, scalar out).

    Piecewise Simpson over the sorted breakpoints {-a, kink, 0, a} (exact for piecewise quadratics). On each
    piece the unit's and the target's activity are read at the piece's midpoint, so every piece is an explicit
    polynomial in the parameters and autodiff gives the exact gradient.
    """
    mu, sigma = target_moments(a)
    w1, b1, w2, b2 = p
    safe_w1 = jnp.where(w1 == 0, 1.0, w1)
    kink = jnp.where(w1 == 0, -a, jnp.clip(-b1 / safe_w1, -a, a))
    pts = jnp.sort(jnp.stack([jnp.asarray(-a, kink.dtype), kink, jnp.zeros_like(kink),
                              jnp.asarray(a, kink.dtype)]))
    total = jnp.zeros((), kink.dtype)
    for i in range(3):
        lo, hi = pts[i], pts[i + 1]
        mid = 0.5 * (lo + hi)
        unit_on = (w1 * mid + b1 > 0).astype(kink.dtype)
        target_on = (mid > 0).astype(kink.dtype)

        def err(x, unit_on=unit_on, target_on=target_on):
            return w2 * unit_on * (w1 * x + b1) + b2 - s * (target_on * x - mu) / sigma

        total = total + (hi - lo) / 6.0 * (err(lo) ** 2 + 4.0 * err(mid) ** 2 + err(hi) ** 2)
    return total / (2.0 * a)


def is_dead(p: Unit, a: float = HALF_WIDTH):
    """The unit is off on the whole domain: ``b1 + |w1| a <= 0``."""
    return p.b1 + jnp.abs(p.w1) * a <= 0


def loss_grad(p: Unit, s, a: float = HALF_WIDTH) -> tuple[jax.Array, Unit]:
    """``(loss, gradient)`` of ``population_loss`` for one unit."""
    return jax.value_and_grad(population_loss)(p, s, a)


def heavy_ball(p0: Unit, s, eta, beta, steps: int, a: float = HALF_WIDTH) -> tuple[Unit, jax.Array, jax.Array]:
    """``steps`` heavy-ball steps from ``p0`` (scalars). Returns ``(final params, died_at, loss trajectory)``:
    ``died_at`` the first step after which the unit is dead (0 = dead at the start, -1 = never) and the loss
    before each step, ``(steps,)``."""

    def step(carry, t):
        p, v, died = carry
        loss, g = loss_grad(p, s, a)
        v = jax.tree.map(lambda vi, gi: gi + beta * vi, v, g)
        p = jax.tree.map(lambda pi, vi: pi - eta * vi, p, v)
        died = jnp.where((died < 0) & is_dead(p, a), t + 1, died)
        return (p, v, died), loss

    p0 = Unit(*(jnp.asarray(x, jnp.float32) for x in p0))
    died0 = jnp.where(is_dead(p0, a), 0, -1).astype(jnp.int32)
    zeros = jax.tree.map(jnp.zeros_like, p0)
    (p, _, died), losses = jax.lax.scan(step, (p0, zeros, died0), jnp.arange(steps, dtype=jnp.int32))
    return p, died, losses


@functools.partial(jax.jit, static_argnames=("steps", "a"))
def _run_grid(w1, b1, w2, b2, s, eta, beta, steps: int, a: float):
    def one(w1, b1):
        p, died, losses = heavy_ball(Unit(w1, b1, w2, b2), s, eta, beta, steps, a)
        finite = jnp.all(jnp.isfinite(jnp.stack(list(p)))) & jnp.all(jnp.isfinite(losses))
        return died, finite, population_loss(p, s, a), p

    return jax.vmap(one)(w1, b1)


def run_map(w1: np.ndarray, b1: np.ndarray, s: float, eta: float, beta: float, steps: int,
            w2: float = 1.0, b2: float = 0.0, a: float = HALF_WIDTH) -> dict:
    """Train from every initial ``(w1[i], b1[i])`` (1-D arrays, same length) with ``w2``, ``b2`` fixed.

    Returns numpy arrays: ``outcome`` (ALIVE / DIED / BORN_DEAD / DIVERGED per start), ``died_at`` (step,
    -1 never), ``final_loss`` and the final parameters ``w1``, ``b1``, ``w2``, ``b2``.
    """
    w1 = jnp.asarray(w1, jnp.float32)
    b1 = jnp.asarray(b1, jnp.float32)
    died, finite, loss, p = _run_grid(w1, b1, jnp.float32(w2), jnp.float32(b2), jnp.float32(s), jnp.float32(eta),
                                      jnp.float32(beta), int(steps), float(a))
    died, finite = np.asarray(died), np.asarray(finite)
    outcome = np.where(died == 0, BORN_DEAD, np.where(~finite, DIVERGED, np.where(died > 0, DIED, ALIVE)))
    return {"outcome": outcome.astype(np.int8), "died_at": died, "final_loss": np.asarray(loss),
            **{k: np.asarray(v) for k, v in p._asdict().items()}}


# ---- the linear system near the live optimum ------------------------------------------------------------


def oscillates(eta, beta, lam):
    """SCIENCE.md section 7: heavy ball on curvature ``lam`` oscillates iff ``(1 + beta - eta lam)^2 < 4 beta``."""
    return (1.0 + np.asarray(beta) - np.asarray(eta) * np.asarray(lam)) ** 2 < 4.0 * np.asarray(beta)


def characteristic_roots(eta: float, beta: float, lam: float) -> np.ndarray:
    """The two roots of ``z^2 - (1 + beta - eta lam) z + beta`` (complex128)."""
    return np.roots([1.0, -(1.0 + beta - eta * lam), beta]).astype(np.complex128)


def oscillation_band(beta: float) -> tuple[float, float]:
    """The range of ``eta lam`` where the condition holds: ``((1 - sqrt beta)^2, (1 + sqrt beta)^2)``."""
    r = math.sqrt(beta)
    return (1.0 - r) ** 2, (1.0 + r) ** 2


def live_optimum(w1_0, b1_0, w2_0, s, a: float = HALF_WIDTH) -> Unit:
    """The live optimum with the start's gradient-flow invariant ``D = w1^2 + b1^2 - w2^2`` (numpy, broadcast):
    ``b1 = 0``, ``w1 w2 = k = s / sigma``, ``w1^2 - w2^2 = D``, w1, w2 > 0, ``b2 = -s mu / sigma``."""
    mu, sigma = target_moments(a)
    k = np.asarray(s, np.float64) / sigma
    d = np.asarray(w1_0, np.float64) ** 2 + np.asarray(b1_0, np.float64) ** 2 - np.asarray(w2_0, np.float64) ** 2
    w1 = np.sqrt((d + np.sqrt(d * d + 4.0 * k * k)) / 2.0)
    w2 = k / w1
    return Unit(w1, np.zeros_like(w1), w2, np.broadcast_to(-k * mu, w1.shape).copy())


def optimum_hessian(w1: float, w2: float, a: float = HALF_WIDTH) -> np.ndarray:
    """Hessian of ``population_loss`` at a live optimum (b1 = 0, w1 > 0, zero residual), order (w1, b1, w2, b2):
    ``2 E[g g^T]`` with ``g = (w2 x 1{x>0}, w2 1{x>0}, relu(w1 x), 1)``, using E[1{x>0}] = 1/2,
    E[x 1{x>0}] = a/4, E[x^2 1{x>0}] = a^2/6."""
    e1, ex, exx = 0.5, a / 4.0, a * a / 6.0
    m = np.array([
        [w2 * w2 * exx, w2 * w2 * ex, w2 * w1 * exx, w2 * ex],
        [w2 * w2 * ex, w2 * w2 * e1, w2 * w1 * ex, w2 * e1],
        [w2 * w1 * exx, w2 * w1 * ex, w1 * w1 * exx, w1 * ex],
        [w2 * ex, w2 * e1, w1 * ex, 1.0],
    ])
    return 2.0 * m


def bias_curvature(w2) -> np.ndarray:
    """Curvature along b1 at a live optimum: ``H[b1, b1] = 2 w2^2 E[1{x>0}] = w2^2``."""
    return np.asarray(w2, np.float64) ** 2


# ---- the study: maps over initial conditions, momenta and target scales ----------------------------------

# (label, beta, eta): nominal step eta0 for every momentum, and the step-matched control eta0 (1 - beta)
def settings_for(momenta, eta0: float, matched: bool = True) -> list[tuple[str, float, float]]:
    out = [(f"beta={b:g}, eta={eta0:g}", float(b), float(eta0)) for b in momenta]
    if matched:
        out += [(f"beta={b:g}, eta={eta0 * (1 - b):.3g} (step-matched)", float(b), float(eta0 * (1 - b)))
                for b in momenta if b > 0]
    return out


def run_study(scales=(0.01, 0.1, 1.0, 10.0), momenta=(0.0, 0.5, 0.9, 0.99), eta: float = 0.05, steps: int = 2000,
              n: int = 81, lim: float = 2.0, w2_0: float = 1.0, b2_0: float = 0.0, matched: bool = True,
              a: float = HALF_WIDTH) -> dict:
    """Maps of the outcome over an ``n x n`` grid of starts ``(w1_0, b1_0)`` in [-lim, lim]^2 (``w2_0``, ``b2_0``
    fixed), for every target std in ``scales`` and every (momentum, step) of ``settings_for``. For each map also
    the oscillation condition at each start's live optimum along b1 (``lam_b1 = w2*^2``). JSON-able."""
    g = np.linspace(-lim, lim, n)
    W1, B1 = np.meshgrid(g, g, indexing="xy")        # rows: b1, columns: w1
    w1, b1 = W1.ravel(), B1.ravel()
    maps = []
    for s in scales:
        opt = live_optimum(w1, b1, w2_0, s, a)
        lam = bias_curvature(opt.w2)
        for label, beta, e in settings_for(momenta, eta, matched):
            r = run_map(w1, b1, s, e, beta, steps, w2_0, b2_0, a)
            osc = oscillates(e, beta, lam)
            counts = {name: int((r["outcome"] == code).sum()) for code, name in enumerate(OUTCOME_NAMES)}
            alive_start = r["outcome"] != BORN_DEAD
            died = r["outcome"] == DIED
            maps.append({
                "target_std": float(s), "beta": beta, "eta": e, "label": label,
                "step_matched": "step-matched" in label,
                "outcome": r["outcome"].reshape(n, n).tolist(),
                "oscillates_at_optimum": osc.reshape(n, n).astype(int).tolist(),
                "counts": counts,
                "p_died_of_alive_starts": float(died.sum() / max(1, alive_start.sum())),
                "p_died_where_oscillating": _frac(died, alive_start & osc),
                "p_died_where_not_oscillating": _frac(died, alive_start & ~osc),
                "frac_alive_starts_oscillating": _frac(osc, alive_start),
                "lam_b1_median_alive_starts": float(np.median(lam[alive_start])),
                "eta_lam_b1_median_alive_starts": float(e * np.median(lam[alive_start])),
                "died_at_median": float(np.median(r["died_at"][died])) if died.any() else None,
            })
    mu, sigma = target_moments(a)
    spectra = []
    for s in scales:   # the canonical start (w1, b1, w2) = (1, 0, w2_0): its optimum's full Hessian spectrum
        opt = live_optimum(1.0, 0.0, w2_0, s, a)
        ev = np.linalg.eigvalsh(optimum_hessian(float(opt.w1), float(opt.w2), a))
        spectra.append({"target_std": float(s), "w1": float(opt.w1), "w2": float(opt.w2),
                        "lam_b1": float(bias_curvature(opt.w2)), "eigenvalues": ev.tolist()})
    return {"model": "y = w2 relu(w1 x + b1) + b2, x ~ U[-a, a], population MSE, heavy ball (optax.sgd)",
            "half_width": a, "target": f"s (relu(x) - {mu:.4f}) / {sigma:.4f}", "w2_0": w2_0, "b2_0": b2_0,
            "grid": {"w1": g.tolist(), "b1": g.tolist()}, "steps": steps, "eta": eta, "scales": list(scales),
            "momenta": list(momenta), "outcome_names": list(OUTCOME_NAMES), "maps": maps,
            "optimum_spectra_start_1_0": spectra}


def _frac(event: np.ndarray, among: np.ndarray) -> float | None:
    n = int(among.sum())
    return float((event & among).sum() / n) if n else None
