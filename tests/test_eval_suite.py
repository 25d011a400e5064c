"""``ace eval``: the report's checks, and the whole command on the public recordings (CI floors)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from ace.config import Settings
from ace.errors import InputError
from ace.evaluation.suite import FLOORS, TARGETS, broken_floors, check, run_eval, tables


def _report(**over):
    r = {
        "speech": {"models": [{"model": "tiny.en", "sets": {"en": {"whole": 0.07, "live": 0.07}}}],
                   "summary": {"max_live_penalty": 0.0}},
        "scenes": {"summary": {"ace_f1": 1.0, "best_reference_f1": 1.0, "ace_fps": 700.0, "best_reference_fps": 600.0}},
    }
    r.update(over)
    return r


def test_check_reads_paths_picks_models_by_name_and_compares():
    rules = [
        ("speech/models/tiny.en/sets/en/whole", "<=", 0.15, "wer"),
        ("speech/models/base/sets/en/whole", "<=", 0.15, "absent model"),
        ("scenes/summary/ace_f1", ">=", 0.8, "f1"),
        ("speech/summary/max_live_penalty", "<", 0.0, "strict"),
    ]
    got = check(_report(), rules)
    assert [c["value"] for c in got] == [0.07, None, 1.0, 0.0]
    assert [c["ok"] for c in got] == [True, None, True, False]


def test_nan_and_broken_values_fail_absent_ones_do_not():
    r = _report()
    r["speech"]["models"][0]["sets"]["en"]["whole"] = float("nan")
    r["scenes"]["summary"]["ace_f1"] = 0.5
    report = {**r, "floors": check(r, FLOORS)}
    broken = {b["check"] for b in broken_floors(report)}
    assert broken == {"speech/models/tiny.en/sets/en/whole", "scenes/summary/ace_f1"}


def test_targets_cover_the_stated_goals():
    paths = {t[0] for t in TARGETS}
    assert {"speech/summary/max_live_penalty", "boundaries/summary/inside_word",
            "boundaries/summary/max_edge_error_frames"} <= paths


def test_missing_data_folder_and_unknown_part_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no evaluation data"):
        run_eval(tmp_path / "nope")
    with pytest.raises(InputError, match="unknown part"):
        run_eval(tmp_path, parts=["speech", "smell"])


def test_a_failing_part_is_reported_and_the_others_still_run(tmp_path):
    # an empty folder: scenes finds no cut files (a note, no crash); captions has no friday clip
    report = run_eval(tmp_path, parts=["scenes", "captions"])
    assert "scenes" in report and "captions" in report
    assert report["scenes"].get("files") == []
    assert "error" in report["captions"] or report["captions"].get("summary", {}).get("cues") in (0, None)
    assert tables(report)  # renders whatever came back


def test_chat_part_needs_labelled_chat_logs_and_scores_what_it_finds(tmp_path):
    from tests.test_chat_highlights import write_show

    report = run_eval(tmp_path, parts=["chat"])
    assert "no chat/ folder" in report["chat"]["error"]
    for k in range(3):  # three synthetic labelled shows: enough for leave-one-out
        write_show(tmp_path / "chat", f"s{k}", 70 + k)
    report = run_eval(tmp_path, parts=["chat"])
    chat = report["chat"]
    assert "error" not in chat, chat
    assert [r["show"] for r in chat["per_show"]] == ["s0", "s1", "s2"]
    # planted bursts 20 s after each highlight: the held-out model finds them, the shifted copy does not
    assert chat["methods"]["ace"]["moment_f1"] > chat["methods"]["chance"]["moment_f1"] + 0.2
    assert chat["summary"]["lag_s"]["median"] == pytest.approx(20, abs=3)
    assert {c["check"] for c in report["targets"]} >= {"chat/summary/ace_second_f1", "chat/summary/ace_moment_f1"}
    assert tables(report)


def test_cli_missing_data_is_exit_2_with_a_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "commands", "eval", "--data", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no evaluation data" in proc.stderr


def test_ace_eval_on_the_public_recordings_meets_the_floors(eval_data, short_show, tmp_path):
    """The whole command, as CI runs it: every part but products (its own test below: it makes two
    6-minute sample shows), every installed model, floors enforced."""
    env = {**os.environ, "ACE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, "-m", "commands", "eval", "--data", str(eval_data), "--sample", str(short_show.video),
         "--parts", "speech,captions,scenes,boundaries,chat", "--json", "--check"],
        capture_output=True, text=True, timeout=1500, env=env,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    floors = {f["check"]: f for f in report["floors"]}
    assert proc.returncode == 0, [f for f in report["floors"] if f["ok"] is False]
    for part in ("speech", "captions", "scenes", "boundaries", "chat"):
        assert "error" not in report[part], report[part]
    chat = report["chat"]
    assert chat["shows"] >= 3 and set(chat["methods"]) == {"ace", "rate>2x", "rate>4x", "chance"}
    assert floors["chat/summary/ace_second_f1"]["ok"] is True and floors["chat/summary/ace_moment_f1"]["ok"] is True
    # the model that always ships is always measured
    assert floors["speech/models/tiny.en/sets/en/whole"]["ok"] is True
    tiny = next(m for m in report["speech"]["models"] if m["model"] == "tiny.en")
    assert tiny["sets"]["en"]["clips"] >= 11 and not math.isnan(tiny["sets"]["en"]["whole"])
    assert report["boundaries"]["summary"]["clips"] > 0


def test_the_products_part_reports_every_key_the_targets_read(tmp_path, monkeypatch):
    """``ace eval --parts products`` on a short English sample show (the full run makes both
    6-minute shows; its figures are in the README)."""
    import ace.evaluation.products as products
    from ace.evaluation.suite import TARGETS, check

    settings = Settings(data_dir=tmp_path / "data", cpu_threads=2, speech_workers=1)
    monkeypatch.setattr(products, "SHOWS", (("en", "tiny.en", None),))
    report = {"products": products.evaluate_products(settings, tmp_path / "eval", duration=150.0)}
    show = report["products"]["shows"][0]
    assert "error" not in show, show
    for key in ("planted", "found", "recall", "precision", "start_error_med_s", "end_error_med_s"):
        assert key in show["segments"]
    for key in ("planted", "flagged", "recall", "precision"):
        assert key in show["ad_words"]
    assert show["segments"]["planted"] >= 1 and show["realtime"] > 0
    rows = [c for c in check(report, TARGETS) if c["check"].startswith("products/")]
    assert len(rows) == 6 and all(c["value"] is not None for c in rows), rows
