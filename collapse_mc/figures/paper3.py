"""Figures of the paper 3 study (``jobs.paper3``, ``jobs.single_relu``), drawn from its JSON results.

Each function writes ``<base>.png`` (150 dpi) and ``<base>.pdf``; legends sit outside the axes and the settings
in a subtitle. Depth is L_h, hidden layers (the papers' layers = L_h + 1).
"""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import numpy as np  # noqa: E402

DPI = 150
MARKERS = "osD^v<>ph"
STYLES = ("-", "--", "-.", ":")


def _save(fig, base: str) -> list[str]:
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = f"{base}.{ext}"
        fig.savefig(path, dpi=DPI if ext == "png" else None, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _interval(cells: Sequence[dict], key: str):
    lo_key, hi_key = (("dead_fraction_ci_low", "dead_fraction_ci_high") if key == "dead_fraction_mean"
                      else (f"{key}_ci_low", f"{key}_ci_high"))
    p = np.array([np.nan if c.get(key) is None else c[key] for c in cells], float)
    lo = np.array([np.nan if c.get(lo_key) is None else c[lo_key] for c in cells], float)
    hi = np.array([np.nan if c.get(hi_key) is None else c[hi_key] for c in cells], float)
    return p, np.nan_to_num(p - lo), np.nan_to_num(hi - p)


def _lines(ax, cells: Sequence[dict], key: str, arms: Sequence[str], colours) -> None:
    """One line per arm: ``key`` against target std (log x) with 95 % error bars; the lines are shifted a
    little along x so the bars do not hide each other."""
    n = len(arms)
    for i, arm in enumerate(arms):
        sel = sorted((c for c in cells if c["arm"] == arm), key=lambda c: c["target_std"])
        if not sel:
            continue
        x = np.array([c["target_std"] for c in sel]) * 10 ** (0.08 * (i - (n - 1) / 2))
        p, lo, hi = _interval(sel, key)
        ax.errorbar(x, p, yerr=[lo, hi], color=colours[i], marker=MARKERS[i % len(MARKERS)], ms=4,
                    ls=STYLES[i % len(STYLES)], lw=1.2, capsize=2, label=arm)
        div = np.array([(c.get("p_diverged") or 0) > 0.5 for c in sel])
        if div.any():
            ax.plot(x[div], np.where(np.isfinite(p[div]), p[div], 0.0), ls="none", marker="x", ms=8,
                    color=colours[i], mew=1.5)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    div = [(c.get("p_diverged") or 0) > 0.5 for c in cells]
    if div and sum(div) >= 0.75 * len(div):
        ax.text(0.5, 0.5, f"{sum(div)} of {len(div)} points:\nmost networks diverged", transform=ax.transAxes,
                ha="center", va="center", fontsize=8, color="#c0392b")


def _colours(n: int):
    cmap = plt.get_cmap("cividis")
    return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


def _subtitle(settings: dict) -> str:
    return (f"width {settings['width']}, He normal, zero biases; target normalized |x| on [-sqrt 3, sqrt 3] scaled "
            f"to std s; MSE;\nminibatch {settings['batch_size']} of {settings['n_train']} points; "
            f"{settings['steps']} steps; {settings['trials']} networks per point; "
            f"bars: 95 % intervals; x: more than half diverged")


def by_depth(results: dict, key: str, base: str, ylabel: str, title: str,
             rows: Sequence[tuple[str, bool, str]] | None = None) -> list[str]:
    """``key`` against target std, one line per main-arm momentum; columns = depths, rows = (label,
    residual, key) (default: plain and residual with ``key``)."""
    cells = [c for c in results["cells"] if c["family"] == "sgd"]
    depths = sorted({c["depth"] for c in cells})
    arms = list(dict.fromkeys(c["arm"] for c in sorted(cells, key=lambda c: c["momentum"])))
    rows = rows or [("plain", False, key), ("residual", True, key)]
    rows = [r for r in rows if any(c["residual"] == r[1] for c in cells)]
    colours = _colours(len(arms))
    fig, axes = plt.subplots(len(rows), len(depths), figsize=(3.0 * len(depths) + 2.6, 2.5 * len(rows) + 0.9),
                             sharex=True, sharey=True, squeeze=False)
    for i, (label, res, k) in enumerate(rows):
        for j, d in enumerate(depths):
            ax = axes[i, j]
            _lines(ax, [c for c in cells if c["depth"] == d and c["residual"] == res], k, arms, colours)
            if i == 0:
                ax.set_title(f"L_h = {d} hidden layers ({d + 1} layers)", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{label}\n{ylabel if k == key else _KEY_LABEL.get(k, k)}", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("target standard deviation s")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="optimizer")
    fig.suptitle(title + "\n" + _subtitle(results["settings"]), fontsize=9)
    fig.tight_layout()
    return _save(fig, base)


_KEY_LABEL = {"p_dead_after_training": "P(dead after training)", "dead_fraction_mean": "fraction of dead ReLUs",
              "p_some_block_dead": "P(some residual block dead)"}


def controls(results: dict, base: str) -> list[str]:
    """At the control depth (plain): P(dead after training) and the dead fraction against target std, one
    panel per arm family: nominal lr with momenta, step-matched lr (1 - beta), second lr, Adam."""
    cells = results["cells"]
    fam = [c for c in cells if c["family"] != "sgd"]
    if not fam:
        return []
    depth = fam[0]["depth"]
    res = fam[0]["residual"]
    here = [c for c in cells if c["depth"] == depth and c["residual"] == res]
    nominal = [c for c in here if c["family"] == "sgd"]
    zero = [c for c in nominal if c["momentum"] == 0.0]
    panels = [("SGD, nominal lr", nominal),
              ("SGD, step-matched lr x (1 - beta)\n(same steady step as beta = 0)",
               zero + [c for c in here if c["family"] == "sgd_step_matched"]),
              ("SGD, second lr", [c for c in here if c["family"] == "sgd_lr2"]),
              ("Adam", [c for c in here if c["family"] == "adam"])]
    panels = [p for p in panels if p[1]]
    keys = [("p_dead_after_training", "P(dead after training)"), ("dead_fraction_mean", "fraction of dead ReLUs")]
    fig, axes = plt.subplots(2, len(panels), figsize=(3.3 * len(panels) + 0.5, 6.4), sharex=True, sharey=True,
                             squeeze=False)
    for j, (title, sel) in enumerate(panels):
        arms = list(dict.fromkeys(c["arm"] for c in sorted(sel, key=lambda c: (c["lr"], c["momentum"], c["beta1"]))))
        colours = _colours(len(arms))
        for i, (k, lab) in enumerate(keys):
            _lines(axes[i, j], sel, k, arms, colours)
            if j == 0:
                axes[i, j].set_ylabel(lab)
            if i == 1:
                axes[i, j].set_xlabel("target standard deviation s")
        axes[0, j].set_title(title, fontsize=9)
        axes[1, j].legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize=7)
    fig.suptitle(f"Momentum or step size? L_h = {depth} ({'residual' if res else 'plain'}), "
                 f"controls\n" + _subtitle(results["settings"]), fontsize=9)
    fig.tight_layout()
    return _save(fig, base)


OUTCOME_COLOURS = ("#f2e6a0", "#2b3a67", "#9a9a9a", "#c0392b")  # alive, died, dead at start, diverged


def single_relu_maps(sr: dict, base: str, step_matched: bool = False) -> list[str]:
    """Outcome over the grid of starts (w1_0, b1_0): one panel per (target std: row, momentum: column). Hatched:
    starts whose live optimum satisfies the oscillation condition along b1."""
    maps = [m for m in sr["maps"] if m["step_matched"] == step_matched or m["beta"] == 0.0]
    scales = sorted({m["target_std"] for m in maps})
    betas = sorted({m["beta"] for m in maps})
    g1, gb = np.array(sr["grid"]["w1"]), np.array(sr["grid"]["b1"])
    ext = [g1[0], g1[-1], gb[0], gb[-1]]
    cmap = ListedColormap(OUTCOME_COLOURS)
    fig, axes = plt.subplots(len(scales), len(betas), figsize=(2.5 * len(betas) + 2.4, 2.4 * len(scales) + 1.0),
                             sharex=True, sharey=True, squeeze=False)
    for i, s in enumerate(scales):
        for j, b in enumerate(betas):
            ax = axes[i, j]
            m = next((m for m in maps if m["target_std"] == s and m["beta"] == b), None)
            if m is None:
                ax.set_axis_off()
                continue
            ax.imshow(np.array(m["outcome"]), origin="lower", extent=ext, cmap=cmap, vmin=-0.5, vmax=3.5,
                      interpolation="nearest", aspect="auto")
            osc = np.array(m["oscillates_at_optimum"], float)
            if osc.any() and not osc.all():
                ax.contourf(g1, gb, osc, levels=[0.5, 1.5], colors="none", hatches=["///"])
                ax.contour(g1, gb, osc, levels=[0.5], colors="white", linewidths=0.8)
            elif osc.all():
                ax.contourf(g1, gb, osc, levels=[0.5, 1.5], colors="none", hatches=["///"])
            xs = np.linspace(ext[0], ext[1], 50)
            ax.plot(xs, -np.abs(xs) * sr["half_width"], color="k", lw=0.6, ls=":")
            ax.set_xlim(ext[0], ext[1])
            ax.set_ylim(ext[2], ext[3])
            died = m["p_died_of_alive_starts"]
            ax.set_title(f"s={s:g}, beta={b:g}, eta={m['eta']:.3g}\ndied {100 * died:.0f} % of live starts",
                         fontsize=8)
            if i == len(scales) - 1:
                ax.set_xlabel("initial w1")
            if j == 0:
                ax.set_ylabel("initial b1")
    handles = [Patch(facecolor=c, edgecolor="k", label=n) for c, n in zip(OUTCOME_COLOURS, sr["outcome_names"])]
    handles.append(Patch(facecolor="white", edgecolor="k", hatch="///",
                         label="oscillation condition holds\nat the live optimum (along b1)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    kind = "step-matched eta (1 - beta)" if step_matched else f"eta = {sr['eta']:g} for every beta"
    fig.suptitle(f"Single ReLU y = w2 relu(w1 x + b1) + b2, full-batch heavy ball ({kind}), {sr['steps']} steps\n"
                 f"start w2 = {sr['w2_0']:g}, b2 = {sr['b2_0']:g}; target: normalized relu(x) with std s on "
                 f"[-sqrt 3, sqrt 3]; dotted: dead boundary b1 = -sqrt 3 |w1|", fontsize=9)
    fig.tight_layout()
    return _save(fig, base)


def draw_all(results: dict, out: str) -> list[str]:
    """Every paper 3 figure the results support, into folder ``out``. Returns the written paths."""
    files = []
    if results.get("cells"):
        files += by_depth(results, "dead_fraction_mean", os.path.join(out, "dead_fraction_vs_target_std"),
                          "fraction of dead ReLUs", "Fraction of dead ReLUs after training against target std "
                          "(SGD, heavy-ball momentum)")
        files += by_depth(results, "p_dead_after_training", os.path.join(out, "p_dead_vs_target_std"),
                          "P(dead after training)", "P(dead after training): some hidden layer constant, output "
                          "constant (SGD, heavy-ball momentum)",
                          rows=[("plain", False, "p_dead_after_training"),
                                ("residual: output constant", True, "p_dead_after_training"),
                                ("residual", True, "p_some_block_dead")])
        files += controls(results, os.path.join(out, "controls_step_size_adam"))
    if results.get("single_relu"):
        files += single_relu_maps(results["single_relu"], os.path.join(out, "single_relu_map"))
        if any(m["step_matched"] for m in results["single_relu"]["maps"]):
            files += single_relu_maps(results["single_relu"], os.path.join(out, "single_relu_map_step_matched"),
                                      step_matched=True)
    return files
