"""Shared CLI pieces: argparse ``type=`` converters, the option groups every command shares, list parsing,
depth/layers options and the one-line error convention.

Every user error raises ``UsageError`` (or ``config.ConfigError``); ``cli.main`` prints ``collapse-mc: error:
<message>`` on one line to stderr and exits with status 2. Converters raise ``argparse.ArgumentTypeError``,
which ``ArgumentParser.error`` turns into a ``UsageError`` ("argument --trials: ..."). The limits are those of
``collapse_mc.config`` (the same for sweep specs) and are listed in the README ("Input limits").
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Callable

from ..config import MAX_CELLS, MAX_SEED, MAX_TRIALS, ConfigError, depth_from_layers

DEPTH_HELP = ("depth = number of HIDDEN layers L_h; the papers' 'L-layer network' counts the output layer, so "
              "--layers L is the same as --depth L-1 (a '10-layer' net is --depth 9)")
MAX_LIST = 100_000   # values in one comma list or range ('1-12')


class UsageError(ConfigError):
    """Bad command-line input (one line, exit status 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but errors become ``UsageError`` (one line, exit status 2) instead of usage dumps."""

    def error(self, message):
        raise UsageError(message.replace("\n", " "))


# ----------------------------------------------------------------------------------------------- converters

def _parse_int(text) -> int:
    """An integer from ``'1000'``, ``'1_000'``, ``'1e6'`` (an exact integer in float notation) or an int."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    t = str(text).strip().replace("_", "")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not math.isfinite(v) or v != int(v):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(v)


def int_in(minimum: int, maximum: int) -> Callable[[str], int]:
    """``type=`` converter: an integer in ``[minimum, maximum]``."""
    def convert(text) -> int:
        v = _parse_int(text)
        if not minimum <= v <= maximum:
            raise argparse.ArgumentTypeError(f"must be in {minimum:,} .. {maximum:,}, got {v:,}")
        return v
    convert.__name__ = "integer"
    return convert


def finite_float(minimum: float = -math.inf, maximum: float = math.inf) -> Callable[[str], float]:
    """``type=`` converter: a finite number in ``[minimum, maximum]``."""
    def convert(text) -> float:
        try:
            v = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if not minimum <= v <= maximum:
            raise argparse.ArgumentTypeError(f"must be in [{minimum:g}, {maximum:g}], got {v:g}")
        return v
    convert.__name__ = "number"
    return convert


def one_of(what: str, options) -> Callable[[str], str]:
    """``type=`` converter: one of ``options`` (the error reads "unknown <what> 'x'; choose one of ...")."""
    options = tuple(options)

    def convert(text) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose one of {', '.join(options)}")
        return text
    convert.__name__ = what
    return convert


TRIALS = int_in(1, MAX_TRIALS)
SEED = int_in(0, MAX_SEED)
CHUNK = int_in(1, MAX_TRIALS)


def probability_list(text) -> tuple[float, ...]:
    """``type=`` converter: comma list of thresholds, each in (0, 1)."""
    try:
        vals = tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"malformed list {text!r} (expected e.g. 0.01,0.1,0.5)") from None
    if not vals or any(not (math.isfinite(v) and 0 < v < 1) for v in vals):
        raise argparse.ArgumentTypeError(f"each value must be in (0, 1), got {text!r}")
    return vals


# ----------------------------------------------------------------------------------------------- option groups

def add_db_option(p: argparse.ArgumentParser, *, writes: bool, default: str = "collapse_mc.sqlite") -> None:
    """``--db``: the results store. ``writes``: whether the command creates / writes it (the help says so)."""
    if writes:
        text = f"the SQLite results store, created if missing (default {default})"
    else:
        text = f"the SQLite results store to read; opened read-only, never created or changed (default {default})"
    p.add_argument("--db", default=default, help=text)


def add_json_option(p: argparse.ArgumentParser, what: str = "print JSON instead of a table") -> None:
    p.add_argument("--json", action="store_true", help=what)


def add_run_options(p: argparse.ArgumentParser, *, trials: int | None, trials_help: str, seed: bool = True) -> None:
    """``--trials``, ``--seed``, ``--chunk-size``, ``--no-progress``: how many trials and how they run."""
    g = p.add_argument_group("run")
    g.add_argument("--trials", type=TRIALS, default=trials, metavar="N",
                   help=f"{trials_help} (1 .. {MAX_TRIALS:,}" + (f"; default {trials:,})" if trials else ")"))
    if seed:
        g.add_argument("--seed", type=SEED, default=0, metavar="S",
                       help="root seed, 0 .. 2^32-1 (trial keys are fold_in(seed, cell, trial); default 0)")
    g.add_argument("--chunk-size", type=CHUNK, default=None, metavar="C",
                   help="trials per compiled chunk (memory only; outcomes never change)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only on a terminal)")


def add_network_options(p: argparse.ArgumentParser) -> None:
    """The bias, RAI-layers, activation and residual options shared by the commands that build networks."""
    from ..config import ACTIVATIONS, BIAS_INITS, DEFAULT_NEGATIVE_SLOPE, RAI_LAYERS

    p.add_argument("--bias", default="zeros", choices=BIAS_INITS, metavar="BIAS",
                   help="bias init: zeros | constant | normal (value from --bias-value)")
    p.add_argument("--bias-value", type=finite_float(), default=0.0,
                   help="constant c, or sigma_b >= 0 for --bias normal (needs --bias constant or normal)")
    p.add_argument("--rai-layers", default="hidden", choices=RAI_LAYERS,
                   help="with --init rai only: layers using RAI (default hidden)")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, metavar="ACT",
                   help=f"{', '.join(ACTIVATIONS)} (default relu)")
    p.add_argument("--negative-slope", type=finite_float(), default=DEFAULT_NEGATIVE_SLOPE,
                   help=f"slope for leaky_relu only (default {DEFAULT_NEGATIVE_SLOPE})")
    p.add_argument("--residual", action="store_true", help="residual hidden blocks h + act(W h + b)")


def add_depth_options(p: argparse.ArgumentParser, default: str | None = None, multi: bool = True) -> None:
    """``--depth`` (hidden layers) and ``--layers`` (papers' count), mutually exclusive."""
    g = p.add_mutually_exclusive_group()
    what = "comma list or range of " if multi else ""
    g.add_argument("--depth", default=None, help=f"{what}hidden layers L_h. {DEPTH_HELP}"
                   + (f" (default {default})" if default else ""))
    g.add_argument("--layers", default=None, help=f"{what}layers counting the output layer, = depth + 1")
    p.set_defaults(_depth_default=default)


# ----------------------------------------------------------------------------------------------- lists

def int_list(text: str, name: str, minimum: int | None = 1, maximum: int | None = None) -> list[int]:
    """Parse ``'2,3,4'`` or a range ``'1-12'`` (or mixes: ``'1-4,8,16'``) into ints (at most ``MAX_LIST``)."""
    spans: list[tuple[int, int]] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                raise ValueError
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                spans.append((lo_i, hi_i))
            else:
                spans.append((int(part), int(part)))
    except ValueError:
        raise UsageError(f"--{name}: malformed list {text!r} (expected e.g. 2,3,4 or 1-12)") from None
    if sum(hi - lo + 1 for lo, hi in spans) > MAX_LIST:
        raise UsageError(f"--{name}: more than {MAX_LIST:,} values")
    out = [v for lo, hi in spans for v in range(lo, hi + 1)]
    if minimum is not None:
        bad = [v for v in out if v < minimum]
        if bad:
            raise UsageError(f"--{name}: values must be >= {minimum}, got {bad[0]}")
    if maximum is not None:
        bad = [v for v in out if v > maximum]
        if bad:
            raise UsageError(f"--{name}: values must be <= {maximum:,}, got {bad[0]:,}")
    if len(set(out)) != len(out):
        raise UsageError(f"--{name}: repeated values in {text!r}")
    return out


def float_list(text: str, name: str) -> list[float]:
    try:
        vals = [float(p) for p in str(text).split(",")]
    except ValueError:
        raise UsageError(f"--{name}: malformed list {text!r} (expected e.g. 1e-3,1e-2)") from None
    if not all(math.isfinite(v) for v in vals):
        raise UsageError(f"--{name}: values must be finite")
    return vals


def depths_from(args, multi: bool = True) -> list[int]:
    from ..config import MAX_DEPTH
    if args.layers is not None:
        layers = int_list(args.layers, "layers", minimum=2, maximum=MAX_DEPTH + 1)
        depths = [depth_from_layers(v) for v in layers]
    else:
        text = args.depth if args.depth is not None else args._depth_default
        if text is None:
            raise UsageError("give --depth (hidden layers) or --layers")
        depths = int_list(text, "depth", minimum=1, maximum=MAX_DEPTH)
    if not multi and len(depths) != 1:
        raise UsageError("--depth/--layers: give a single value")
    return depths


def check_cell_count(n: int) -> None:
    if n > MAX_CELLS:
        raise UsageError(f"{n:,} cells (widths x depths); the limit is {MAX_CELLS:,}")


def positive_int(name: str, value, minimum: int = 1, maximum: int = MAX_TRIALS) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (default at most 2^31 - 1) or ``UsageError``."""
    try:
        v = _parse_int(value)
    except argparse.ArgumentTypeError:
        raise UsageError(f"--{name}: expected an integer, got {value!r}") from None
    if v < minimum:
        raise UsageError(f"--{name}: must be >= {minimum}, got {v}")
    if v > maximum:
        raise UsageError(f"--{name}: must be <= {maximum:,}, got {v:,}")
    return v


# ----------------------------------------------------------------------------------------------- output

def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=None, allow_nan=False, default=_json_default)
    sys.stdout.write("\n")


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    raise TypeError(f"not JSON serializable: {type(o)}")


def json_safe(obj):
    """JSON-safe: non-finite floats -> None, tuples -> lists (recursively)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Format ``rows`` as an aligned text table; columns are (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([format(r[k], f) if r.get(k) is not None else "-" for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
