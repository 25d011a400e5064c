"""Highlight labels: files of ``[start, end]`` intervals in seconds on the show's clock.

Accepted forms (detected from the content):

* JSON: ``{"highlights": [[152, 165], [335, 355]]}``, or the bare list ``[[152, 165], ...]``,
  or a list of objects ``[{"start": 152, "end": 165}, ...]``;
* text: one interval per line, ``152 165`` or ``152,165`` or ``152-165``; blank lines and lines
  starting with ``#`` are skipped.

An interval given end-first is turned around; one of zero length covers its one second. Anything
that does not parse raises :class:`~ace.errors.InputError` naming the line.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ace import jsontext
from ace.errors import InputError

MAX_T = 1e7
_LINE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*(?:[,;\t ]|\s-\s|-)\s*([0-9]+(?:\.[0-9]*)?)\s*$")


def load_highlights(path: str | os.PathLike) -> list[tuple[float, float]]:
    """The labelled intervals of a labels file, sorted by start."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError as e:
        raise InputError(f"no labels file at {p}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read the labels: {e}") from e
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            doc = jsontext.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from e
        items = doc.get("highlights") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise InputError(f"{p}: expected {{\"highlights\": [[start, end], ...]}} or a list of [start, end]")
        out = []
        for k, item in enumerate(items, 1):
            if isinstance(item, dict):
                pair = (item.get("start"), item.get("end"))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                pair = tuple(item)
            else:
                raise InputError(f"{p}: highlight {k}: expected [start, end], got {json.dumps(item)[:60]}")
            out.append(_interval(pair, f"{p}: highlight {k}"))
        return sorted(out)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise InputError(f"{p}: line {n}: expected 'start end' in seconds, got {line.strip()[:60]!r}")
        out.append(_interval((m.group(1), m.group(2)), f"{p}: line {n}"))
    return sorted(out)


def _interval(pair, where: str) -> tuple[float, float]:
    try:
        a, b = float(pair[0]), float(pair[1])
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: start and end must be numbers of seconds") from e
    if not (math.isfinite(a) and math.isfinite(b)) or min(a, b) < 0 or max(a, b) > MAX_T:
        raise InputError(f"{where}: times must lie between 0 and {MAX_T:.0f} s")
    return (min(a, b), max(a, b))


def label_mask(highlights: list[tuple[float, float]], n: int) -> np.ndarray:
    """Per-second 0/1 labels for ``n`` seconds (a second counts when the interval covers any of it)."""
    y = np.zeros(max(n, 0), dtype=np.float64)
    for a, b in highlights:
        lo = int(math.floor(a))
        hi = max(lo + 1, int(math.ceil(b)))
        y[max(0, lo):min(n, hi)] = 1.0
    return y
