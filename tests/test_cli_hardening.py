"""Hardening of the command line: every bad input, from an option or from a sweep spec, is one line on stderr
and exit status 2, with no traceback, no hang and the store's bytes unchanged. All cases run in-process and
fail in validation, before any compilation (the table runs in a few seconds)."""
import dataclasses
import json
import os
import signal
import textwrap

import pytest

from collapse_mc.cli import build_parser, main
from collapse_mc.estimates import wilson
from collapse_mc.store import Store, load_rows
from stores import GOOD_SPEC, make_store, sha256


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening")
    make_store(tmp / "store.sqlite")
    (tmp / "good.toml").write_text(GOOD_SPEC)
    (tmp / "a_file").write_text("not a folder")
    import sqlite3
    con = sqlite3.connect(tmp / "foreign.sqlite")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    return tmp


def spec(text):
    """A spec case: ``sweep run SPEC --db STORE`` with this spec."""
    return ("spec", textwrap.dedent(text))


BORN = ["born-dead", "--width", "2", "--depth", "3", "--trials", "64"]
EST = ["estimate", "--width", "2", "--depth", "3", "--trials", "8", "--steps", "10"]
RUN = ["sweep", "run", "{tmp}/good.toml", "--db", "{db}"]
TRAINED = '[sweep]\nkind = "trained"\ntrials = 8\n[grid]\nwidth = [2]\ndepth = [3]\n'
BORN_SPEC = '[sweep]\nkind = "born_dead"\ntrials = 8\n[grid]\nwidth = [2]\ndepth = [3]\n'

# (input, expected fragment of the one-line error). Inputs: an argv list ({db}: a valid store, {tmp}: a folder)
# or spec(text): 'sweep run' of that spec into the valid store.
BAD = [
    # --- born-dead: values
    (["born-dead", "--width", "0"], "values must be >= 1"),
    (["born-dead", "--width", "65536"], "<= 65,535"),
    (["born-dead", "--width", "2,,3"], "malformed list"),
    (["born-dead", "--width", "2,2"], "repeated values"),
    (["born-dead", "--width", "1-1000000000"], "more than 100,000 values"),
    (["born-dead", "--depth", "0"], "values must be >= 1"),
    (["born-dead", "--depth", "2000000"], "<= 1,000,000"),
    (["born-dead", "--layers", "1"], "values must be >= 2"),
    (["born-dead", "--depth", "5-2"], "malformed list"),
    (["born-dead", "--depth", "3", "--layers", "4"], "not allowed with argument"),
    (BORN[:-1] + ["0"], "must be in 1 .. 2,147,483,647"),
    (BORN[:-1] + ["many"], "expected an integer"),
    (BORN[:-1] + ["2.5"], "expected an integer"),
    (BORN[:-1] + ["1e12"], "must be in 1 .. 2,147,483,647"),
    (BORN[:-1] + ["4294967360"], "must be in 1 .. 2,147,483,647"),   # 2^32 + 64 would repeat trials 0..63
    (BORN + ["--seed", "-1"], "must be in 0 .. 4,294,967,295"),
    (BORN + ["--seed", "4294967296"], "must be in 0 .. 4,294,967,295"),
    (BORN + ["--chunk-size", "0"], "--chunk-size: must be in 1"),
    (BORN + ["--init", "xavier"], "invalid choice"),
    (BORN + ["--activation", "gelu"], "invalid choice"),
    (BORN + ["--domain-half-width", "-1"], "must be in [0"),
    (BORN + ["--domain-half-width", "0"], "half-width must be a number in (0, 1e6]"),
    (BORN + ["--domain-half-width", "nan"], "must be finite"),
    (BORN + ["--domain-half-width", "inf"], "must be finite"),
    (BORN + ["--method", "gaussian", "--init", "rai"], "method 'gaussian' needs"),
    (BORN + ["--d-in", "0"], "--d-in: must be in 1 .. 1,024"),
    (BORN + ["--d-in", "5000"], "--d-in: must be in 1 .. 1,024"),
    (BORN + ["--grid-points", "1"], "--grid-points: must be in 2"),
    (BORN + ["--grid-points", "1000000000"], "16,777,216"),
    (BORN + ["--sample-points", "64"], "--sample-points applies to d_in >= 2 only"),
    (BORN + ["--d-in", "2", "--grid-points", "100"], "--grid-points applies to d_in = 1 only"),
    (["born-dead", "--width", "1-400", "--depth", "1-400"], "160,000 cells"),
    (BORN + ["--chunk-size", "2000000000"], "a chunk of 2,000,000,000 networks needs about"),
    # --- born-dead: settings that would be silently ignored
    (BORN + ["--rai-layers", "all"], "rai_layers applies to the rai initializer only"),
    (BORN + ["--init", "rai", "--bias", "constant", "--bias-value", "0.1"], "RAI draws the hidden biases"),
    (BORN + ["--bias-value", "0.5"], "a bias value needs bias 'constant' or 'normal'"),
    (BORN + ["--bias", "normal", "--bias-value", "-1"], "bias standard deviation must be >= 0"),
    (BORN + ["--negative-slope", "0.2"], "negative slope applies to leaky_relu only"),
    # --- born-dead: sizes, refused with the estimate
    (["born-dead", "--width", "60000", "--depth", "9", "--method", "dense", "--trials", "10"],
     "one network needs about"),
    (["born-dead", "--width", "2", "--depth", "1000000", "--trials", "20000"], "held at once need about"),
    (["born-dead", "--width", "2000", "--depth", "100", "--method", "dense", "--trials", "100000000"],
     "floating-point operations"),
    # --- estimate
    (EST + ["--momentum", "0.9"], "momentum is not used by optimizer 'adam'"),
    (EST + ["--optimizer", "sgd", "--beta1", "0.5"], "beta1 is not used by optimizer 'sgd'"),
    (EST + ["--optimizer", "nesterov", "--beta2", "0.5"], "beta2 is not used by optimizer 'nesterov'"),
    (EST + ["--optimizer", "sgd", "--momentum", "1.5"], "momentum must be in [0, 1)"),
    (EST + ["--lr", "-1"], "learning rate must be"),
    (EST + ["--lr", "nan"], "--lr: must be finite"),
    (EST + ["--steps", "0"], "--steps: must be in 1 .. 100,000,000"),
    (["estimate", "--steps", "1000000000000"], "--steps: must be in 1 .. 100,000,000"),
    (EST + ["--n-train", "1000000000"], "--n-train: must be in 1 .. 16,777,216"),
    (EST + ["--test-points", "1"], "--test-points: must be in 2"),
    (EST + ["--test-points", "1000000000"], "16,777,216"),
    (EST + ["--batch-size", "5000"], "larger than n_train"),
    (EST + ["--batch-size", "-1"], "--batch-size: must be in 0"),
    (EST + ["--target", "sinc"], "unknown target 'sinc'"),
    (EST + ["--loss", "huber"], "unknown loss"),
    (EST + ["--optimizer", "adagradd"], "unknown optimizer"),
    (EST + ["--optimizer", "adamw", "--optimizer-option", "wd=1e-4"], "wd is not an option of optimizer 'adamw'"),
    (EST + ["--optimizer-option", "weight_decay"], "expected KEY=VALUE"),
    (EST + ["--optimizer", "adamw", "--optimizer-option", "weight_decay=nan"], "must be finite"),
    (EST + ["--schedule", "linear"], "unknown schedule"),
    (EST + ["--target-scale", "0"], "target scale must be"),
    (EST + ["--collapse-rtol", "0"], "collapse_rtol must be"),
    (["estimate", "--width", "100000"], "--width: must be in 1 .. 65,535"),
    (["estimate", "--width", "8000", "--depth", "100", "--trials", "1"], "one network needs about"),
    (["estimate", "--depth", "3,4"], "give a single value"),
    (["estimate", "--trials", "10000000", "--steps", "1000000"], "floating-point operations"),
    (EST + ["--activation", "tanh", "--negative-slope", "0.3"], "negative slope applies to leaky_relu only"),
    (EST + ["--init", "rai", "--rai-layers", "all", "--bias", "normal", "--bias-value", "0.1"],
     "RAI draws every bias"),
    (EST + ["--trials", "-5"], "must be in 1 .. 2,147,483,647"),
    (EST + ["--chunk-size", "1000000000"], "lower the chunk size"),
    # --- sweep run / status, results, export, figures, bench, reproduce
    (["sweep", "run", "{tmp}/nosuch.toml", "--db", "{db}"], "no such spec file"),
    (RUN + ["--trials", "0"], "--trials: must be in 1"),
    (RUN + ["--trials", "1000000000000"], "2,147,483,647"),
    (RUN + ["--chunk-size", "-4"], "--chunk-size: must be in 1"),
    (RUN + ["--chunk-size", "2000000000"], "lower the chunk size"),
    (["sweep", "run", "{tmp}/good.toml", "--db", "{tmp}/nodir/x.sqlite"], "does not exist"),
    (["sweep", "run", "{tmp}/good.toml", "--db", "{tmp}"], "is a directory"),
    (["sweep", "run", "{tmp}/good.toml", "--db", "{tmp}/foreign.sqlite"], "not a collapse_mc results store"),
    (["sweep"], "give a subcommand"),
    (["sweep", "status", "--db", "{tmp}/missing.sqlite"], "no collapse_mc results store"),
    (["results", "--db", "{tmp}/missing.sqlite"], "no collapse_mc results store"),
    (["results", "--db", "{db}", "--kind", "foo"], "invalid choice"),
    (["results", "--db", "{db}", "--sweep", "nosuch"], "no sweep named"),
    (["export", "--db", "{db}", "--format", "xml"], "invalid choice"),
    (["export", "--db", "{db}", "--level", "rows"], "invalid choice"),
    (["export", "--db", "{db}", "--out", "{tmp}/nodir/x.csv"], "does not exist"),
    (["export", "--db", "{db}", "--out", "{tmp}"], "is a folder"),
    (["figures", "--db", "{db}", "--thresholds", "0,0.5"], "each value must be in (0, 1)"),
    (["figures", "--db", "{db}", "--thresholds", "x"], "malformed list"),
    (["figures", "--db", "{db}", "--out", "{tmp}/a_file"], "exists and is not a folder"),
    (["figures", "--db", "{tmp}/missing.sqlite", "--out", "{tmp}/figs"], "no collapse_mc results store"),
    (["bench", "--workload", "W9"], "unknown workload"),
    (["bench", "--nets", "0"], "--nets: must be in 1"),
    (["bench", "--steps", "10000000"], "--steps: must be in 1 .. 100,000"),
    (["reproduce", "nosuch"], "invalid choice"),
    (["reproduce", "paper2_born_dead", "--db", "{tmp}/nodir/x.sqlite"], "does not exist"),
    (["reproduce", "paper2_born_dead", "--db", "{db}", "--out", "{tmp}/a_file"], "exists and is not a folder"),
    (["no-such-command"], "invalid choice"),
    # --- sweep specs: the same limits
    (spec(BORN_SPEC.replace("trials = 8", "trials = 0")), "sweep.trials must be in 1 .. 2147483647"),
    (spec(BORN_SPEC.replace("trials = 8", "trials = 4294967360")), "sweep.trials must be in 1 .. 2147483647"),
    (spec(BORN_SPEC.replace("trials = 8", "trials = 2147483647\nblock_size = 1")), "blocks per cell"),
    (spec(BORN_SPEC.replace("trials = 8", "trials = 8\nseed = -1")), "sweep.seed must be in 0"),
    (spec(BORN_SPEC.replace("trials = 8", "trials = 8\nchunk_size = 2000000000")), "lower the chunk size"),
    (spec(BORN_SPEC.replace("width = [2]", "width = [65536]")), "width must be in 1 .. 65,535"),
    (spec(BORN_SPEC.replace("width = [2]", "width = [2.5]")), "must be an integer"),
    (spec(BORN_SPEC.replace("depth = [3]", "depth = [100000000]")), "depth (hidden layers) must be in 1 .."),
    (spec(BORN_SPEC + '[init]\nbias = "normal"\nbias_value = 0.1\n[probe]\ngrid_points = 1000000000\n'),
     "grid_points must be in 2 .. 16,777,216"),
    (spec(BORN_SPEC + '[init]\nrai_layers = "all"\n'), "rai_layers applies to the rai initializer only"),
    (spec(BORN_SPEC + '[init]\nweights = "rai"\nbias = "constant"\nbias_value = 0.2\n'),
     "RAI draws the hidden biases"),
    (spec(BORN_SPEC + '[network]\nnegative_slope = 0.3\n'), "negative slope applies to leaky_relu only"),
    (spec(BORN_SPEC + '[probe]\npoints = [[0.1, 0.2]]\n'), "probe points have dimension 2"),
    (spec(BORN_SPEC + '[probe]\npoints = [[nan]]\n'), "coordinates must be finite"),
    (spec(BORN_SPEC.replace("width = [2]", "width = [60000]") + '[init]\nbias = "normal"\nbias_value = 0.1\n'),
     "one network needs about"),
    (spec(BORN_SPEC.replace("trials = 8", "trials = 2000000000\nblock_size = 2000000000")
          .replace("depth = [3]", "depth = [1000]")), "held at once need about"),
    (spec(BORN_SPEC.replace("width = [2]", "width = [" + ", ".join(map(str, range(1, 401))) + "]")
          .replace("depth = [3]", "depth = [" + ", ".join(map(str, range(1, 401))) + "]")), "cells (limit 100,000)"),
    (spec(TRAINED + '[train]\nmomentum = 0.9\n'), "momentum is not used by optimizer 'adam'"),
    (spec(TRAINED + '[train]\noptimizer = "sgd"\nbeta1 = 0.5\n'), "beta1 is not used by optimizer 'sgd'"),
    (spec(TRAINED + '[train]\nsteps = 1000000000000\n'), "steps must be in 1 .. 100,000,000"),
    (spec(TRAINED + '[train]\nn_train = 1000000000\n'), "n_train must be in 1 .. 16,777,216"),
    (spec(TRAINED + '[train]\ntest_points = 1000000000\n'), "test_points must be in 2 .. 16,777,216"),
    (spec(TRAINED + '[train]\nlr = nan\n'), "must be finite"),
    (spec(TRAINED.replace("trials = 8", "trials = 100000000") + '[train]\nsteps = 1000000\n'),
     "floating-point operations"),
    (spec(TRAINED + '[probe]\ngrid_points = 10\n'), "[probe] applies to born_dead sweeps only"),
    (spec(BORN_SPEC + '[network]\nwidht = 3\n'), "unknown setting 'widht'"),
    (spec(BORN_SPEC.replace("width = [2]", "width = []")), "is empty"),
]


def _ids():
    out = []
    for i, (case, _) in enumerate(BAD):
        text = " ".join(case) if isinstance(case, list) else "spec:" + case[1].strip().splitlines()[-1]
        out.append(f"{i:03d}-{text[:60]}")
    return out


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.mark.parametrize("case,fragment", BAD, ids=_ids())
def test_bad_input_is_one_line_exit_2_store_unchanged(env, tmp_path, capsys, case, fragment):
    db = env / "store.sqlite"
    before = sha256(db)
    if isinstance(case, tuple):
        path = tmp_path / "bad.toml"
        path.write_text(case[1])
        argv = ["sweep", "run", str(path), "--db", str(db)]
    else:
        argv = [a.replace("{db}", str(db)).replace("{tmp}", str(env)) for a in case]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        code = main(argv)
    except _Hang:
        pytest.fail(f"hung: {argv}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert err.startswith("collapse-mc: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert fragment in err, (fragment, err)
    assert sha256(db) == before
    assert not (env / "nodir").exists()


def test_the_table_is_large_and_distinct():
    assert len(BAD) >= 60
    keys = [json.dumps(c) for c, _ in BAD]
    assert len(set(keys)) == len(keys)


# ----------------------------------------------------------------------------------------------- help texts

def _all_parsers():
    parser = build_parser()
    todo, out = [parser], []
    while todo:
        p = todo.pop()
        out.append(p)
        for action in p._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                todo.extend(action.choices.values())
    return out


def test_help_texts_render_percent_once_and_read_only_commands_say_so():
    # safe-region's help is owned by its own module (checked there)
    parsers = [p for p in _all_parsers() if "safe-region" not in p.prog]
    assert len(parsers) >= 12
    for p in parsers:
        text = p.format_help()
        assert "%%" not in text, p.prog
        for action in p._actions:
            if action.option_strings and action.help is None:
                pytest.fail(f"{p.prog} {action.option_strings} has no help")
    by_prog = {p.prog.split(" ", 1)[1] if " " in p.prog else p.prog: p for p in parsers}
    for name in ("results", "export", "figures", "sweep status"):
        db_help = next(a.help for a in by_prog[name]._actions if "--db" in a.option_strings)
        assert "read-only" in db_help and "created if missing" not in db_help
    assert "95% Wilson" in by_prog["born-dead"].format_help().replace("\n", " ")


def test_estimate_flags_are_train_config_fields_with_its_defaults():
    from collapse_mc.cli.estimate import make_cell
    from collapse_mc.training import TrainConfig
    args = build_parser().parse_args(["estimate"])
    for f in dataclasses.fields(TrainConfig):
        assert getattr(args, f.name) == f.default, f.name
    assert make_cell(args).train == TrainConfig()
    args = build_parser().parse_args(["estimate", "--optimizer", "sgd", "--momentum", "0.5", "--n-train", "100",
                                      "--batch-size", "0", "--domain-half-width", "2"])
    t = make_cell(args).train
    assert (t.optimizer, t.momentum, t.n_train, t.full_batch, t.half_width) == ("sgd", 0.5, 100, True, 2.0)


# ----------------------------------------------------------------------------------------------- per-depth rows

def test_results_per_depth_and_self_describing_exports(env, capsys):
    db = env / "store.sqlite"
    with Store(db, readonly=True) as st:
        outcomes = {c["cell_hash"]: (c["settings"], st.outcomes(c["cell_hash"])["first_dead_layer"])
                    for c in st.cells()}
    assert main(["results", "--db", str(db), "--per-depth", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == sum(s["depth"] for s, _ in outcomes.values()) == 8
    for r in rows:
        s, fdl = outcomes[r["cell_hash"]]
        k = int(((fdl > 0) & (fdl <= r["depth"])).sum())
        w = wilson(k, len(fdl))
        assert (r["width"], r["cell_depth"], r["layers"], r["init"]) == (s["width"], s["depth"], r["depth"] + 1,
                                                                           "he_normal")
        assert (r["trials"], r["born_dead"]) == (64, k)
        assert (r["p"], r["ci_low"], r["ci_high"]) == pytest.approx((w.p, w.ci_low, w.ci_high), rel=1e-12)
    # P(born dead) can only grow with depth (more layers to die in)
    for h in outcomes:
        ps = [r["p"] for r in rows if r["cell_hash"] == h]
        assert ps == sorted(ps) and ps[-1] > 0
    assert main(["results", "--db", str(db), "--per-depth"]) == 0
    text = capsys.readouterr().out
    assert "P(born dead)" in text and max(len(line) for line in text.splitlines()) < 140
    # the trial export names each trial's width, depth, layers and init: no join needed
    assert main(["export", "--db", str(db), "--level", "trials", "--format", "json"]) == 0
    trials = json.loads(capsys.readouterr().out)
    assert len(trials) == 2 * 64
    for t in trials:
        s, fdl = outcomes[t["cell_hash"]]
        assert (t["width"], t["depth"], t["layers"], t["init"]) == (s["width"], s["depth"], s["depth"] + 1,
                                                                      "he_normal")
        assert t["first_dead_layer"] == int(fdl[t["trial"]])
    # the documented Python function: flat dicts, the same rows as the commands
    assert load_rows(db, "trials") == trials
    assert load_rows(db, "depths") == rows
    cells = load_rows(db)
    assert [c["trials"] for c in cells] == [64, 64] and all(isinstance(v, (int, float, str, bool, type(None)))
                                                            for c in cells for v in c.values())
    with pytest.raises(ValueError, match="level"):
        load_rows(db, "rows")


# ----------------------------------------------------------------------------------------------- born-dead theory

def test_born_dead_rai_shows_no_theory_and_no_zero_biases(capsys):
    argv = ["born-dead", "--width", "2", "--depth", "9", "--init", "rai", "--trials", "200", "--no-progress"]
    assert main(argv + ["--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["theory_single_input"] is None and 0.1 < row["p"] < 0.4   # about 0.22 (README)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "zeros biases" not in text and "RAI's own biases" in text and "1-(1-2^-N)^L_h" not in text
    # (He normal with zero biases keeps its theory: test_cli_born_dead.test_json_fields_and_values)


def test_trial_range_limit():
    from collapse_mc.config import MAX_TRIALS, ConfigError, check_trial_range
    check_trial_range(0, MAX_TRIALS)
    for a, b in ((-1, 5), (5, 4), (0, 2 ** 32 + 64), (2 ** 31, 2 ** 31 + 1)):
        with pytest.raises(ConfigError, match="2\\^31"):
            check_trial_range(a, b)


def test_no_files_appear_in_the_working_folder(env, tmp_path, monkeypatch, capsys):
    """Bad inputs never create files where the command runs (no stray store, journal or figure folder)."""
    monkeypatch.chdir(tmp_path)
    for argv in (["results"], ["figures"], ["sweep", "status"], ["export"], BORN + ["--width", "0"]):
        assert main(argv) == 2
    capsys.readouterr()
    assert os.listdir(tmp_path) == []
