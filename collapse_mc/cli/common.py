"""Shared CLI helpers: list parsing, depth/layers options, and the one-line error convention.

Every user error raises ``UsageError`` (or ``config.ConfigError``); ``cli.main`` prints ``collapse-mc: error:
<message>`` on one line to stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from ..config import ConfigError, depth_from_layers

DEPTH_HELP = ("depth = number of HIDDEN layers L_h; the papers' 'L-layer network' counts the output layer, so "
              "--layers L is the same as --depth L-1 (a '10-layer' net is --depth 9)")


class UsageError(ConfigError):
    """Bad command-line input (one line, exit status 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but errors become ``UsageError`` (one line, exit status 2) instead of usage dumps."""

    def error(self, message):
        raise UsageError(message)


def int_list(text: str, name: str, minimum: int | None = 1) -> list[int]:
    """Parse ``'2,3,4'`` or a range ``'1-12'`` (or mixes: ``'1-4,8,16'``) into ints."""
    out: list[int] = []
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
                out.extend(range(lo_i, hi_i + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise UsageError(f"--{name}: malformed list {text!r} (expected e.g. 2,3,4 or 1-12)") from None
    if minimum is not None:
        bad = [v for v in out if v < minimum]
        if bad:
            raise UsageError(f"--{name}: values must be >= {minimum}, got {bad[0]}")
    return out


def float_list(text: str, name: str) -> list[float]:
    try:
        vals = [float(p) for p in str(text).split(",")]
    except ValueError:
        raise UsageError(f"--{name}: malformed list {text!r} (expected e.g. 1e-3,1e-2)") from None
    if not all(math.isfinite(v) for v in vals):
        raise UsageError(f"--{name}: values must be finite")
    return vals


def add_network_options(p: argparse.ArgumentParser) -> None:
    """The bias, RAI-layers, activation and residual options shared by the commands that build networks."""
    from ..config import ACTIVATIONS, BIAS_INITS, RAI_LAYERS

    p.add_argument("--bias", default="zeros", choices=BIAS_INITS, metavar="BIAS",
                   help="bias init: zeros | constant | normal (value from --bias-value)")
    p.add_argument("--bias-value", type=float, default=0.0, help="constant c, or sigma_b for --bias normal")
    p.add_argument("--rai-layers", default="hidden", choices=RAI_LAYERS, help="with --init rai: layers using RAI")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, metavar="ACT",
                   help=f"{', '.join(ACTIVATIONS)} (default relu)")
    p.add_argument("--negative-slope", type=float, default=0.01, help="slope for leaky_relu")
    p.add_argument("--residual", action="store_true", help="residual hidden blocks h + act(W h + b)")


def add_depth_options(p: argparse.ArgumentParser, default: str | None = None, multi: bool = True) -> None:
    """``--depth`` (hidden layers) and ``--layers`` (papers' count), mutually exclusive."""
    g = p.add_mutually_exclusive_group()
    what = "comma list or range of " if multi else ""
    g.add_argument("--depth", default=None, help=f"{what}hidden layers L_h. {DEPTH_HELP}"
                   + (f" (default {default})" if default else ""))
    g.add_argument("--layers", default=None, help=f"{what}layers counting the output layer, = depth + 1")
    p.set_defaults(_depth_default=default)


def depths_from(args, multi: bool = True) -> list[int]:
    if args.layers is not None:
        layers = int_list(args.layers, "layers", minimum=2)
        depths = [depth_from_layers(v) for v in layers]
    else:
        text = args.depth if args.depth is not None else args._depth_default
        if text is None:
            raise UsageError("give --depth (hidden layers) or --layers")
        depths = int_list(text, "depth", minimum=1)
    if not multi and len(depths) != 1:
        raise UsageError("--depth/--layers: give a single value")
    return depths


def positive_int(name: str, value, minimum: int = 1) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"--{name}: expected an integer, got {value!r}") from None
    if v < minimum:
        raise UsageError(f"--{name}: must be >= {minimum}, got {v}")
    return v


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


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Format ``rows`` as an aligned text table; columns are (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([format(r[k], f) if r.get(k) is not None else "-" for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
