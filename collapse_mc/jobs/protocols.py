"""Paper 2's He-vs-RAI comparison under several training protocols (the paper states neither its optimizer
nor its collapse test, so the honest report is a table over protocols, not one number).

Each experiment is one network and target (``EXPERIMENTS``); each protocol (``PROTOCOLS``) changes the
training and, for RAI only, which layers use RAI. Every (protocol, init) cell trains ``trials`` networks
(global trials ``0 .. trials-1`` under ``seed``; the ``default`` protocol's cells are exactly those of the
shipped spec of the same name, so its numbers equal the sweep's) with dead networks stopped at death
(``after_death="stop"``: P(collapse), P(dead after training) and P(born dead) are exactly those of training
every network to the end). Each finished cell's summary is saved to a JSON file at once, so a killed run
resumes cell by cell.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable

from ..config import InitConfig, NetworkConfig
from ..training import TrainCell, TrainConfig, summarize_training, train_outcomes

INITS = ("he_normal", "rai")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A training protocol: ``train`` overrides of ``TrainConfig``, ``rai_layers`` for RAI cells."""

    name: str
    description: str
    train: tuple = ()             # ((field, value), ...)
    rai_layers: str = "hidden"


PROTOCOLS = (
    Protocol("default", "Adam 1e-3, 5000 steps, minibatch 64 (the estimate defaults); RAI in hidden layers"),
    Protocol("rai_all", "default, RAI in every layer including the output", rai_layers="all"),
    Protocol("sgd", "plain SGD lr 1e-2, 20,000 steps, minibatch 64",
             train=(("optimizer", "sgd"), ("lr", 1e-2), ("steps", 20000))),
    Protocol("sgd_rai_all", "plain SGD lr 1e-2, 20,000 steps; RAI in every layer",
             train=(("optimizer", "sgd"), ("lr", 1e-2), ("steps", 20000)), rai_layers="all"),
    Protocol("domain_sqrt7", "default on the domain [-sqrt 7, sqrt 7]", train=(("half_width", math.sqrt(7.0)),)),
    Protocol("normalized", "default with the target normalized (mean 0, standard deviation 1)",
             train=(("normalize_target", True),)),
)
QUICK_PROTOCOLS = ("default", "sgd_rai_all")
QUICK_STEPS = 200


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One network and target of paper 2 with the paper's He / RAI collapse percentages."""

    name: str
    network: NetworkConfig
    target: str
    paper: tuple                  # ((init, fraction), ...)
    seed: int = 1903              # as the shipped spec of the same name


EXPERIMENTS = {
    "paper2_he_vs_rai_1d": Experiment("paper2_he_vs_rai_1d", NetworkConfig(2, 9), "abs",
                                      (("he_normal", 0.919), ("rai", 0.292))),
    "paper2_he_vs_rai_f4": Experiment("paper2_he_vs_rai_f4", NetworkConfig(4, 9, d_in=2, d_out=2), "f4",
                                      (("he_normal", 0.768), ("rai", 0.096))),
}


def protocol_cell(exp: Experiment, protocol: Protocol, init: str, quick: bool = False) -> TrainCell:
    """The cell of one (protocol, init); ``quick`` caps the steps at ``QUICK_STEPS``."""
    train = {"target": exp.target, **dict(protocol.train)}
    if quick:
        train["steps"] = min(train.get("steps", QUICK_STEPS), QUICK_STEPS)
    init_config = InitConfig(init, rai_layers=protocol.rai_layers) if init == "rai" else InitConfig(init)
    return TrainCell(exp.network, init_config, TrainConfig(**train))


def run_protocols(name: str, trials: int, results_path: str, quick: bool = False,
                  progress_factory: Callable | None = None) -> list[dict]:
    """Run (or resume from ``results_path``) every (protocol, init) cell of experiment ``name``; returns one
    row per cell with the protocol, the paper's number and the cell's summary."""
    exp = EXPERIMENTS[name]
    protocols = [p for p in PROTOCOLS if not quick or p.name in QUICK_PROTOCOLS]
    done = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            done = {r["key"]: r for r in json.load(f)["rows"]}
    rows = []
    for protocol in protocols:
        for init in INITS:
            if init != "rai" and protocol.rai_layers != "hidden":
                continue  # RAI placement does not apply to He: the same cell as the protocol without it
            cell = protocol_cell(exp, protocol, init, quick)
            key = f"{protocol.name}/{init}/{cell.cell}/{trials}/{exp.seed}"
            if key not in done:
                label = f"{name} {protocol.name} {init}"
                if progress_factory is None:
                    out = train_outcomes(cell, 0, trials, exp.seed, after_death="stop")
                else:
                    with progress_factory(trials, label) as bar:
                        out = train_outcomes(cell, 0, trials, exp.seed, after_death="stop", progress=bar)
                rec = summarize_training(cell, out)
                done[key] = {"key": key, "protocol": protocol.name, "description": protocol.description,
                             "init": init, "rai_layers": protocol.rai_layers if init == "rai" else None,
                             "paper": dict(exp.paper)[init], **{k: rec[k] for k in SUMMARY_KEYS}}
                _save(results_path, name, list(done.values()))
            rows.append(done[key])
    return rows


SUMMARY_KEYS = ("width", "depth", "layers", "target", "optimizer", "lr", "steps", "half_width", "normalize_target",
                "trials", "decided", "born_dead", "dead_after_training", "collapsed", "diverged",
                "p_born_dead", "p_born_dead_ci_low", "p_born_dead_ci_high",
                "p_dead_after_training", "p_dead_after_training_ci_low", "p_dead_after_training_ci_high",
                "p_collapse", "p_collapse_ci_low", "p_collapse_ci_high", "p_near_flat_at_init")


def _save(path: str, name: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"experiment": name, "rows": rows}, f, indent=1)
    os.replace(tmp, path)  # atomic: a kill leaves the previous file or the new one


def _pct(p, lo, hi) -> str:
    return "-" if p is None else f"{100 * p:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown_table(rows: list[dict]) -> str:
    """The README table: per protocol and init, P(born dead), P(dead after training), P(collapse) (%, 95 %
    Wilson intervals) and the paper's number."""
    lines = ["| protocol | init | P(born dead) % | P(dead after training) % | P(collapse) % | paper % |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        init = r["init"] + (" (all layers)" if r.get("rai_layers") == "all" else "")
        lines.append(f"| {r['protocol']}: {r['description']} | {init} | "
                     f"{_pct(r['p_born_dead'], r['p_born_dead_ci_low'], r['p_born_dead_ci_high'])} | "
                     f"{_pct(r['p_dead_after_training'], r['p_dead_after_training_ci_low'], r['p_dead_after_training_ci_high'])} | "
                     f"{_pct(r['p_collapse'], r['p_collapse_ci_low'], r['p_collapse_ci_high'])} | {100 * r['paper']:.1f} |")
    return "\n".join(lines)


def figure(rows: list[dict], path: str, title: str) -> list[str]:
    """Bars of P(dead after training) (solid) and P(collapse) (hatched) per protocol and init, with 95 %
    intervals and the paper's numbers as dashed lines; returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 4.2))
    colors = {"he_normal": "#444444", "rai": "#2a7ab0"}
    for i, r in enumerate(rows):
        for j, (what, hatch) in enumerate((("p_dead_after_training", None), ("p_collapse", "//"))):
            p, lo, hi = r[what], r[f"{what}_ci_low"], r[f"{what}_ci_high"]
            if p is None:
                continue
            x = i + (j - 0.5) * 0.38
            ax.bar(x, 100 * p, 0.36, color=colors[r["init"]] if hatch is None else "white",
                   edgecolor=colors[r["init"]], hatch=hatch)
            ax.errorbar(x, 100 * p, yerr=[[100 * (p - lo)], [100 * (hi - p)]], color="black", capsize=2, lw=0.8)
    for init, c in colors.items():
        paper = {r["init"]: r["paper"] for r in rows}.get(init)
        if paper is not None:
            ax.axhline(100 * paper, color=c, ls="--", lw=1)
    labels = [f"{r['protocol'].replace('_', ' ')}\n{'He' if r['init'] == 'he_normal' else 'RAI'}"
              .replace("sgd rai all", "SGD +\nRAI all").replace("rai all", "RAI all").replace("domain sqrt7", "[-√7, √7]")
              .replace("sgd", "SGD") for r in rows]
    ax.set_xticks(np.arange(len(rows)), labels, fontsize=8)
    ax.set_ylabel("probability (%)")
    ax.set_ylim(0, 100)
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D
    handles = [Patch(color="#777777", label="P(dead after training)"),
               Patch(facecolor="white", edgecolor="#777777", hatch="//", label="P(collapse): flat or dead"),
               Line2D([], [], color=colors["he_normal"], ls="--", label="paper 2, He"),
               Line2D([], [], color=colors["rai"], ls="--", label="paper 2, RAI")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files = [path + ".png"]
    fig.savefig(files[0], dpi=150, metadata={"Software": None})
    plt.close(fig)
    return files


def main(name: str, argv: list[str]) -> int:
    """``scripts/<name>.py --protocols [--quick] [--trials N] [--results PATH] [--out DIR] [--json]``."""
    import argparse
    import sys

    os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))
    from ..cache import enable_compilation_cache
    enable_compilation_cache()
    ap = argparse.ArgumentParser(prog=f"{name}.py --protocols",
                                 description=f"{name}: He vs RAI under several training protocols (see "
                                             "collapse_mc/jobs/protocols.py); resumable, one JSON row per cell.")
    ap.add_argument("--protocols", action="store_true", help="(selects this mode)")
    ap.add_argument("--quick", action="store_true",
                    help=f"CI size: protocols {', '.join(QUICK_PROTOCOLS)}, {QUICK_STEPS} steps, 32 networks")
    ap.add_argument("--trials", type=int, default=None, help="networks per cell (default 1000; quick 32)")
    ap.add_argument("--results", default=None, help="JSON results (default results/<name>_protocols[_quick].json)")
    ap.add_argument("--out", default=None, help="figure folder (default figures/<name>[_quick])")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    trials = args.trials if args.trials is not None else (32 if args.quick else 1000)
    if not 1 <= trials <= 1_000_000:
        print(f"{name}.py: error: --trials must be in 1 .. 1000000, got {trials}", file=sys.stderr)
        return 2
    suffix = "_quick" if args.quick else ""
    results = args.results or os.path.join("results", f"{name}_protocols{suffix}.json")
    out = args.out or os.path.join("figures", name + suffix)
    from ..progress import Progress
    rows = run_protocols(name, trials, results, args.quick,
                         progress_factory=lambda n, label: Progress(n, label))
    exp = EXPERIMENTS[name]
    n = exp.network
    files = figure(rows, os.path.join(out, "protocols"),
                   f"{name}: width {n.width}, {n.depth} hidden layers ({n.layers} layers), target {exp.target}, "
                   f"{trials} networks per bar; dashed: paper 2")
    if args.json:
        json.dump({"experiment": name, "rows": rows, "files": files}, sys.stdout)
        print()
    else:
        print(markdown_table(rows))
        print("figures: " + ", ".join(files))
    return 0
