"""Publication figures with matplotlib (Agg): each function draws one figure and writes ``<base>.png`` and
``<base>.pdf``. Colour maps and line styles are chosen to survive grey-scale printing (cividis, plus distinct
line styles and markers). Depth axes say "hidden layers L_h" (the papers' layers = L_h + 1).
"""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..analysis.safe_region import UNDETERMINED, Grid  # noqa: E402
from ..theory import max_depth_below, p_dead_single_input  # noqa: E402

DEPTH_LABEL = "depth: hidden layers $L_h$ (papers' layers = $L_h$ + 1)"
WIDTH_LABEL = "width $N$ (neurons per hidden layer)"
THRESHOLD_STYLES = {0.01: ":", 0.10: "--", 0.50: "-"}
MARKERS = "osD^v<>phH*X"


DPI = 160
# no software version or creation date in the files: the same store draws byte-identical figures
METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}


def _save(fig, base: str) -> list[str]:
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = f"{base}.{ext}"
        fig.savefig(path, dpi=DPI if ext == "png" else None, bbox_inches="tight", metadata=METADATA[ext])
        paths.append(path)
    plt.close(fig)
    return paths


def _style(thr: float) -> str:
    return THRESHOLD_STYLES.get(round(thr, 4), "-.")


def probability_vs_depth(grid: Grid, base: str, widths: Sequence[int] | None = None,
                         trained: Sequence[dict] | None = None, title: str | None = None,
                         theory: bool = True) -> list[str]:
    """P(born dead) against depth, one curve per width with 95 % bands and (``theory``: where it applies, see
    ``theory.single_input_applies``) the single-input theory (dashed, an upper bound). ``trained``: records with width, depth, p_collapse, ci_low, ci_high, drawn as open squares
    (collapse after training, which includes born dead)."""
    widths = list(widths) if widths is not None else [int(w) for w in grid.widths]
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    cmap = plt.get_cmap("cividis")
    p = grid.p
    lo, hi = grid.intervals()
    for n, w in enumerate(widths):
        i = int(np.nonzero(grid.widths == w)[0][0])
        has = grid.n[i] > 0
        colour = cmap(n / max(len(widths) - 1, 1) * 0.8)
        d = grid.depths[has]
        ax.plot(d, p[i, has], marker=MARKERS[n % len(MARKERS)], markevery=max(1, len(d) // 8), ms=4,
                color=colour, label=f"N={w}")
        ax.fill_between(d, lo[i, has], hi[i, has], color=colour, alpha=0.25, lw=0)
        if theory:
            dd = np.arange(1, int(d.max()) + 1)
            ax.plot(dd, [p_dead_single_input(w, x) for x in dd], ls="--", lw=0.9, color=colour)
    if trained:
        for r in trained:
            n = widths.index(int(r["width"])) if int(r["width"]) in widths else 0
            colour = cmap(n / max(len(widths) - 1, 1) * 0.8)
            ax.errorbar([r["depth"]], [r["p_collapse"]], yerr=[[r["p_collapse"] - r["ci_low"]],
                                                               [r["ci_high"] - r["p_collapse"]]],
                        marker="s", mfc="white", color=colour, ms=6, capsize=2, ls="none")
        ax.plot([], [], "s", mfc="white", color="k", label="collapsed after training")
    if theory:
        ax.plot([], [], "k--", lw=0.9, label=r"theory $1-(1-2^{-N})^{L_h}$ (upper bound)")
    ax.set_xlabel(DEPTH_LABEL)
    ax.set_ylabel("probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "Born dead at initialization (95 % Wilson bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _save(fig, base)


def safe_region(grid: Grid, base: str, thresholds: Sequence[float] = (0.01, 0.10, 0.50),
                title: str | None = None, subtitle: str | None = None, theory: bool = True) -> list[str]:
    """The safe-region diagram: width x depth map of P(born dead) in bands (1 %, 10 %, 50 % are band edges),
    for each threshold the measured boundary (red step: largest depth all of whose cells are safe) and the
    theory boundary (black, only with ``theory``), and cells undetermined at some threshold marked with a
    dot; legend outside."""
    from .trained_region import BANDS, banded_colours
    p = grid.p
    fig, ax = plt.subplots(figsize=(7.2, 5.2))
    w, d = grid.widths, grid.depths
    cm, norm = banded_colours()
    mesh = ax.pcolormesh(np.append(w - 0.5, w[-1] + 0.5), np.append(d - 0.5, d[-1] + 0.5), p.T,
                         cmap=cm, norm=norm, shading="flat")
    cb = fig.colorbar(mesh, ax=ax, ticks=BANDS, pad=0.02)
    cb.set_ticklabels([f"{100 * b:g}%" for b in BANDS])
    cb.set_label("P(born dead), banded")
    undetermined = np.zeros(p.shape, bool)
    for thr in thresholds:
        undetermined |= grid.labels(thr) == UNDETERMINED
        bs = grid.boundaries(thr)
        ax.step(w, [b.largest_safe + 0.5 for b in bs], where="mid", color="tab:red", ls=_style(thr), lw=1.8,
                label=f"measured boundary, p < {100 * thr:g}%")
        if theory:
            ax.step(w, [min(max_depth_below(int(x), thr), d[-1]) + 0.5 for x in w], where="mid", color="k",
                    ls=_style(thr), lw=0.9, label=f"theory bound, p < {100 * thr:g}%")
    iu = np.nonzero(undetermined)
    ax.plot(w[iu[0]], d[iu[1]], ".", color="magenta", ms=2.5, label="undetermined at a threshold")
    ax.set_xlabel(WIDTH_LABEL)
    ax.set_ylabel(DEPTH_LABEL)
    ax.set_xlim(w[0] - 0.5, w[-1] + 0.5)
    ax.set_ylim(d[0] - 0.5, d[-1] + 0.5)
    ax.set_xticks(w)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(title or "Safe region: P(born dead) with 95 % intervals", fontsize=11, pad=18)
    if subtitle:
        ax.text(0.5, 1.015, subtitle, transform=ax.transAxes, ha="center", va="bottom", fontsize=7)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    return _save(fig, base)


def init_comparison(records: Sequence[dict], base: str, title: str | None = None) -> list[str]:
    """Side-by-side bars, one group per configuration (``label``), one bar per initialization (``init``),
    with 95 % intervals. Records need label, init, p, ci_low, ci_high."""
    labels = list(dict.fromkeys(r["label"] for r in records))
    inits = list(dict.fromkeys(r["init"] for r in records))
    fig, ax = plt.subplots(figsize=(max(4.8, 1.3 * len(labels) * len(inits)), 4.0))
    width = 0.8 / len(inits)
    hatches = ["", "//", "..", "xx", "\\\\"]
    greys = plt.get_cmap("cividis")
    for j, init in enumerate(inits):
        xs, ps, err_lo, err_hi = [], [], [], []
        for i, lab in enumerate(labels):
            for r in records:
                if r["label"] == lab and r["init"] == init:
                    xs.append(i + (j - (len(inits) - 1) / 2) * width)
                    ps.append(r["p"])
                    err_lo.append(r["p"] - r["ci_low"])
                    err_hi.append(r["ci_high"] - r["p"])
        bars = ax.bar(xs, ps, width * 0.95, yerr=[err_lo, err_hi], capsize=3, label=init,
                      color=greys(0.15 + 0.7 * j / max(len(inits) - 1, 1)), edgecolor="k",
                      hatch=hatches[j % len(hatches)])
        for b, v, hi in zip(bars, ps, err_hi):
            ax.annotate(f"{100 * v:.1f}%", (b.get_x() + b.get_width() / 2, v + hi), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("probability (95 % interval)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title or "Initializations side by side")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, base)


def example_fits(x: np.ndarray, target: np.ndarray, fits: Sequence[tuple[str, np.ndarray]], base: str,
                 title: str | None = None) -> list[str]:
    """A collapsed and a successful network (or any list of ``(label, y(x))``) against the target on the
    1-D domain."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(x, target, color="k", lw=2.2, label="target")
    styles = ["--", "-", ":", "-."]
    cmap = plt.get_cmap("cividis")
    for n, (label, y) in enumerate(fits):
        ax.plot(x, y, ls=styles[n % len(styles)], lw=1.6, color=cmap(0.2 + 0.6 * n / max(len(fits) - 1, 1)),
                label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(title or "Example fits")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, base)


def collapse_constants(values: dict[str, np.ndarray], reference: dict[str, float], base: str,
                       title: str | None = None, bands: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """Histograms of the constants that collapsed networks output, one panel per loss (``values[loss]``), with
    the value theory predicts (``reference[loss]``: the target mean for MSE, a median for L1) as a line.
    ``bands[loss]``: an interval of optimal constants drawn shaded when it is wide (every value between the
    target's lower and upper median is an L1 optimum, e.g. [0.2, 0.8] for the step target)."""
    losses = list(values)
    fig, axes = plt.subplots(1, len(losses), figsize=(3.6 * len(losses), 3.4), squeeze=False)
    for ax, loss in zip(axes[0], losses):
        v = np.asarray(values[loss], float)
        v = v[np.isfinite(v)]
        ref = reference[loss]
        band = (bands or {}).get(loss)
        wide = band is not None and band[1] - band[0] > 1e-3
        if wide:
            ax.axvspan(band[0], band[1], color="0.85", zorder=0,
                       label=f"every median [{band[0]:.2f}, {band[1]:.2f}]")
        if len(v):
            span = max(np.ptp(v), 0.02)
            ax.hist(v, bins=30, range=(min(v.min(), ref) - 0.1 * span, max(v.max(), ref) + 0.1 * span),
                    color="0.6", edgecolor="k")
        if not wide:
            ax.axvline(ref, color="k", ls="--", lw=1.5,
                       label=("target mean" if loss == "mse" else "target median") + f" {ref:.4f}")
        ax.set_xlabel(f"collapse constant ({loss.upper()} loss)")
        ax.set_ylabel("collapsed networks")
        ax.set_title(f"{loss.upper()}: n={len(v)}, median {np.median(v) if len(v) else float('nan'):.4f}",
                     fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title or "Collapse constants against the target statistics", fontsize=10)
    return _save(fig, base)
