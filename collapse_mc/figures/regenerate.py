"""Regenerate every figure a results store supports, computing nothing (``collapse-mc figures``).

* each born-dead family (cells differing only in width and depth) with 2+ widths: the safe-region diagram
  and probability against depth (``safe_region[_<tag>]``, ``p_vs_depth[_<tag>]``); trained cells that match
  the family's initialization are drawn on the latter as "collapsed after training";
* cells that differ only in initialization: side by side (``init_comparison_born_dead``,
  ``init_comparison_trained``);
* trained cells: the constants collapsed networks output against the target mean (MSE) and median (L1)
  (``collapse_constants_<target>``);
* stored example fits (``Store.artifacts('example_fit')``): ``example_fits_<name>``.

File names are built from names and settings stored in the store, which may come from anyone: every stem goes
through ``figure_path``, which keeps it a plain file name inside ``out`` (no separators, no '..', no control
characters, no symbolic link followed), so nothing is ever written outside ``out``.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from ..analysis.from_store import born_dead_families, profile_grid
from ..config import ConfigError
from ..store import RESULT_KEYS
from . import plots

_CELL_KEYS = ("width", "depth", "layers") + RESULT_KEYS


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


class UnsafeFigurePath(ConfigError):
    """A figure file would land outside its output folder (or on a symbolic link)."""


def figure_path(out: str, stem: str) -> str:
    """``out/<stem>`` with ``stem`` made a safe, plain file name (at most 150 characters, no path separators,
    no leading dots); raises ``UnsafeFigurePath`` if the result would still leave ``out`` or is a symbolic link
    (for either of the .png/.pdf files drawn from it)."""
    clean = _UNSAFE.sub("-", str(stem)).lstrip(".-")[:150] or "figure"
    base = os.path.join(out, clean)
    root = os.path.realpath(out)
    for ext in (".png", ".pdf"):
        path = base + ext
        if os.path.islink(path) or os.path.dirname(os.path.realpath(path)) != root:
            raise UnsafeFigurePath(f"refusing to write {path!r}: it would leave the output folder {out!r}")
    return base


def _tag(settings: dict, default: dict) -> str:
    parts = [f"{k}-{v}" for k, v in sorted(settings.items())
             if k not in _CELL_KEYS and k != "seed" and default.get(k, object()) != v]
    return "_".join(str(p).replace("/", "-").replace(" ", "") for p in parts)


def _without(r: dict, drop: tuple) -> str:
    return json.dumps({k: v for k, v in sorted(r.items()) if k not in _CELL_KEYS + drop}, sort_keys=True,
                      default=str)


def regenerate(store, out: str, thresholds=(0.01, 0.10, 0.50)) -> list[str]:
    """Draw everything ``store`` supports into ``out``; returns the files written."""
    files: list[str] = []
    trained = [r for r in store.cell_estimates(kind="trained") if r["trials"]]
    families = born_dead_families(store)
    reference = None
    for cells in families.values():
        if cells[0].get("weights", cells[0].get("init")) == "he_normal" and cells[0].get("bias") == "zeros":
            reference = cells[0]
            break
    for cells in families.values():
        widths = {int(c["width"]) for c in cells}
        if len(widths) < 2:
            continue
        tag = _tag(cells[0], reference or {})
        suffix = f"_{tag}" if tag else ""
        grid = profile_grid(store, cells)
        init = cells[0].get("init")
        spots = [{**r, "p_collapse": r["p"]} for r in trained
                 if r.get("init") == init and int(r["width"]) in widths and r.get("target") == "abs"]
        c = cells[0]  # the single-input theory bounds ReLU, symmetric weights, zero biases, plain layers only
        theory = (init != "rai" and c.get("bias") == "zeros" and c.get("activation", "relu") == "relu"
                  and not c.get("residual"))
        files += plots.safe_region(grid, figure_path(out, f"safe_region{suffix}"), thresholds,
                                   title=f"Safe region: P(born dead), {init}", theory=theory)
        files += plots.probability_vs_depth(grid, figure_path(out, f"p_vs_depth{suffix}"),
                                            widths=[int(w) for w in grid.widths][:10], trained=spots,
                                            title=f"Born dead at initialization, {init}", theory=theory)
    files += _init_comparisons(store, out)
    files += _collapse_constants(store, trained, out)
    files += example_fit_figures(store, out)
    return files


def _init_comparisons(store, out) -> list[str]:
    files = []
    for kind in ("born_dead", "trained"):
        rows = [r for r in store.cell_estimates(kind=kind) if r["trials"]]
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(_without(r, ("init", "weights")), []).append(r)
        records = []
        for g in groups.values():
            if len({r.get("init") for r in g}) < 2:
                continue
            for r in g:
                label = f"N={r['width']} L_h={r['depth']}"
                if kind == "trained":
                    label += f"\n{r.get('target')} {r.get('loss', '').upper()}"
                records.append({"label": label, "init": r.get("init"), "p": r["p"], "ci_low": r["ci_low"],
                                "ci_high": r["ci_high"]})
        if records:
            what = "P(born dead)" if kind == "born_dead" else "P(collapse after training)"
            files += plots.init_comparison(records, figure_path(out, f"init_comparison_{kind}"),
                                           title=f"{what} by initialization (95 % intervals)")
    return files


def _collapse_constants(store, trained, out) -> list[str]:
    try:
        from ..training.targets import BUILTIN, target_stats
    except ImportError:
        return []
    files = []
    by_target: dict[str, dict[str, list]] = {}
    for r in trained:
        tgt = r.get("target")
        if tgt not in BUILTIN or not r.get("collapsed") or r.get("target_scale") is not None \
                or r.get("normalize_target"):
            continue
        vals = store.outcomes(r["cell_hash"]).get("collapse_value")
        if vals is None:
            continue
        by_target.setdefault(tgt, {}).setdefault(r.get("loss", "mse"), []).append(np.asarray(vals)[:, 0])
    for tgt, per_loss in by_target.items():
        half = 3 ** 0.5
        stats = target_stats(tgt, half)
        values = {loss: np.concatenate(v) for loss, v in sorted(per_loss.items(), reverse=True)}
        ref = {loss: (stats.mean[0] if loss == "mse" else stats.median[0]) for loss in values}
        band = {"l1": (stats.median_low[0], stats.median_high[0])}
        files += plots.collapse_constants(values, ref, figure_path(out, f"collapse_constants_{tgt}"),
                                          title=f"Collapse constants, target {tgt} (output 1)", bands=band)
    return files


def example_fit_figures(store, out) -> list[str]:
    """One example-fits figure per stored ``example_fit`` artifact."""
    getter = getattr(store, "artifacts", None)
    if getter is None:
        return []
    files = []
    for name, data in getter("example_fit"):
        base = figure_path(out, f"example_fits_{name}")
        try:
            x, target = np.asarray(data["x"], float), np.asarray(data["target"], float)
            fits = [(str(lab), np.asarray(y, float)) for lab, y in data["fits"]]
            title = data.get("title")
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"the stored example fit {name!r} is malformed") from None
        files += plots.example_fits(x, target, fits, base, title=None if title is None else str(title))
    return files
