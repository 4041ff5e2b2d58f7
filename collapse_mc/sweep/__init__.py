"""Parameter sweeps: TOML specs (``spec``), grid expansion into cells grouped by compiled shapes, and the
resumable runner (``runner``) that records blocks of trials in the results store (``collapse_mc.store``).

``load_spec(path_or_name)`` -> ``SweepSpec``; ``run_sweep(spec, db_path, progress=None)`` -> summary dict;
results: ``collapse_mc.store.Store(db_path).cell_estimates()``.
"""
from .spec import (DEFAULT_BLOCK_SIZE, KINDS, SpecError, SweepCell, SweepSpec, load_spec, packaged_specs,
                   parse_spec, parse_spec_text)
from .runner import run_sweep

__all__ = ["DEFAULT_BLOCK_SIZE", "KINDS", "SpecError", "SweepCell", "SweepSpec", "load_spec", "packaged_specs",
           "parse_spec", "parse_spec_text", "run_sweep"]
