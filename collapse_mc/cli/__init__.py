"""The ``collapse-mc`` command line.

Subcommands live in one module each (``cli/<name>.py``) exposing ``register(subparsers)``; this file only
dispatches. Conventions: ``--json`` prints machine-readable output on stdout; progress goes to stderr (only on
a terminal); a user error, and a fault of the environment (disk full, a read-only or damaged store, a missing
folder), is one line on stderr and exit status 2, with no traceback. Compiled programs are kept in a persistent
cache (``collapse_mc.cache``) unless ``--no-cache`` (accepted anywhere on the line) or ``COLLAPSE_MC_NO_CACHE=1``;
on a CPU, training and the death checks of ReLU networks of width <= 16 use the native kernel
(``collapse_mc.native``) unless ``--no-native`` (anywhere on the line) or ``COLLAPSE_MC_NO_NATIVE=1``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

SUBCOMMAND_MODULES = ("born_dead", "estimate", "bench", "sweep", "safe_region", "figures", "reproduce", "store_cmd")


def _use_all_cpu_cores() -> None:
    """Expose one XLA CPU device per core (unless the user chose), so the trial axis is sharded over all cores.
    Must run before jax is imported; has no effect on GPU runs."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "JAX_NUM_CPU_DEVICES" not in os.environ and "xla_force_host_platform_device_count" not in flags:
        os.environ["JAX_NUM_CPU_DEVICES"] = str(max(1, os.cpu_count() or 1))


def build_parser():
    from .common import ArgumentParser
    from .. import __version__

    parser = ArgumentParser(
        prog="collapse-mc",
        description="Monte Carlo estimates of how likely deep, narrow ReLU networks are to be born dead or to "
                    "collapse to a constant during training, and the safe-region diagram. Depth convention: "
                    "--depth counts HIDDEN layers; --layers (the papers' count) = depth + 1. Compiled programs "
                    "are cached on disk (~/.cache/collapse_mc/xla, or $COLLAPSE_MC_CACHE_DIR), so a second "
                    "command with the same shapes starts at once; --no-cache (anywhere on the line) or "
                    "COLLAPSE_MC_NO_CACHE=1 turns that off. On a CPU, networks of width <= 16 train in a native "
                    "C++ kernel compiled once per machine with the system's compiler (~/.cache/collapse_mc/native, "
                    "or $COLLAPSE_MC_NATIVE_DIR; XLA's code where it cannot be built); --no-native (anywhere on "
                    "the line) or COLLAPSE_MC_NO_NATIVE=1 uses XLA's code everywhere (results agree to float32 "
                    "rounding).",
    )
    parser.add_argument("--version", action="version", version=f"collapse-mc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in SUBCOMMAND_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _use_all_cpu_cores()
    from ..cache import DISABLE_ENV, enable_compilation_cache
    from ..config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--no-cache" in argv:
        argv = [a for a in argv if a != "--no-cache"]
        os.environ[DISABLE_ENV] = "1"
    if "--no-native" in argv:
        from ..native import DISABLE_ENV as NO_NATIVE
        argv = [a for a in argv if a != "--no-native"]
        os.environ[NO_NATIVE] = "1"
    enable_compilation_cache()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        return int(args.func(args) or 0)
    except ConfigError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print("collapse-mc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        return _fail(_os_error(e))
    except MemoryError:
        return _fail("out of memory: lower --chunk-size, the trials or the network size")
    except Exception as e:  # noqa: BLE001
        import sqlite3
        if isinstance(e, sqlite3.Error):
            return _fail(f"results store: {e}")
        raise


def _fail(message: str) -> int:
    """The one-line error convention: ``collapse-mc: error: <message>`` on stderr, exit status 2."""
    print(f"collapse-mc: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def _os_error(e: OSError) -> str:
    import errno
    what = {errno.ENOSPC: "disk full", errno.EFBIG: "file-size limit reached", errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}.get(e.errno, e.strerror or str(e))
    where = f": {e.filename}" if e.filename else ""
    return f"{what}{where}"


if __name__ == "__main__":
    sys.exit(main())
