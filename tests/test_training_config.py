"""Training configuration: validation (one-line ConfigError), the static/traced split, cell identity, the CLI's
error convention, the host block plan."""

import pytest

from collapse_mc.cli import main
from collapse_mc.config import ConfigError, InitConfig, NetworkConfig
from collapse_mc.training import TrainCell, TrainConfig
from collapse_mc.training.targets import Target


@pytest.mark.parametrize("kwargs, words", [
    (dict(lr=-1e-3), "learning rate"),
    (dict(lr=float("nan")), "learning rate"),
    (dict(batch_size=4000, n_train=3000), "larger than n_train"),
    (dict(target="sinc"), "unknown target"),
    (dict(loss="huber"), "unknown loss"),
    (dict(optimizer="adagradd"), "unknown optimizer"),
    (dict(schedule="linear"), "unknown schedule"),
    (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(n_train=0, batch_size=None), "n_train"),
    (dict(momentum=1.0), "momentum"),
    (dict(beta1=-0.1), "beta1"),
    (dict(beta2=1.5), "beta2"),
    (dict(target_scale=0.0), "target scale"),
    (dict(half_width=-1.0), "half-width"),
    (dict(test_points=1), "test_points"),
    (dict(collapse_rtol=0.0), "collapse_rtol"),
])
def test_invalid_settings_raise_one_line_config_error(kwargs, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_target_dimensions_must_match_network():
    with pytest.raises(ConfigError, match="d_in=1"):
        TrainCell(NetworkConfig(4, 3), InitConfig(), TrainConfig(target="f4"))
    TrainCell(NetworkConfig(4, 3, d_in=2, d_out=2), InitConfig(), TrainConfig(target="f4"))


def test_static_part_and_values_split():
    a = TrainConfig(lr=1e-3, momentum=0.0, beta1=0.9, target_scale=None)
    b = TrainConfig(lr=3e-2, beta1=0.5, beta2=0.9)
    assert a.static_part() == b.static_part() and hash(a.static_part()) == hash(b.static_part())
    m0, m1 = TrainConfig(optimizer="sgd"), TrainConfig(optimizer="sgd", lr=0.1, momentum=0.5)
    assert m0.static_part() == m1.static_part() and m1.values()["momentum"] == 0.5
    assert a.values() == {"lr": 1e-3, "momentum": 0.0, "beta1": 0.9, "beta2": 0.999, "target_scale": 1.0}
    assert b.values()["lr"] == 3e-2 and b.values()["beta2"] == 0.9
    # target_scale values share a program among themselves, but natural scale is a different program
    s1, s2 = TrainConfig(target_scale=0.1), TrainConfig(target_scale=10.0)
    assert s1.static_part() == s2.static_part() != a.static_part()
    assert s1.values()["target_scale"] == 0.1
    for shape_change in (dict(steps=10), dict(batch_size=32), dict(n_train=100), dict(loss="l1"),
                         dict(optimizer="sgd"), dict(target="xsin5x"), dict(schedule="cosine")):
        assert TrainConfig(**shape_change).static_part() != a.static_part()
    # full batch: 0, None and n_train are the same program
    assert (TrainConfig(batch_size=0).static_part() == TrainConfig(batch_size=None).static_part()
            == TrainConfig(batch_size=3000).static_part())
    assert TrainConfig(batch_size=0).static_part().batch_size is None


def test_cell_identity_and_id():
    c = TrainCell(NetworkConfig(2, 9), InitConfig(), TrainConfig())
    ident = c.identity()
    assert ident["kind"] == "train" and ident["network"]["depth"] == 9 and ident["train"]["target"] == "abs"
    assert c.cell == TrainCell(NetworkConfig(2, 9), InitConfig(), TrainConfig()).cell
    assert 0 <= c.cell < 2 ** 31
    others = [TrainCell(NetworkConfig(2, 9), InitConfig(), TrainConfig(lr=1e-2)),
              TrainCell(NetworkConfig(2, 9), InitConfig("rai"), TrainConfig()),
              TrainCell(NetworkConfig(2, 8), InitConfig(), TrainConfig())]
    assert len({c.cell} | {o.cell for o in others}) == 4
    custom = Target("twice", lambda x: 2 * x)
    tc = TrainCell(NetworkConfig(2, 3), InitConfig(), TrainConfig(target=custom))
    assert tc.identity()["train"]["target"] == "twice"


@pytest.mark.parametrize("argv, words", [
    (["estimate", "--lr", "-1"], "learning rate"),
    (["estimate", "--target", "sinc"], "unknown target"),
    (["estimate", "--loss", "l3"], "unknown loss"),
    (["estimate", "--optimizer", "lbfgs"], "unknown optimizer"),
    (["estimate", "--batch-size", "5000", "--n-train", "3000"], "larger than n_train"),
    (["estimate", "--steps", "0"], "--steps"),
    (["estimate", "--trials", "x"], "--trials"),
    (["estimate", "--layers", "1"], "--layers"),
    (["bench", "--workload", "W9"], "unknown workload"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
