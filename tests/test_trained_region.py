"""The trained safe region: the depth search against exhaustive grids, and the main job's trained part on a
small grid (fewer steps and trials than the default; the full-size numbers are in the README)."""
import filecmp
import os

import numpy as np
import pytest

from collapse_mc.analysis.safe_region import SAFE, UNSAFE
from collapse_mc.analysis.trained import (Counts, bracket, contradictions, label, resolvable, search_width,
                                          width_boundary)

DEPTHS = (1, 2, 3, 4, 6, 9, 12, 16)


def _oracle(events: dict):
    """``evaluate(depth, n)`` over fixed per-trial events ``{depth: bool array}`` (the first n trials)."""
    calls = []

    def evaluate(d, n):
        calls.append((d, n))
        e = events[d][:n]
        return Counts(n, int(e.sum()), n, 0)
    return evaluate, calls


def _uniform(events, n, t):
    """Largest depth all of whose shallower grid cells are safe, and the smallest unsafe, at n trials each."""
    labs = {d: label(Counts(n, int(events[d][:n].sum()), n, 0), t) for d in DEPTHS}
    safe = 0
    for d in DEPTHS:
        if labs[d] != SAFE:
            break
        safe = d
    unsafe = min([d for d in DEPTHS if labs[d] == UNSAFE], default=None)
    return safe, unsafe


def _consistent(adaptive_lo, adaptive_hi, uniform_lo, uniform_hi):
    """No depth is safe in one and unsafe in the other (the brackets overlap)."""
    ok_lo = uniform_hi is None or adaptive_lo < uniform_hi
    ok_hi = adaptive_hi is None or uniform_lo < adaptive_hi
    return ok_lo and ok_hi


@pytest.mark.parametrize("seed", range(6))
def test_search_agrees_with_an_exhaustive_grid_and_measures_fewer_cells(seed):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(2, 40)
    p = {d: 1 - np.exp(-d / scale) for d in DEPTHS}            # grows with depth
    u = rng.random(400)                                        # common random numbers: nested events
    events = {d: u < p[d] for d in DEPTHS}
    evaluate, calls = _oracle(events)
    cells = search_width(DEPTHS, (0.1, 0.5), {}, evaluate, 25, 400)
    assert sum(c.trials for c in cells.values()) < 0.7 * 400 * len(DEPTHS)   # fewer trials than the uniform grid
    assert not contradictions(cells, (0.1, 0.5))
    for t in (0.1, 0.5):
        lo, hi = bracket(cells, t, None)
        assert _consistent(lo, hi, *_uniform(events, 400, t)), (t, lo, hi, _uniform(events, 400, t))
        # what lies between lo and hi was measured undetermined at the maximum, or not measured
        assert all(cells[d].trials == 400 and label(cells[d], t) not in (SAFE, UNSAFE)
                   for d in cells if lo < d < (hi or 99))



def test_search_trains_nothing_born_dead_shows_unsafe_and_grows_only_straddling_cells():
    events = {d: np.arange(400) < (0 if d < 4 else 400) for d in DEPTHS}   # p = 0 below 4, 1 from 4
    evaluate, calls = _oracle(events)
    cells = search_width(DEPTHS, (0.1, 0.5), {0.1: 6, 0.5: 6}, evaluate, 40, 400)
    assert all(d < 6 for d in cells)
    assert all(n == 40 for _, n in calls)                       # decided at once: no doubling
    b = width_boundary(3, DEPTHS, cells, 0.5, 6, 400)
    assert b["safe_up_to_depth"] == 3 and b["unsafe_from_depth"] == 4 and b["resolved"]


def test_contradictions_and_unresolvable_thresholds_are_reported():
    cells = {2: Counts(200, 150, 200, 0), 9: Counts(200, 0, 200, 0)}
    assert contradictions(cells, (0.5,)) == [{"threshold": 0.5, "unsafe_depth": 2, "safe_depth": 9}]
    assert not resolvable(0.01, 64) and resolvable(0.01, 400) and resolvable(0.1, 64)
    b = width_boundary(2, DEPTHS, cells, 0.01, None, 64)
    assert b["reason"] and not b["resolved"]


def test_search_on_born_dead_monte_carlo_agrees_with_a_uniform_grid_of_400():
    """Widths 2-5, 8 depths, real Monte Carlo events (born dead, whose profile gives every depth from one run
    per width): the adaptive brackets agree with a uniform grid of 400 networks per cell, with fewer trials."""
    from collapse_mc.config import NetworkConfig
    from collapse_mc.deadness import BornDeadCell, born_dead_outcomes
    spent = uniform = 0
    for w in (2, 3, 4, 5):
        first = np.asarray(born_dead_outcomes(BornDeadCell(NetworkConfig(w, max(DEPTHS))), 0, 400, 3).first_dead_layer)
        events = {d: (first > 0) & (first <= d) for d in DEPTHS}
        evaluate, _ = _oracle(events)
        cells = search_width(DEPTHS, (0.1, 0.5), {}, evaluate, 25, 400)
        assert not contradictions(cells, (0.1, 0.5))
        for t in (0.1, 0.5):
            assert _consistent(*bracket(cells, t, None), *_uniform(events, 400, t)), (w, t)
        spent += sum(c.trials for c in cells.values())
        uniform += 400 * len(DEPTHS)
    assert spent < uniform / 2


@pytest.fixture(scope="module")
def small_job(tmp_path_factory):
    """The main job on width 2 up to L_h 9, 100 steps, 8-16 networks per cell, drawn twice."""
    from collapse_mc.jobs.safe_region import SafeRegionJob, draw, run
    from collapse_mc.jobs.trained_region import TrainedRegion
    tmp = tmp_path_factory.mktemp("trained")
    db = str(tmp / "s.sqlite")
    job = SafeRegionJob(widths=(2,), max_depth=9, trials=2000, trained=TrainedRegion(
        initial=8, maximum=16, block_size=8, steps=100, born_dead_trials=500, anchor_trials=16))
    first = run(job, db)
    drawn = [draw(job, db, str(tmp / f"fig{i}")) for i in (1, 2)]
    second = run(job, db)
    return job, db, first, second, drawn, tmp


def test_job_trains_replays_and_draws_identical_figures(small_job):
    job, db, first, second, drawn, tmp = small_job
    assert first["trained"]["trials_computed"] > 0
    assert second["trained"]["trials_computed"] == 0 and second["born_dead"]["trials_computed"] == 0
    for name in ("trained_region.png", "p_vs_depth.png", "safe_region.png"):
        a, b = tmp / "fig1" / name, tmp / "fig2" / name
        assert os.path.getsize(a) > 10000 and filecmp.cmp(a, b, shallow=False), name
    trained = drawn[0]["trained"]
    assert set(trained) == {"he_normal", "rai"}
    for part in trained.values():
        assert part["cells"] and part["boundaries"]
        for c in part["cells"]:
            assert {"width", "depth", "layers", "trials", "p", "ci_low", "ci_high", "status"} <= set(c)
        for b in part["boundaries"]:
            assert {"width", "threshold", "safe_up_to_depth", "unsafe_from_depth"} <= set(b)


def test_collapse_is_at_least_born_dead_in_every_cell(small_job):
    """P(collapse) >= P(born dead): no trained interval lies below the born-dead profile's interval, and per
    cell the trained networks' own born-dead count is at most their collapse count."""
    job, db, first, second, drawn, tmp = small_job
    for init, part in drawn[0]["trained"].items():
        assert part["below_born_dead"] == [], init
        for c in part["cells"]:
            assert c["ci_high"] >= c["p_born_dead_profile_ci"][0], (init, c)
    from collapse_mc.jobs.trained_region import stored_cells
    from collapse_mc.store import Store
    with Store(db) as store:
        for init in ("he_normal", "rai"):
            for cells in stored_cells(job.region(), store, init).values():
                for c in cells.values():
                    assert c.born_dead <= c.collapsed


def test_trained_cell_agrees_with_estimate(small_job):
    """The job's width 2, L_h 9 He cell (stopped at death) against ``estimate_training`` on the same protocol
    (trained to the end): the same networks, the same collapse outcome, trial by trial."""
    from collapse_mc.jobs.trained_region import trained_spec
    from collapse_mc.store import Store
    from collapse_mc.training import estimate_training, train_outcomes
    job, db, *_ = small_job
    sc = trained_spec(job.region(), "he_normal", 2, 9, 16).cells[0]
    with Store(db) as store:
        stored = store.outcomes(sc.cell_hash)
    ref = train_outcomes(sc.cell, 0, 16, job.seed)
    order = np.argsort(stored["trial"])
    np.testing.assert_array_equal(stored["collapsed"][order][:16], ref.collapsed)
    np.testing.assert_array_equal(stored["born_dead"][order][:16], ref.born_dead)
    rec = estimate_training(sc.cell, 16, job.seed)
    assert rec["collapsed"] == int(ref.collapsed.sum())


def test_search_on_trained_networks_agrees_with_a_uniform_grid_of_400():
    """Widths 2-5 x 8 depths of *trained* networks (the job's protocol at 100 steps instead of 5000; the
    full-size run is in the README): a uniform grid of 400 networks per cell and the depth search over the
    same networks give consistent boundaries at 10 % and 50 %, the search with fewer trials."""
    from collapse_mc.jobs.trained_region import uniform_agreement
    res = uniform_agreement(widths=(2, 3, 4, 5), depths=DEPTHS, trials=400, steps=100)
    assert len(res["rows"]) == 8
    bad = [r for r in res["rows"] if not r["consistent"]]
    assert not bad, bad
    assert res["trials_search"] < res["trials_uniform"] / 2
    # not vacuous: the boundaries lie inside the grid for some width (P(collapse) crosses 10 % within it)
    assert any(0 < r["uniform_safe_up_to"] and r["uniform_unsafe_from"] for r in res["rows"])
