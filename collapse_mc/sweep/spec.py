"""Sweep specifications: TOML -> a validated ``SweepSpec`` with its expanded cells.

Format (every table but ``[sweep]`` optional)::

    [sweep]
    kind = "born_dead"        # or "trained" (training settings in [train])
    trials = 4000             # trials per cell: global trial indices 0 .. trials-1
    seed = 5                  # root seed, 0 <= seed < 2^32 (default 0)
    block_size = 1000         # trials per stored block (default min(1000, trials)); block k = [kB, (k+1)B)
    # chunk_size = 4096       # trials per compiled chunk (memory only; never changes outcomes)
    # method = "auto"         # born_dead: auto | gaussian | dense
    # name = "..."; description = "..."
    [grid]                    # every combination of these lists is a cell
    width = [2, 3, 4, 5]
    depth = [3, 9, 20]        # hidden layers L_h; or layers = [...] with layers = depth + 1
    init = ["he_normal", "rai"]
    [network]                 # fixed NetworkConfig settings: d_in, d_out, activation, residual, ...
    [init]                    # fixed InitConfig settings: weights (alias init), bias, bias_value, ...
    [probe]                   # born_dead only: half_width, grid_points, sample_points
    [train]                   # trained only: TrainConfig settings (target, loss, optimizer, lr, ...)
    # optimizer = "adamw"             # any optax alias by name; its other keyword arguments are keys here
    # weight_decay = 1e-4             # (and may be [grid] axes); floats among them share one compilation
    # model = "package.module:Name"   # trained only, in [network]: a user's Flax model (nets.user_model)
    # data = "points.npz"             # trained only, in [train]: a data set (training.data; path relative
    #                                 # to the spec file) instead of the uniform domain's target

Grid keys are any setting of those tables (by its name; ``init`` is ``weights``; ``method`` too for born-dead
sweeps). Everything is checked here, before any computation: unknown tables or keys, wrong types, invalid
values (each cell's configuration is constructed), empty or repeated grid values. Errors are ``SpecError``
(a ``ConfigError``: one line, exit status 2 in the CLI).
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from ..config import (MAX_BLOCKS_PER_CELL, MAX_CELLS, MAX_SEED, MAX_TRIALS, MAX_WORK, ConfigError, InitConfig,
                      NetworkConfig, ProbeConfig, born_dead_cost, check_born_dead, check_cost, config_hash, to_dict)

KINDS = ("born_dead", "trained")
TABLES = ("sweep", "grid", "network", "init", "probe", "train")
SWEEP_KEYS = ("kind", "trials", "seed", "block_size", "chunk_size", "method", "name", "description")
DEFAULT_BLOCK_SIZE = 1000
# a [train] or [grid] key of a trained sweep that is no TrainConfig setting is an option of the optimizer
# (``weight_decay = 1e-4`` for ``optimizer = "adamw"``), kept under this prefix until the cell is built
OPTION_PREFIX, OPTION_TYPE = "opt:", "int | float | bool | str"


class SpecError(ConfigError):
    """A sweep specification is invalid (one line)."""


@dataclasses.dataclass(frozen=True)
class SweepCell:
    """One expanded cell: the estimator's cell object (``BornDeadCell`` or ``TrainCell``) and its identity.

    ``settings``: flat named settings (``width``, ``depth`` = hidden layers, ``layers`` = depth + 1, ``init``,
    ..., ``seed``). ``cell_hash``: the store key, hash of (kind, cell.identity(), seed). ``group``: cells with
    the same group share compiled programs and run one after another.
    """

    kind: str
    cell: Any
    seed: int
    cell_hash: str
    settings: dict
    group: str
    config: dict

    def label(self) -> str:
        s = self.settings
        text = f"N={s['width']} L_h={s['depth']} {s['init']}"
        return text


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep. ``cells`` are in grid order (first grid key varies slowest), duplicates removed."""

    kind: str
    trials: int
    seed: int
    block_size: int
    chunk_size: int | None
    method: str
    name: str
    description: str
    grid: tuple
    fixed: tuple
    cells: tuple = dataclasses.field(default=(), compare=False, repr=False)
    source: str | None = dataclasses.field(default=None, compare=False, repr=False)
    origin: str = dataclasses.field(default="spec", compare=False, repr=False)

    @property
    def sweep_hash(self) -> str:
        """The sweep's identity: its kind and its set of cells (not trials or block size)."""
        return config_hash({"kind": self.kind, "cells": [c.cell_hash for c in self.cells]})

    def to_dict(self) -> dict:
        return {"kind": self.kind, "trials": self.trials, "seed": self.seed, "block_size": self.block_size,
                "chunk_size": self.chunk_size, "method": self.method, "name": self.name,
                "description": self.description, "grid": {k: list(v) for k, v in self.grid},
                "fixed": dict(self.fixed)}

    def with_trials(self, trials: int) -> "SweepSpec":
        """The same sweep with ``trials`` per cell (checked against the limits like a spec's own)."""
        trials = _int(trials, "trials", 1, MAX_TRIALS)
        spec = dataclasses.replace(self, trials=trials, block_size=min(self.block_size, trials))
        check_size(spec)
        return spec

    def with_chunk_size(self, chunk_size: int | None) -> "SweepSpec":
        """The same sweep with ``chunk_size`` (None: the spec's own), checked against the memory limit."""
        if chunk_size is None:
            return self
        spec = dataclasses.replace(self, chunk_size=_int(chunk_size, "chunk_size", 1, MAX_TRIALS))
        check_size(spec)
        return spec

    def groups(self) -> list[list[SweepCell]]:
        """Cells grouped by compiled shapes, groups in order of first appearance."""
        out: dict[str, list] = {}
        for c in self.cells:
            out.setdefault(c.group, []).append(c)
        return list(out.values())


# ----------------------------------------------------------------------------------------------- settings

def _fields(cls) -> dict:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _training():
    try:
        from .. import training
        training.TrainConfig, training.TrainCell, training.train_outcomes  # noqa: B018
        return training
    except (ImportError, AttributeError):
        raise SpecError("kind 'trained' needs collapse_mc.training (TrainConfig, TrainCell, train_outcomes), "
                        "which is not available in this installation") from None


def settings_for(kind: str) -> dict[str, tuple[str, str, str]]:
    """Setting name -> (section, field, type annotation) for a sweep ``kind``."""
    reg: dict[str, tuple[str, str, str]] = {}
    for name, ann in _fields(NetworkConfig).items():
        reg[name] = ("network", name, str(ann))
    reg["layers"] = ("network", "layers", "int")
    for name, ann in _fields(InitConfig).items():
        reg[name] = ("init", name, str(ann))
    reg["init"] = ("init", "weights", "str")
    if kind == "born_dead":
        for name, ann in _fields(ProbeConfig).items():
            reg.setdefault(name, ("probe", name, str(ann)))
        reg["method"] = ("sweep", "method", "str")
    else:
        for name, ann in _fields(_training().TrainConfig).items():
            reg.setdefault(name, ("train", name, str(ann)))
        reg.pop("optimizer_options")  # given as the optimizer's own keys (see OPTION_PREFIX)
        reg["model"] = ("network", "model", "str")
        reg["data"] = ("train", "data", "str")
    return reg


def _split_union(ann: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in ann.replace("Optional[", "None | ("):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


def _tupleize(v):
    return tuple(_tupleize(x) for x in v) if isinstance(v, list) else v


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def coerce(value, ann: str, where: str):
    """Check a TOML value against a dataclass field annotation (as text) and convert it."""
    opts = _split_union(ann.replace('"', "").replace("'", ""))
    if "None" in opts and isinstance(value, str) and value.lower() == "none":
        return None  # TOML has no null: "none" selects the default None of an optional setting
    for o in opts:
        if o == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if o == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise SpecError(f"{where} must be finite, got {value!r}")
            return float(value)
        if o == "bool" and isinstance(value, bool):
            return value
        if o == "str" and isinstance(value, str):
            return value
        if (o.startswith(("tuple", "list", "Sequence", "(")) or o == "Any") and isinstance(value, list):
            return _tupleize(value)
    known = [o for o in opts if o in _TYPE_WORDS]
    if not known and not any(o.startswith(("tuple", "list", "Sequence", "(")) for o in opts):
        if isinstance(value, dict):
            raise SpecError(f"{where}: a table is not allowed here")
        return _tupleize(value)
    words = " or ".join(_TYPE_WORDS.get(o, "a list") for o in opts if o != "None")
    shown = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    raise SpecError(f"{where} must be {words}, got {shown}")


# ----------------------------------------------------------------------------------------------- parsing

def load_spec(path_or_name) -> SweepSpec:
    """Read and validate a TOML spec from a file, or a spec shipped with the package by name
    (``'paper2_born_dead'`` or ``'paper2_born_dead.toml'``, see ``packaged_specs``)."""
    p = Path(path_or_name)
    if not p.is_file():
        name = p.name if p.name.endswith(".toml") else p.name + ".toml"
        shipped = packaged_specs()
        if str(path_or_name) in (name, name[:-5]) and name in shipped:
            return parse_spec_text(shipped[name].read_text(), origin=name)
        if p.exists():
            raise SpecError(f"{p} is not a file")
        raise SpecError(f"no such spec file: {p} (shipped specs: {', '.join(sorted(shipped))})")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec {p}: {e}") from None
    return parse_spec_text(text, origin=str(p), base_dir=p.parent)


def packaged_specs() -> dict:
    """Name -> resource of the example specs shipped in ``collapse_mc/specs``."""
    root = importlib.resources.files("collapse_mc") / "specs"
    try:
        return {r.name: r for r in root.iterdir() if r.name.endswith(".toml")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def parse_spec_text(text: str, origin: str = "spec", base_dir: str | Path | None = None) -> SweepSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{origin}: invalid TOML: {e}") from None
    return parse_spec(data, source=text, origin=origin, base_dir=base_dir)


def _option_key(reg: dict, key: str) -> str:
    """Register ``key`` as an optimizer option (checked when the cell's optimizer is known); its prefixed name."""
    reg[OPTION_PREFIX + key] = ("train", key, OPTION_TYPE)
    return OPTION_PREFIX + key


def _int(value, where: str, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(f"{where} must be an integer, got {json.dumps(value, default=str)}")
    if value < minimum or (maximum is not None and value > maximum):
        rng = f">= {minimum}" if maximum is None else f"in {minimum} .. {maximum}"
        raise SpecError(f"{where} must be {rng}, got {value}")
    return value


def parse_spec(data: dict, source: str | None = None, origin: str = "spec",
               base_dir: str | Path | None = None) -> SweepSpec:
    """Validate a spec given as a dict (parsed TOML) and expand its cells. ``base_dir``: where a relative
    ``data`` path is found (the spec file's folder; default the working directory)."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: a spec is a TOML document with a [sweep] table")
    for t, v in data.items():
        if t not in TABLES:
            raise SpecError(f"{origin}: unknown table or key {t!r}; allowed tables: "
                            + ", ".join(f"[{x}]" for x in TABLES))
        if not isinstance(v, dict):
            raise SpecError(f"{origin}: {t!r} must be a table ([{t}])")
    sw = data.get("sweep")
    if sw is None:
        raise SpecError(f"{origin}: missing [sweep] table (kind, trials, seed)")
    for k in sw:
        if k not in SWEEP_KEYS:
            raise SpecError(f"{origin}: unknown key {k!r} in [sweep]; allowed: {', '.join(SWEEP_KEYS)}")
    kind = sw.get("kind")
    if kind is None:
        raise SpecError(f"{origin}: [sweep] needs kind = \"born_dead\" or \"trained\"")
    if kind not in KINDS:
        raise SpecError(f"{origin}: unknown sweep kind {kind!r}; choose born_dead or trained")
    if "trials" not in sw:
        raise SpecError(f"{origin}: [sweep] needs trials (trials per cell)")
    trials = _int(sw["trials"], f"{origin}: sweep.trials", 1, MAX_TRIALS)
    seed = _int(sw.get("seed", 0), f"{origin}: sweep.seed", 0, MAX_SEED)
    block = _int(sw.get("block_size", min(DEFAULT_BLOCK_SIZE, trials)), f"{origin}: sweep.block_size", 1,
                 MAX_TRIALS)
    block = min(block, trials)
    chunk = sw.get("chunk_size")
    chunk = None if chunk is None else _int(chunk, f"{origin}: sweep.chunk_size", 1, MAX_TRIALS)
    for k in ("name", "description"):
        if k in sw and not isinstance(sw[k], str):
            raise SpecError(f"{origin}: sweep.{k} must be a string")
    name = sw.get("name") or Path(origin).stem
    if kind != "born_dead" and "method" in sw:
        raise SpecError(f"{origin}: sweep.method applies to born_dead sweeps only")
    if kind != "born_dead" and "probe" in data:
        raise SpecError(f"{origin}: [probe] applies to born_dead sweeps only (trained sweeps: [train])")
    if kind != "trained" and "train" in data:
        raise SpecError(f"{origin}: [train] applies to trained sweeps only (kind = \"trained\")")

    reg = settings_for(kind)
    fixed: dict[str, Any] = {}
    if "method" in sw:
        fixed["method"] = coerce(sw["method"], "str", f"{origin}: sweep.method")
    for table in ("network", "init", "probe", "train"):
        for k, v in data.get(table, {}).items():
            if k not in reg and table == "train":
                k = _option_key(reg, k)
            if k not in reg:
                raise SpecError(f"{origin}: unknown setting {k!r} in [{table}]")
            if reg[k][0] != table:
                raise SpecError(f"{origin}: setting {k!r} belongs in [{reg[k][0]}], not [{table}]")
            canon = "weights" if k == "init" else k
            if canon in fixed:
                raise SpecError(f"{origin}: setting {k!r} given twice in [{table}]")
            fixed[canon] = coerce(v, reg[k][2], f"{origin}: {table}.{k}")

    grid: list[tuple[str, tuple]] = []
    for k, vals in data.get("grid", {}).items():
        if k not in reg and kind == "trained":
            k = _option_key(reg, k)
        if k not in reg:
            raise SpecError(f"{origin}: unknown grid setting {k!r}; known: {', '.join(sorted(reg))}")
        canon = "weights" if k == "init" else k
        where = f"{origin}: grid.{k}"
        if not isinstance(vals, list):
            raise SpecError(f"{where} must be a list of values (fixed settings go in [{reg[k][0]}])")
        if not vals:
            raise SpecError(f"{where} is empty")
        vals = tuple(coerce(v, reg[k][2], f"{where}[{i}]") for i, v in enumerate(vals))
        if len(set(map(repr, vals))) != len(vals):
            raise SpecError(f"{where} has repeated values")
        if canon in fixed or canon in dict(grid):
            raise SpecError(f"{origin}: setting {k!r} is both in [grid] and fixed (or given twice)")
        grid.append((canon, vals))
    ncells = math.prod(len(v) for _, v in grid)
    if ncells > MAX_CELLS:
        raise SpecError(f"{origin}: the grid has {ncells:,} cells (limit {MAX_CELLS:,})")
    names = [k for k, _ in grid]
    allkeys = set(names) | set(fixed)
    if "depth" in allkeys and "layers" in allkeys:
        raise SpecError(f"{origin}: give depth (hidden layers) or layers (= depth + 1), not both")
    for need in ("width", "depth"):
        if need not in allkeys and not (need == "depth" and "layers" in allkeys):
            raise SpecError(f"{origin}: {need} is not set (give it in [grid] or [network])")

    cells: list[SweepCell] = []
    seen: set[str] = set()
    for combo in itertools.product(*[v for _, v in grid]):
        s = dict(fixed)
        s.update(zip(names, combo))
        what = ", ".join(f"{'init' if k == 'weights' else k.removeprefix(OPTION_PREFIX)}={v}"
                         for k, v in zip(names, combo))
        c = build_cell(kind, s, seed, reg, f"{origin}: cell ({what})" if what else f"{origin}", base_dir)
        if c.cell_hash not in seen:
            seen.add(c.cell_hash)
            cells.append(c)
    spec = SweepSpec(kind=kind, trials=trials, seed=seed, block_size=block, chunk_size=chunk,
                     method=str(fixed.get("method", "auto")), name=name, description=str(sw.get("description", "")),
                     grid=tuple(grid), fixed=tuple(sorted(fixed.items())), cells=tuple(cells), source=source,
                     origin=origin)
    check_size(spec)
    return spec


def check_size(spec: SweepSpec) -> None:
    """Refuse a sweep too large to run correctly (``SpecError`` with the estimate): more than
    ``MAX_BLOCKS_PER_CELL`` blocks per cell, outcomes of one block beyond host memory, or more than
    ``MAX_WORK`` operations in all (see ``config.check_cost``)."""
    blocks = -(-spec.trials // spec.block_size)
    if blocks > MAX_BLOCKS_PER_CELL:
        raise SpecError(f"{spec.origin}: {spec.trials:,} trials in blocks of {spec.block_size:,} make {blocks:,} "
                        f"blocks per cell (limit {MAX_BLOCKS_PER_CELL:,}: one stored record each); raise block_size")
    total = 0.0
    for c in spec.cells:
        cost = _cell_cost(c)
        try:
            check_cost(f"cell ({c.label()})", cost, held=spec.block_size, chunk=spec.chunk_size)
        except ConfigError as e:
            raise SpecError(f"{spec.origin}: {e}") from None
        total += cost.ops * spec.trials
    if total > MAX_WORK:
        raise SpecError(f"{spec.origin}: {len(spec.cells):,} cells x {spec.trials:,} trials need about {total:.1e} "
                        f"floating-point operations (limit {MAX_WORK:.0e}, roughly a day of a whole GPU); lower the "
                        "trials, steps or the grid")


def _cell_cost(c: SweepCell):
    if c.kind == "born_dead":
        return born_dead_cost(c.cell.network, c.cell.init, c.cell.probe, c.cell.resolved_method)
    return c.cell.cost()


def build_cell(kind: str, s: dict, seed: int, reg: dict | None = None, where: str = "cell",
               base_dir: str | Path | None = None) -> SweepCell:
    """Construct (and so validate) one cell from flat settings ``s`` (``weights``, not ``init``)."""
    reg = reg or settings_for(kind)
    parts: dict[str, dict] = {"network": {}, "init": {}, "probe": {}, "train": {}, "sweep": {}}
    options = {}
    for k, v in s.items():
        if k.startswith(OPTION_PREFIX):
            options[k.removeprefix(OPTION_PREFIX)] = v
            continue
        sec, field, _ = reg["init" if k == "weights" else k]
        parts[sec][field] = v
    if options:
        parts["train"]["optimizer_options"] = options
    net = parts["network"]
    if "layers" in net:
        layers = net.pop("layers")
        if layers < 2:
            raise SpecError(f"{where}: layers must be >= 2 (layers = hidden layers + 1), got {layers}")
        net["depth"] = layers - 1
    model_path, data_path = net.pop("model", None), parts["train"].pop("data", None)
    try:
        network = NetworkConfig(**net)
        init = InitConfig(**parts["init"])
        if kind == "born_dead":
            from ..deadness import BornDeadCell
            probe = ProbeConfig(**parts["probe"])
            check_born_dead(network, init, probe)
            cell = BornDeadCell(network, init, probe, parts["sweep"].get("method", "auto"))
            check_cost("one network", born_dead_cost(network, init, probe, cell.resolved_method))
        else:
            tr = _training()
            train = tr.TrainConfig(**parts["train"])
            model = data = None
            if model_path is not None:
                from ..nets.user_model import resolve_model
                model = resolve_model(model_path)
            if data_path is not None:
                from ..training.data import Dataset
                data = Dataset.from_npz(Path(base_dir or ".") / data_path)
            cell = tr.TrainCell(network, init, train, model=model, data=data)
        identity = cell.identity()
    except SpecError:
        raise
    except ConfigError as e:
        raise SpecError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise SpecError(f"{where}: invalid settings ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    cell_hash = config_hash({"kind": kind, "identity": identity, "seed": seed})
    settings = {"kind": kind, "width": network.width, "depth": network.depth, "layers": network.layers}
    nd = to_dict(network)
    settings.update({k: v for k, v in nd.items() if k not in settings})
    idict = to_dict(init)
    settings["init"] = idict.pop("weights")
    settings.update(idict)
    if kind == "born_dead":
        settings["method"] = cell.resolved_method
        if "probe" in identity:
            settings.update(to_dict(cell.probe))
        group = (f"gaussian N={network.width} L_h={network.depth}" if cell.resolved_method == "gaussian"
                 else "dense " + config_hash(identity)[:16])
    else:
        train = cell.train
        tid = train.identity() if hasattr(train, "identity") else to_dict(train)
        options = tid.pop("optimizer_options", {})
        settings.update({k: v for k, v in tid.items() if k not in settings})
        settings.update({(k if k not in settings else f"optimizer.{k}"): v for k, v in options.items()})
        from ..training.optimizers import BUILTIN_VALUES, OPTIMIZERS
        if train.optimizer not in BUILTIN_VALUES:  # an optax alias: record which code ran (its optax version)
            settings["optimizer_hash"] = OPTIMIZERS.identity(train.optimizer)["hash"]
        static = train.static_part() if hasattr(train, "static_part") else tid
        # the training code caches compiled programs on (network, init, static part): cells differing only
        # in traced values (lr, momentum, beta1, beta2, target_scale) share one
        group = "trained " + config_hash({"network": nd, "init": to_dict(init), "train": repr(static),
                                          **{k: identity[k] for k in ("model", "data") if k in identity}})[:16]
        if model_path is not None:
            settings["model"] = model_path
        if data_path is not None:
            settings["data"] = f"{data_path} (sha256 {cell.data.digest[:12]})"
    settings["seed"] = seed
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    return SweepCell(kind=kind, cell=cell, seed=seed, cell_hash=cell_hash, settings=settings, group=group,
                     config={"kind": kind, "identity": identity, "seed": seed})
