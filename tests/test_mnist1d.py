"""MNIST-1D study (scripts/paper2_mnist1d.py --quick): arms, accuracies, collapse counts, resume, CLI errors."""
import json

import numpy as np
import pytest

pytest.importorskip("mnist1d")

from collapse_mc.jobs import mnist1d as job  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist1d")
    study = job.Mnist1dStudy.quick()
    return study, out, job.run(study, out, progress=False)


def test_quick_study_arms_and_counts(quick):
    study, out, res = quick
    data = job.mnist1d_dataset(study.num_samples)
    n_test = len(data.y_test)
    assert res["data"]["n_test"] == n_test and res["data"]["sha256"] == data.digest
    assert [(a["shape"], a["init"]) for a in res["arms"]] == list(job.ARMS)
    # a collapsed network predicts one class on the whole test set: its accuracy is that class's frequency
    class_freq = np.bincount(np.asarray(data.y_test), minlength=10) / n_test
    for a in res["arms"]:
        width, depth = study.deep if a["shape"] == "deep_narrow" else study.wide
        assert (a["width"], a["depth"], a["trials"]) == (width, depth, study.trials)
        acc = np.array([np.nan if x is None else x for x in a["test_accuracy"]], float)
        assert acc.shape == (study.trials,)
        assert a["diverged"] == int(np.isnan(acc).sum())
        finite = acc[np.isfinite(acc)]
        assert np.all((finite >= 0) & (finite <= 1))
        np.testing.assert_allclose(finite * n_test, np.round(finite * n_test), atol=1e-3)  # k / n_test
        assert 0 <= a["born_dead"] <= a["collapsed"] <= study.trials
        assert a["dead_after_training"] <= a["collapsed"]  # a constant hidden layer gives a constant prediction
        at_class_freq = np.isclose(finite[:, None], class_freq[None, :], atol=1e-6).any(axis=1).sum()
        assert at_class_freq >= a["collapsed"] - a["diverged"]
        assert a["p_collapsed"] == pytest.approx(a["collapsed"] / study.trials)
    # shallow wide networks learn something in 60 steps: above chance on average
    wide = [np.nanmean([x for x in a["test_accuracy"] if x is not None]) for a in res["arms"]
            if a["shape"] == "shallow_wide"]
    assert min(wide) > 0.15
    assert (out / "accuracy.png").stat().st_size > 10_000


def test_quick_study_resumes_without_training(quick, monkeypatch):
    study, out, res = quick

    def no_training(*a, **k):
        raise AssertionError("a finished arm was trained again")

    monkeypatch.setattr(job, "run_arm", no_training)
    assert job.run(study, out, progress=False) == json.loads(json.dumps(res))


def test_script_json_and_bad_input(quick, capsys):
    study, out, res = quick
    assert job.main(["--quick", "--out", str(out), "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["arms"] == json.loads(json.dumps(res["arms"]))
    assert job.main(["--quick", "--trials", "0", "--out", str(out)]) == 2
    assert "--trials must be >= 1" in capsys.readouterr().err
