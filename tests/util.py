"""Small helpers shared by the tests."""

from __future__ import annotations

import time


def wait_for(fn, timeout: float = 120.0, every: float = 0.5):
    """Call ``fn`` every ``every`` seconds until it returns something true, and return that; fail
    the test after ``timeout`` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        got = fn()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s")


def first_seconds(src, seconds: float, out):
    """The first ``seconds`` of the video ``src`` re-encoded into ``out`` (a keyframe a second, AAC
    audio), for streams played at real speed and short batch jobs; returns ``out``."""
    import subprocess

    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", f"{seconds:g}", "-i", str(src), "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "30", "-c:a", "aac", str(out)], check=True)
    return out
