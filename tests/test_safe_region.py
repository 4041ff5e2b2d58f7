"""Safe-region analysis and the main job: classification rules, depth profiles, the boundary against an
independent numpy implementation, and resuming from the store."""
import json
import os

import numpy as np

from collapse_mc.analysis import boundary, classify, depth_profile, grid_from_profiles
from collapse_mc.estimates import wilson
from collapse_mc.theory import max_depth_below

from reference import binom_se, born_dead_numpy


def test_classify_follows_the_interval_rule():
    for k, n, thr in [(0, 1000, 0.01), (5, 1000, 0.01), (30, 1000, 0.01), (480, 1000, 0.5), (600, 1000, 0.5)]:
        e = wilson(k, n)
        expect = "safe" if e.ci_high < thr else "unsafe" if e.ci_low > thr else "undetermined"
        assert classify(k, n, thr) == expect
    assert classify(0, 1000, 0.01) == "safe" and classify(30, 1000, 0.01) == "unsafe"
    assert classify(10, 1000, 0.01) == "undetermined"


def test_depth_profile_counts_first_dead_layers():
    first = np.array([0, 1, 3, 3, 5, 0, 2])
    np.testing.assert_array_equal(depth_profile(first, 5), [1, 2, 4, 4, 5])
    np.testing.assert_array_equal(depth_profile(first, 2), [1, 2])


def test_boundary_range_and_resolution():
    n = 10000
    ks = [0, 10, 60, 100, 500]          # p = 0, .001, .006, .01, .05 at depths 1..5
    b = boundary(7, [1, 2, 3, 4, 5], ks, n, 0.01)
    assert b.largest_safe == 3 and b.smallest_unsafe == 5 and not b.resolved
    assert b.theory == max_depth_below(7, 0.01)
    b = boundary(7, [1, 2, 3, 4, 5], [0, 10, 60, 300, 500], n, 0.01)
    assert b.largest_safe == 3 and b.smallest_unsafe == 4 and b.resolved


def test_boundary_agrees_with_numpy_reference_for_every_width():
    """Our depth-profile grid (Gaussian kernel) vs independent numpy networks, cell by cell and boundary by
    boundary. Deterministic seeds; 4.5 combined standard errors per cell (about 1e-5 two-sided each)."""
    from collapse_mc.config import NetworkConfig
    from collapse_mc.deadness import BornDeadCell, born_dead_outcomes
    D, T, TN = 16, 4000, 12000
    prof = {w: born_dead_outcomes(BornDeadCell(NetworkConfig(w, D)), 0, T, 11).first_dead_layer
            for w in range(1, 9)}
    grid = grid_from_profiles(prof, D)
    for i, w in enumerate(grid.widths):
        ref = born_dead_numpy(int(w), D, TN, seed=100 + int(w))
        p_ref = depth_profile(ref, D) / TN
        p = grid.p[i]
        for j in range(D):
            assert abs(p[j] - p_ref[j]) <= 4.5 * binom_se(p[j], T, p_ref[j], TN) + 1e-12, (w, j + 1)
        for thr in (0.1, 0.5):
            b = grid.boundaries(thr)[i]
            ref_boundary = int(np.sum(p_ref < thr))      # p increases with depth
            hi = (b.smallest_unsafe - 1) if b.smallest_unsafe else D
            assert b.largest_safe - 1 <= ref_boundary <= hi + 1, (w, thr, b, ref_boundary)


def test_main_job_runs_then_only_redraws(tmp_path, capsys):
    from collapse_mc.cli import main
    db, out = str(tmp_path / "s.sqlite"), str(tmp_path / "fig")
    args = ["safe-region", "--db", db, "--out", out, "--widths", "2-5", "--max-depth", "12", "--trials", "1500",
            "--no-trained", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)["born_dead"]
    assert first["trials_computed"] == 4 * 1500
    for f in ("safe_region.png", "safe_region.pdf", "p_vs_depth.png", "p_vs_depth.pdf"):
        assert os.path.getsize(os.path.join(out, f)) > 1000
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)["born_dead"]
    assert second["trials_computed"] == 0
    assert second["boundaries"] == first["boundaries"]
    # the single-input probability bounds the domain probability from above, so the theory's largest depth
    # below a threshold lies below every depth the Monte Carlo shows (interval above the threshold) unsafe
    unsafe = [b for b in second["boundaries"] if b["smallest_unsafe_depth"]]
    assert unsafe
    for b in unsafe:
        assert b["theory_depth"] < b["smallest_unsafe_depth"], b


def test_adaptive_spends_less_than_a_uniform_grid(tmp_path, capsys):
    from collapse_mc.cli import main
    db = str(tmp_path / "a.sqlite")
    assert main(["safe-region", "--db", db, "--out", str(tmp_path / "f"), "--widths", "1,3,6", "--max-depth", "10",
                 "--adaptive", "--initial-trials", "250", "--budget", "6000", "--thresholds", "0.5",
                 "--no-trained", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)["born_dead"]["adaptive"]
    assert a["trials_used"] == sum(a["trials_per_width"].values()) <= 6000
    assert a["uniform_grid_trials"] == 3 * max(a["trials_per_width"].values())
    assert a["trials_saved"] == a["uniform_grid_trials"] - a["trials_used"]
    # and it does spend less: a width whose boundary resolves early (width 6: p < 0.15 at every depth) stops
    assert a["trials_used"] < a["uniform_grid_trials"] and a["trials_saved"] > 0
    assert min(a["trials_per_width"].values()) < max(a["trials_per_width"].values())


def test_adaptive_never_exceeds_its_budget(tmp_path, capsys):
    """Several unresolved widths may not all double at once when the budget allows only some (the old loop
    checked each width against the total before any doubled and overspent)."""
    from collapse_mc.cli import main
    db = str(tmp_path / "b.sqlite")
    assert main(["safe-region", "--db", db, "--out", str(tmp_path / "f"), "--widths", "2,3,4", "--max-depth", "12",
                 "--adaptive", "--initial-trials", "250", "--budget", "1000", "--no-trained", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)["born_dead"]["adaptive"]
    assert a["trials_used"] == sum(a["trials_per_width"].values()) <= 1000
    assert a["trials_computed"] <= 1000
    assert sorted(a["trials_per_width"].values()) == [250, 250, 500]  # exactly one doubling fitted


    assert a["trials_computed"] == a["trials_used"]


def test_adaptive_keeps_to_the_budget_and_reports_only_what_it_computed(tmp_path, capsys):
    """Every doubling is counted against the budget before the next one; a second run computes nothing and
    says so."""
    from collapse_mc.cli import main
    db = str(tmp_path / "b.sqlite")
    args = ["safe-region", "--db", db, "--out", str(tmp_path / "f"), "--widths", "2-5", "--max-depth", "10",
            "--adaptive", "--initial-trials", "200", "--budget", "1300", "--no-trained", "--json"]
    assert main(args) == 0
    a = json.loads(capsys.readouterr().out)["born_dead"]["adaptive"]
    assert a["trials_used"] <= 1300 and a["trials_computed"] == a["trials_used"]
    assert main(args) == 0
    b = json.loads(capsys.readouterr().out)["born_dead"]["adaptive"]
    assert b["trials_computed"] == 0 and b["trials_per_width"] == a["trials_per_width"]
    assert main(args[:-4] + ["--budget", "100", "--no-trained", "--json"]) == 2  # below the first round
