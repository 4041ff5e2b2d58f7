"""Trained sweeps: cells differing only in traced values share one compiled program, stored outcomes equal a
direct ``train_outcomes`` call, counts and p = P(collapse) are sums over the records, resume adds only the
missing trials."""
import numpy as np
import pytest

from collapse_mc.estimates import wilson
from collapse_mc.store import Store
from collapse_mc.sweep import parse_spec_text, run_sweep
from collapse_mc.training import trainer, train_outcomes
from stores import tiny_trained_spec

SPEC = tiny_trained_spec()
ARRAYS = ("first_dead_layer", "born_dead", "collapsed", "diverged", "collapse_value", "final_loss", "test_rel_l2",
          "dead_fraction")


def test_trained_sweep(tmp_path):
    spec = parse_spec_text(SPEC)
    assert len(spec.cells) == 2 and len(spec.groups()) == 1  # lr is a traced value: one compiled shape
    assert [c.settings["lr"] for c in spec.cells] == [1e-3, 3e-2] and spec.cells[0].settings["kind"] == "trained"
    db = tmp_path / "t.sqlite"
    misses = trainer._train_map.cache_info().misses
    summary = run_sweep(spec, db)
    assert summary["trials_recorded"] == 12
    assert trainer._train_map.cache_info().misses - misses <= 1  # both cells ran one compiled program
    with Store(db, readonly=True) as st:
        est = {e["cell_hash"]: e for e in st.cell_estimates()}
        for c in spec.cells:
            direct = train_outcomes(c.cell, 0, 6, spec.seed, chunk_size=4)
            stored = st.outcomes(c.cell_hash)
            np.testing.assert_array_equal(stored["trial"], np.arange(6))
            for name in ARRAYS:
                np.testing.assert_array_equal(stored[name], np.asarray(getattr(direct, name)).astype(stored[name].dtype))
            e = est[c.cell_hash]
            k = int(direct.collapsed.sum())
            assert (e["trials"], e["born_dead"], e["collapsed"], e["diverged"]) == \
                (6, int(direct.born_dead.sum()), k, int(direct.diverged.sum()))
            assert (e["p"], e["ci_low"], e["ci_high"]) == tuple(wilson(k, 6)[2:])
            assert e["p_born_dead"] == int(direct.born_dead.sum()) / 6
            assert e["dead_fraction"] == pytest.approx(float(direct.dead_fraction.astype(np.float64).mean()))
            assert e["lr"] == c.settings["lr"] and e["target"] == "abs" and e["layers"] == 4
            # born dead implies collapsed
            assert not np.any(stored["born_dead"].astype(bool) & ~stored["collapsed"].astype(bool))
    again = run_sweep(spec.with_trials(8), db)
    assert again["trials_computed"] == 4  # only trials 6, 7 of each cell


def test_figures_compare_trained_cells_that_differ_only_in_init(tmp_path):
    """Trained cells with the same settings but for the initializer are drawn side by side (the grouping must
    ignore every result key, including the trained-only estimates)."""
    from collapse_mc.figures.regenerate import _without
    from collapse_mc.store import RESULT_KEYS
    spec = parse_spec_text(SPEC.replace("lr = [1e-3, 3e-2]", 'init = ["he_normal", "rai"]'))
    db = tmp_path / "i.sqlite"
    run_sweep(spec, db)
    with Store(db, readonly=True) as st:
        rows = st.cell_estimates(kind="trained")
    assert len(rows) == 2 and {r["init"] for r in rows} == {"he_normal", "rai"}
    assert set(rows[0]) - set(RESULT_KEYS) == set(spec.cells[0].settings)  # every other key is a setting
    assert _without(rows[0], ("init", "weights")) == _without(rows[1], ("init", "weights"))


def test_trained_blocks_get_the_default_chunking(tmp_path, monkeypatch):
    """A sweep hands a trained block no chunk size of its own (an explicit size turns off re-packing the live
    networks into full and tail chunks as they die, so every block would be padded to it): ``train_outcomes``
    sizes its chunks for the sweep's block size. A chunk size the caller gives is passed on."""
    import collapse_mc.training as training
    from collapse_mc.config import ConfigError
    seen = []
    real = training.train_outcomes

    def spy(*args, **kwargs):
        seen.append((kwargs.get("chunk_size"), kwargs.get("chunk_trials")))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_outcomes", spy)
    spec = parse_spec_text(SPEC)
    run_sweep(spec, tmp_path / "a.sqlite")
    assert len(seen) == 4 and set(seen) == {(None, 4)}  # 2 cells x 2 blocks (6 trials, blocks of 4)
    seen.clear()
    run_sweep(spec, tmp_path / "b.sqlite", chunk_size=2)
    assert len(seen) == 4 and set(seen) == {(2, 4)}
    with pytest.raises(ConfigError, match="chunk_trials"):
        real(spec.cells[0].cell, 0, 2, chunk_trials=0)
