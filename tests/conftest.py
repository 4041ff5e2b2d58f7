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

# The heaviest modules first (test time measured on the 2-core AMD EPYC, longest first). Each module runs whole
# on one worker (--dist loadscope), so starting the long ones early lets the other worker fill in with the
# short ones instead of one worker finishing a long module alone at the end. Other modules keep their order.
HEAVIEST_FIRST = ("test_native_kernel", "test_generic_model", "test_born_dead", "test_trained_region",
                  "test_safe_region", "test_reproduce_quick", "test_registry", "test_shards",
                  "test_training_equivalence", "test_cluster_launch", "test_depth_capacity")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(getattr(getattr(item, "module", None), "__name__", ""), len(rank)))
