"""Figures of the trained safe region: the width x depth map of P(collapse after training) per initialization,
and probability against depth with every width labelled. Depth axes are in hidden layers L_h (log scale,
integer ticks); colours are banded so that 1 %, 10 % and 50 % are band edges.
"""
from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
from matplotlib.colors import BoundaryNorm
from matplotlib.patches import Rectangle

from ..analysis.safe_region import Grid
from ..theory import p_dead_single_input
from .plots import DEPTH_LABEL, MARKERS, WIDTH_LABEL, _save, _style, plt

BANDS = (0.0, 0.01, 0.03, 0.10, 0.25, 0.50, 0.75, 0.90, 1.0)
INIT_NAMES = {"he_normal": "He normal", "rai": "RAI"}


def banded_colours(cmap: str = "cividis"):
    """``(colormap, norm)`` with one colour per band of ``BANDS``."""
    cm = plt.get_cmap(cmap, len(BANDS) - 1)
    return cm, BoundaryNorm(BANDS, cm.N)


def _edges(depths: Sequence[int]) -> np.ndarray:
    d = np.asarray(depths, float)
    mid = np.sqrt(d[:-1] * d[1:])
    return np.concatenate([[d[0] / np.sqrt(d[1] / d[0])], mid, [d[-1] * np.sqrt(d[-1] / d[-2])]])


def _depth_axis(ax, depths, edges):
    ax.set_yscale("log")
    ax.set_ylim(edges[0], edges[-1])
    ax.set_yticks(list(depths))
    ax.set_yticklabels([str(d) for d in depths])
    ax.minorticks_off()


def trained_region(panels: dict, born_dead: dict, base: str, depths: Sequence[int], widths: Sequence[int],
                   thresholds: Sequence[float], subtitle: str) -> list[str]:
    """One panel per initialization (shared axes, one colour scale).

    Args:
        panels: ``{init: summary}`` with ``cells`` (width, depth, p, status, undetermined) and ``boundaries``
            (width, threshold, safe_up_to_depth, resolved, reason) as from ``jobs.trained_region.summarize``.
        born_dead: ``{init: Grid}`` born-dead depth profiles, drawn as the reference boundary.
        thresholds: thresholds drawn (those resolvable by the trained cells).
    """
    inits = list(panels)
    fig, axes = plt.subplots(1, len(inits), figsize=(5.2 * len(inits) + 1.4, 5.4), sharex=True, sharey=True,
                             squeeze=False)
    cm, norm = banded_colours()
    edges = _edges(depths)
    di = {d: j for j, d in enumerate(depths)}
    w = np.asarray(widths)
    mesh = None
    for ax, init in zip(axes[0], inits):
        p = np.full((len(widths), len(depths)), np.nan)
        grid = born_dead.get(init)
        for c in panels[init]["cells"]:
            if c["width"] in widths and c["depth"] in di and c["p"] is not None:
                p[list(widths).index(c["width"]), di[c["depth"]]] = c["p"]
        mesh = ax.pcolormesh(np.append(w - 0.5, w[-1] + 0.5), edges, p.T, cmap=cm, norm=norm, shading="flat")
        # untrained cells that born dead alone shows unsafe at the largest threshold
        top = max(thresholds)
        for b in panels[init]["boundaries"]:
            if b["threshold"] == top and b["unsafe_by"] == "born_dead" and b["unsafe_from_depth"]:
                i = list(widths).index(b["width"])
                for j, d in enumerate(depths):
                    if d >= b["unsafe_from_depth"] and np.isnan(p[i, j]):
                        ax.add_patch(Rectangle((w[i] - 0.5, edges[j]), 1, edges[j + 1] - edges[j], fill=False,
                                               hatch="////", edgecolor="0.65", lw=0))
        for c in panels[init]["cells"]:
            if c["p"] is None or c["width"] not in widths:
                continue
            i, j = list(widths).index(c["width"]), di[c["depth"]]
            y = np.sqrt(edges[j] * edges[j + 1])
            light = norm(c["p"]) < 4
            ax.text(w[i], y, f"{100 * c['p']:.0f}", ha="center", va="center", fontsize=5.5,
                    color="white" if light else "black")
            if c.get("undetermined"):
                ax.add_patch(Rectangle((w[i] - 0.46, edges[j] * 1.01), 0.92, edges[j + 1] * 0.99 - edges[j] * 1.01,
                                       fill=False, edgecolor="magenta", lw=1.2))
        for t in sorted(thresholds):
            bs = {b["width"]: b for b in panels[init]["boundaries"] if b["threshold"] == t}
            ys = []
            for x in widths:
                b = bs.get(x)
                s = b["safe_up_to_depth"] if b else 0
                ys.append(edges[di[s] + 1] if s in di else edges[0])
            ax.step(w, ys, where="mid", color="tab:red", ls=_style(t), lw=1.8)
            if grid is not None:
                ys = [min(max(b.largest_safe, 0) + 0.5, edges[-1]) if b.largest_safe else edges[0]
                      for b in grid.boundaries(t) if int(b.width) in widths]
                ax.step([int(x) for x in grid.widths if int(x) in widths], ys, where="mid", color="k",
                        ls=_style(t), lw=1.0)
        _depth_axis(ax, depths, edges)
        ax.set_xlim(w[0] - 0.5, w[-1] + 0.5)
        ax.set_xticks(w)
        ax.set_xlabel(WIDTH_LABEL)
        ax.set_title(INIT_NAMES.get(init, init), fontsize=10)
    axes[0][0].set_ylabel(DEPTH_LABEL)
    cb = fig.colorbar(mesh, ax=list(axes[0]), pad=0.02, ticks=BANDS, fraction=0.03)
    cb.set_ticklabels([f"{100 * b:g}%" for b in BANDS])
    cb.set_label("P(collapse after training), banded")
    handles = []
    for t in sorted(thresholds):
        handles.append(plt.Line2D([], [], color="tab:red", ls=_style(t), lw=1.8,
                                  label=f"trained boundary p < {100 * t:g}% (top of last safe cell)"))
        handles.append(plt.Line2D([], [], color="k", ls=_style(t), lw=1.0,
                                  label=f"born-dead boundary p < {100 * t:g}%"))
    handles.append(Rectangle((0, 0), 1, 1, fill=False, edgecolor="magenta", lw=1.2,
                             label="undetermined (interval straddles a threshold)"))
    handles.append(Rectangle((0, 0), 1, 1, fill=False, hatch="////", edgecolor="0.65",
                             label=f"not trained: born dead > {100 * max(thresholds):g}% (unsafe)"))
    handles.append(Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="0.5",
                             label="blank: not needed (P(collapse) grows with depth)"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False, bbox_to_anchor=(0.45, -0.02))
    fig.suptitle("Collapse after training: P(collapse) per cell (number = %), 95 % Wilson intervals", fontsize=11)
    fig.text(0.45, 0.9, textwrap.fill(subtitle, 150), ha="center", fontsize=7.5)
    fig.subplots_adjust(bottom=0.25, top=0.84, left=0.07, right=0.86, wspace=0.06)
    return _save(fig, base)


def probability_vs_depth(born_dead: dict, trained: dict, base: str, widths: Sequence[int],
                         subtitle: str) -> list[str]:
    """One panel per initialization: P(born dead) against depth for every width (line, 95 % band, the width's
    colour and marker, labelled at its right end), the single-input theory for symmetric inits (thin dotted),
    and the trained cells of that width (P(collapse), open markers of the same colour and marker with 95 %
    error bars)."""
    inits = list(born_dead)
    fig, axes = plt.subplots(1, len(inits), figsize=(6.0 * len(inits), 5.0), sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, init in zip(axes[0], inits):
        grid: Grid = born_dead[init]
        p = grid.p
        lo, hi = grid.intervals()
        for n, wd in enumerate(widths):
            if wd not in list(grid.widths):
                continue
            i = list(grid.widths).index(wd)
            colour = cmap(0.85 * n / max(len(widths) - 1, 1))
            mk = MARKERS[n % len(MARKERS)]
            has = grid.n[i] > 0
            d = grid.depths[has]
            ax.plot(d, p[i, has], color=colour, lw=1.2, marker=mk, ms=3.5,
                    markevery=[k for k, x in enumerate(d) if x in (1, 2, 4, 8, 16, 32, 64)])
            ax.fill_between(d, lo[i, has], hi[i, has], color=colour, alpha=0.18, lw=0)
            if init != "rai":
                ax.plot(d, [p_dead_single_input(wd, int(x)) for x in d], color=colour, lw=0.7, ls=":")
            ax.annotate(f"N={wd}", (d[-1], p[i, has][-1]), xytext=(3, 0), textcoords="offset points",
                        fontsize=6.5, color=colour, va="center")
            pts = [c for c in trained.get(init, {}).get("cells", []) if c["width"] == wd and c["p"] is not None]
            if pts:
                x = np.array([c["depth"] for c in pts]) * (1 + 0.03 * (n - len(widths) / 2) / len(widths))
                y = np.array([c["p"] for c in pts])
                ax.errorbar(x, y, yerr=[y - np.array([c["ci_low"] for c in pts]),
                                        np.array([c["ci_high"] for c in pts]) - y],
                            fmt=mk, mfc="white", mec=colour, ecolor=colour, ms=5, capsize=1.5, lw=0.8)
        ax.set_xscale("log")
        ticks = [1, 2, 3, 4, 6, 9, 12, 16, 24, 32, 48, 64]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(0.9, 64 * 1.45)
        ax.set_xlabel(DEPTH_LABEL)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(INIT_NAMES.get(init, init), fontsize=10)
    axes[0][0].set_ylabel("probability")
    handles = [plt.Line2D([], [], color="0.3", lw=1.2, label="born dead at initialization (line, 95 % band)"),
               plt.Line2D([], [], color="0.3", marker="o", mfc="white", ls="none",
                          label="collapsed after training (open marker, 95 % interval), same width colour"),
               plt.Line2D([], [], color="0.3", lw=0.7, ls=":",
                          label=r"theory $1-(1-2^{-N})^{L_h}$ (He: upper bound on born dead)")]
    handles += [plt.Line2D([], [], color=cmap(0.85 * n / max(len(widths) - 1, 1)), marker=MARKERS[n % len(MARKERS)],
                           ms=4, lw=1.2, label=f"N={wd}") for n, wd in enumerate(widths)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.865, 0.5), fontsize=7, frameon=False)
    fig.suptitle("Born dead and collapsed after training against depth, all widths", fontsize=11)
    fig.text(0.45, 0.9, textwrap.fill(subtitle, 150), ha="center", fontsize=7.5)
    fig.subplots_adjust(top=0.84, left=0.06, right=0.86, wspace=0.05, bottom=0.1)
    return _save(fig, base)
