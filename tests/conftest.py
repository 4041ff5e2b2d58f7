import atexit
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# one XLA CPU device per core (at most 2, the CI machine's), as the CLI does, so the trial axis is sharded
os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(max(1, min(2, os.cpu_count() or 1))))

# A persistent XLA compilation cache shared by this test session and the subprocesses it starts (resumed
# sweeps, reproduction scripts, device-count checks compile the same programs again). Compiled programs only:
# outcomes are unaffected. Removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="collapse_mc_xla_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
