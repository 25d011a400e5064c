"""`ace bench` (the batch pipeline's benchmark) runs end to end on a short show, as a user runs it,
and reports every step it promises, the vertical clip rows included (the figures are the
benchmark's business, not this test's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_pipeline_bench_reports_every_step_and_cut(short_show, tmp_path):
    env = {**os.environ, "ACE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "commands", "bench", "--input", str(short_show.video),
                           "--events", str(short_show.events), "--json"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    for step in ("decode", "speech", "pipeline"):
        assert r[step]["seconds"] > 0, step
    cuts = r["cuts"]
    assert set(cuts) == {"fast", "exact", "vertical", "vertical+captions"}
    # an exact cut may start up to two frames early when a keyframe follows right after (media.cut_exact)
    assert -2 <= cuts["exact"]["first_frame_offset"] <= 0 and abs(cuts["exact"]["last_frame_offset"]) <= 1
    for key in ("vertical", "vertical+captions"):
        assert cuts[key]["size"] == "202x360" and cuts[key]["over_exact"] > 0  # 9:16 of the 640x360 show
        assert abs(cuts[key]["start"] - cuts["exact"]["start"]) < 1e-3
    assert "exact_cut_30s<=3s" in r["targets"]
