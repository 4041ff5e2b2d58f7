"""The born-dead command: JSON fields and values, the depth/layers convention, one-line errors."""
import json
import subprocess
import sys

import pytest

from collapse_mc.cli import main
from collapse_mc.theory import p_dead_single_input


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_fields_and_values(capsys):
    code, out, err = run_cli(capsys, "born-dead", "--width", "2,3", "--layers", "10", "--trials", "3000",
                             "--seed", "1", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["width"], r["depth"], r["layers"]) for r in rows] == [(2, 9, 10), (3, 9, 10)]
    for r in rows:
        for key in ("init", "bias", "trials", "born_dead", "p", "ci_low", "ci_high", "theory_single_input",
                    "seconds", "nets_per_second"):
            assert key in r
        assert r["trials"] == 3000 and r["p"] == r["born_dead"] / 3000
        assert r["ci_low"] < r["p"] < r["ci_high"]
        assert r["theory_single_input"] == pytest.approx(p_dead_single_input(r["width"], 9))
    assert 0.55 < rows[1]["p"] < 0.65          # paper 2: about 60 % at width 3


def test_depth_and_layers_agree(capsys):
    a = json.loads(run_cli(capsys, "born-dead", "--width", "3", "--depth", "4", "--trials", "500", "--json")[1])
    b = json.loads(run_cli(capsys, "born-dead", "--width", "3", "--layers", "5", "--trials", "500", "--json")[1])
    assert a[0]["born_dead"] == b[0]["born_dead"] and a[0]["depth"] == b[0]["depth"] == 4


def test_table_mentions_the_convention(capsys):
    code, out, _ = run_cli(capsys, "born-dead", "--width", "2", "--depth", "3", "--trials", "200")
    assert code == 0 and "hidden layers" in out and "depth(L_h)" in out


@pytest.mark.parametrize("args", [
    ["born-dead", "--width", "0"],
    ["born-dead", "--depth", "0"],
    ["born-dead", "--layers", "1"],
    ["born-dead", "--trials", "0"],
    ["born-dead", "--trials", "many"],
    ["born-dead", "--init", "xavier"],
    ["born-dead", "--activation", "gelu"],
    ["born-dead", "--width", "2,,3"],
    ["born-dead", "--depth", "5-2"],
    ["born-dead", "--domain-half-width", "-1"],
    ["born-dead", "--depth", "3", "--layers", "4"],
    ["born-dead", "--method", "gaussian", "--init", "rai"],
    ["no-such-command"],
])
def test_bad_input_is_one_line_exit_2(capsys, args):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.startswith("collapse-mc: error:") and err.count("\n") == 1
    assert "Traceback" not in err and out == ""


def test_console_entry_point_exit_status():
    p = subprocess.run([sys.executable, "-m", "collapse_mc", "born-dead", "--width", "-3"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
