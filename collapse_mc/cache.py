"""JAX's persistent compilation cache, on by default for the command line.

A compiled program depends only on the static settings (shapes, chunk size, device set), so a second command
with the same shapes loads it from disk instead of compiling (seconds saved per program on a CPU).

Where: ``$JAX_COMPILATION_CACHE_DIR`` if set (JAX's own variable), else ``$COLLAPSE_MC_CACHE_DIR``, else
``$XDG_CACHE_HOME/collapse_mc/xla`` (``~/.cache/collapse_mc/xla``). Off: ``COLLAPSE_MC_NO_CACHE=1`` or the
command-line option ``--no-cache``. Outcomes never depend on it (it stores compiled code, not results).
"""
from __future__ import annotations

import os
import sys
import warnings

DISABLE_ENV = "COLLAPSE_MC_NO_CACHE"
DIR_ENV = "COLLAPSE_MC_CACHE_DIR"


def default_cache_dir() -> str:
    """The per-user cache directory (see the module docstring)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    if os.environ.get(DIR_ENV):
        return os.environ[DIR_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "collapse_mc", "xla")


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache at ``path`` (default ``default_cache_dir()``) for every
    program, however quick to compile; returns the directory, or None when ``COLLAPSE_MC_NO_CACHE`` is set
    or the directory cannot be created (then programs are compiled as usual)."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    path = path or default_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    # the cache is an optimization: a full disk or an unreadable entry must not clutter a one-line error
    warnings.filterwarnings("ignore", message="Error (writing|reading) persistent compilation cache")
    settings = {"jax_compilation_cache_dir": path, "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    if "jax" in sys.modules:
        import jax
        for k, v in settings.items():
            jax.config.update(k, v)
    else:  # before jax is imported (the command line): JAX reads its variables at import, no import needed
        for k, v in settings.items():
            os.environ.setdefault(k.upper(), str(v))
    return path
