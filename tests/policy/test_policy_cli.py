"""``ace policy simulate`` / ``python -m ace.policy simulate``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ace.policy.cli import main, register

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--rooms", "16", "--hours", "0.5", "--seeds", "2"]


def test_json_output_one_object_per_policy(tmp_path, capsys):
    code = main(["simulate", *TINY, "--json", "--out", str(tmp_path)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["policy"] for d in data] == ["ramp", "uniform", "proportional", "pid", "thompson", "oracle"]
    ramp = data[0]
    assert ramp["seeds"] == [0, 1]
    assert ramp["metrics"]["orders_per_1k"]["mean"] > 0
    assert len(ramp["metrics"]["orders_per_1k"]["values"]) == 2
    assert "met" in ramp["metrics"]["regret"] and "target" in ramp["metrics"]["regret"]
    assert "met" not in data[1]["metrics"]["regret"]
    assert (tmp_path / "allocation_over_time.png").stat().st_size > 1000
    assert (tmp_path / "ramp_after_highlights.png").stat().st_size > 1000


def test_table_output(tmp_path, capsys):
    code = main(["simulate", *TINY, "--policies", "ramp,proportional", "--no-plots", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    for word in ("ramp", "proportional", "orders / 1k", "regret", "target"):
        assert word in out
    assert not list(tmp_path.glob("*.png"))


def test_bad_arguments(capsys):
    assert main(["simulate", "--policies", "ramp,nope", "--no-plots"]) == 2
    assert "valid names" in capsys.readouterr().err
    assert main(["simulate", "--seeds", "0", "--no-plots"]) == 2


def test_register_adds_policy_command(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="ace")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["policy", "simulate", *TINY, "--policies", "ramp,uniform", "--json", "--no-plots"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["policy"] == "ramp"


def test_python_dash_m(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ace.policy", "simulate", "--rooms", "10", "--hours", "0.25", "--seeds", "1", "--policies", "ramp", "--json", "--no-plots"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["policy"] == "ramp"
