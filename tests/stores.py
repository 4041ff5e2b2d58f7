"""Synthetic results stores for the hardening and fault tests: valid stores built with the Store API and made-up
outcomes, so no test needs to compile anything to get one."""
import hashlib

import numpy as np

from collapse_mc.store import Store
from collapse_mc.sweep import parse_spec_text

def tiny_trained_spec(trials: int = 6, seed: int = 3, depth: int = 3, name: str | None = None) -> str:
    """TOML of a trained sweep that runs in seconds: width 2, ``depth`` hidden layers, two learning rates (two
    cells), 20 steps on 32 points of |x|."""
    name_line = f'name = "{name}"\n' if name else ""
    return f"""
[sweep]
{name_line}kind = "trained"
trials = {trials}
seed = {seed}
block_size = 4
[grid]
lr = [1e-3, 3e-2]
[network]
width = 2
depth = {depth}
[train]
target = "abs"
steps = 20
n_train = 32
batch_size = 8
test_points = 33
"""


GOOD_SPEC = """
[sweep]
kind = "born_dead"
trials = 64
seed = 7
block_size = 32
[grid]
width = [2, 3]
depth = [4]
"""


def make_store(path, spec_text=GOOD_SPEC, seed=0):
    """A valid store with synthetic outcomes (no JAX compilation): every cell of ``spec_text`` fully recorded."""
    spec = parse_spec_text(spec_text, origin="hardening")
    rng = np.random.default_rng(seed)
    with Store(path, create=True) as st:
        st.register_sweep(spec.sweep_hash, spec.name, spec.kind, spec.to_dict(), spec.source,
                          [dict(cell_hash=c.cell_hash, kind=c.kind, seed=c.seed, config=c.config, settings=c.settings,
                                group=c.group, trials=spec.trials, block_size=spec.block_size) for c in spec.cells])
        for c in spec.cells:
            depth = c.settings["depth"]
            for a in range(0, spec.trials, spec.block_size):
                b = min(a + spec.block_size, spec.trials)
                st.record_block(c.cell_hash, a, b, {"first_dead_layer": rng.integers(0, depth + 1, b - a)},
                                rng.random((b - a, depth)), info={"seconds": 0.1})
    return spec


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
