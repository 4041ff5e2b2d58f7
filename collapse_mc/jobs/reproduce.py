"""Reproduce one paper experiment: run its shipped sweep spec into a store, then draw its figures.

``collapse-mc reproduce NAME [--quick]`` (``cli/reproduce.py``) runs ``reproduce``; the scripts in ``scripts/``
(one per experiment of SCIENCE.md section 5) are thin wrappers of that command. ``--quick`` keeps the grid
but cuts trials and training steps (``QUICK_TRIALS``, ``QUICK_STEPS``), so CI can run every experiment end to
end in seconds per cell; quick cells differ from the full ones (steps are part of a cell's identity) and do not
mix with them in the store.
"""
from __future__ import annotations

import os
import sys
import tomllib
from typing import Callable

QUICK_TRIALS = {"born_dead": 2000, "trained": 48}
QUICK_STEPS = 300
# quick runs keep each experiment's key comparison but fewer cells (compilation dominates a quick run)
QUICK_GRID = {
    "paper2_born_dead": {"width": [3, 5, 10]},                 # paper 2's three read-outs
    "paper1_targets_losses": {"target": ["abs", "xsin5x"]},    # mean vs median needs x sin(5x); both losses
    "paper2_he_vs_rai_1d": {"depth": [9], "target": ["abs"]},  # He vs RAI on the papers' main setting
    "paper2_he_vs_rai_f4": {"width": [2]},
}


def quick_spec_data(data: dict) -> dict:
    """A copy of a parsed spec with quick trials / steps / block size and (``QUICK_GRID``) a smaller grid."""
    data = {k: dict(v) for k, v in data.items()}
    data["grid"] = {**data.get("grid", {}), **QUICK_GRID.get(data["sweep"].get("name"), {})}
    kind = data["sweep"]["kind"]
    trials = min(int(data["sweep"]["trials"]), QUICK_TRIALS[kind])
    data["sweep"]["trials"] = trials
    data["sweep"]["block_size"] = trials
    data["sweep"]["name"] = data["sweep"].get("name", "spec") + "_quick"
    if kind == "trained":
        data.setdefault("train", {})
        data["train"]["steps"] = min(int(data["train"].get("steps", QUICK_STEPS)), QUICK_STEPS)
    return data


def load(name: str, quick: bool):
    from ..sweep.spec import packaged_specs, parse_spec
    shipped = packaged_specs()
    data = tomllib.loads(shipped[name + ".toml"].read_text())
    if quick:
        data = quick_spec_data(data)
    return parse_spec(data, origin=name + (" (quick)" if quick else ""))


def _example_fits(spec, db, quick):
    from .example_fits import store_example_fits
    return store_example_fits(spec, db, quick)


# experiment name -> what runs after its sweep (None: nothing); each is a shipped spec of the same name
EXPERIMENTS: dict[str, Callable | None] = {
    "paper2_born_dead": None,
    "paper1_abs_collapse": _example_fits,
    "paper1_targets_losses": _example_fits,
    "paper2_he_vs_rai_1d": _example_fits,
    "paper2_he_vs_rai_f4": None,
}


def default_paths(name: str, quick: bool) -> tuple[str, str]:
    """``(results/<name>[_quick].sqlite, figures/<name>[_quick])``."""
    suffix = "_quick" if quick else ""
    return os.path.join("results", f"{name}{suffix}.sqlite"), os.path.join("figures", f"{name}{suffix}")


def reproduce(name: str, quick: bool = False, db: str | None = None, out: str | None = None,
              progress: bool | None = None) -> dict:
    """Run (or resume) experiment ``name`` (a key of ``EXPERIMENTS``) into ``db`` and draw its figures into
    ``out``; returns ``{spec, quick, db, out, results, files, extra}``. Everything is checked before anything
    is written; ``db``'s folder is created when it is the default ``results/``."""
    from ..config import ConfigError
    from ..figures.regenerate import regenerate
    from ..progress import Progress
    from ..store import Store, check_store_path
    from ..sweep import run_sweep

    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    default_db, default_out = default_paths(name, quick)
    spec = load(name, quick)
    if db is None:
        db = default_db
        os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    out = out or default_out
    check_store_path(db, create=True)
    with Progress(1, name, enabled=progress) as bar:
        summary = run_sweep(spec, db, progress=bar)
    after = EXPERIMENTS[name]
    extra = after(spec, db, quick) if after else None
    with Store(db, readonly=True) as store:
        files = regenerate(store, out)
    return {"spec": name, "quick": quick, "db": db, "out": out, "results": summary["results"], "files": files,
            "extra": extra}


def main(name: str, argv: list[str] | None = None, after: Callable | None = None) -> int:
    """Deprecated driver kept for old callers: the same as ``collapse-mc reproduce NAME [options]``."""
    from ..cli import main as cli_main
    return cli_main(["reproduce", name, *(sys.argv[1:] if argv is None else argv)])
