"""The learned highlight scorer: what chat says, second by second -> probability of a highlight.

An audience reacts after the moment it reacts to: on game streams the busiest chat comes ~15-25 s
after a highlight starts. The scorer therefore reads, for second ``t``, the chat in windows of
``window`` seconds starting at ``t + lag + offset`` for each of its ``offsets``: a window before
the audience's typical reaction, the reaction itself and its tail. ``lag`` is learned from
labelled shows (the delay that best lines up their chat with their highlights) and can be moved
per show (:func:`ace.lag.estimate_lag` measures it against the show's own speech, sound and
picture). For each window it takes:

* ``rel``: the message count against the room's own rate (``log1p(count / expected)``, the
  expected count from the ``baseline_s`` seconds around ``t``, or before it when live);
* each text column of :func:`ace.signals.chat.chat_series` (hype, laughter, shock, emphasis,
  questions, short messages, copy-paste waves, emotes): its share of the window's messages minus
  its usual share in the room (over the same baseline), damped while the window holds fewer than 5
  messages.

Everything is relative to the room itself, so a busy room or one whose chat never uses emotes is
not a highlight all the time: steady chat, whatever its rate and style, scores about the base rate.

A logistic regression over these (standardised) features gives the per-second probability;
:meth:`HighlightModel.fit` learns it with L-BFGS on binary cross-entropy (torch; deterministic),
scoring needs only numpy. A moment's **confidence** (0-100) maps its peak probability through an
isotonic calibration learned from held-out shows (:meth:`HighlightModel.calibrate`): a confidence
of 70 was right (the moment overlapped a labelled highlight) about 70% of the time there.

The model is a small JSON file (:meth:`~HighlightModel.save` / :meth:`~HighlightModel.load`) that
names what it was fitted on. :func:`default_model` is the one ACE ships
(``models/highlight_default.json``); ``ace train`` fits others.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ace.errors import ModelError

logger = logging.getLogger("ace.models")

_FORMAT = "ace-highlight-model"
_VERSION = 3
#: The model ACE ships.
DEFAULT_PATH = Path(__file__).with_name("highlight_default.json")
#: Text columns of the chat series the model reads (see :data:`ace.signals.chat.COLUMNS`).
TEXT_COLUMNS: tuple[str, ...] = ("hype", "laugh", "shock", "emphatic", "question", "short", "copy", "emote")
#: A window with fewer messages than this has its text shares damped toward 0.
_FULL_WINDOW = 5.0
#: The expected rate never falls below one message a minute (a silent room is not infinitely surprised).
_MIN_RATE = 1.0 / 60.0


@dataclass
class HighlightModel:
    """Per-second highlight probability from a chat series; see the module's docstring."""

    offsets: tuple[int, ...] = (-30, -20, -10, 0, 10, 20)
    window: int = 10
    lag: float = 20.0
    baseline_s: int = 300
    l2: float = 1e-2
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    #: a moment's region extends while the probability stays above this share of its peak
    extent: float = 0.45
    #: ... and above this per-second probability (when its peak does)
    level: float = 0.0
    #: ... and above the probability this share of the show's seconds reach (0: off)
    share: float = 0.0
    #: the confidence a moment needs to be kept on its own (weaker ones only fill up the top few)
    min_confidence: float = 45.0
    #: isotonic calibration knots: raw peak probability -> share of moments that were right
    calibration: list[tuple[float, float]] = field(default_factory=list)
    #: what it was fitted on, for people
    trained_on: str = ""
    #: figures measured when it was fitted (cross-validated where said)
    metrics: dict = field(default_factory=dict)

    # ----------------------------------------------------------------- features

    @property
    def feature_names(self) -> list[str]:
        return [f"{name}@{o:+d}" for o in self.offsets for name in ("rel", *TEXT_COLUMNS)]

    def features(self, series: np.ndarray, lag: float | None = None, causal: bool = False) -> np.ndarray:
        """``(T, F)`` features from a ``(T, 9)`` chat series (:func:`ace.signals.chat.chat_series`).
        ``lag`` overrides the learned one; ``causal`` takes the expected rate from before ``t`` only."""
        from ace.signals.chat import COLUMNS

        x = np.asarray(series, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(COLUMNS):
            raise ValueError(f"a chat series has shape (T, {len(COLUMNS)}), not {x.shape}")
        n = x.shape[0]
        lag = self.lag if lag is None else float(lag)
        csum = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
        idx = np.arange(n)
        b = self.baseline_s
        lo = np.clip(idx - (2 * b if causal else b), 0, n)
        hi = np.clip(idx if causal else idx + b, 0, n)
        if causal:  # the first minutes have no past: take the first minute as it comes
            hi = np.maximum(hi, np.minimum(n, 60))
        base = csum[hi] - csum[lo]
        rate = base[:, 0] / np.maximum(hi - lo, 1)
        expected = np.maximum(rate, _MIN_RATE) * self.window
        text_idx = [COLUMNS.index(c) for c in TEXT_COLUMNS]
        usual = base[:, text_idx] / np.maximum(base[:, 0], 1.0)[:, None]
        cols = []
        for o in self.offsets:
            a = np.clip(idx + int(round(lag + o)), 0, n)
            z = np.clip(a + self.window, 0, n)
            w = csum[z] - csum[a]
            count = w[:, 0]
            damp = np.minimum(count, _FULL_WINDOW) / _FULL_WINDOW
            shares = (w[:, text_idx] / np.maximum(count, 1.0)[:, None] - usual) * damp[:, None]
            cols.append(np.column_stack([np.log1p(count / expected), shares]))
        return np.hstack(cols)

    # ----------------------------------------------------------------- scoring

    @property
    def fitted(self) -> bool:
        return len(self.weights) == len(self.offsets) * (1 + len(TEXT_COLUMNS))

    def probability(self, series: np.ndarray, lag: float | None = None, causal: bool = False) -> np.ndarray:
        """Per-second probability, shape ``(T,)``, of being inside a highlight."""
        if not self.fitted:
            raise ModelError("the highlight model has no weights yet: fit it (ace train) or load one")
        f = self.features(series, lag, causal)
        z = (f - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -40, 40)))

    def confidence(self, raw: float | np.ndarray) -> np.ndarray | float:
        """0-100: how often a moment with this peak probability was right on held-out shows
        (without a calibration, the probability itself)."""
        r = np.asarray(raw, dtype=np.float64)
        if self.calibration:
            xs, ys = zip(*self.calibration, strict=True)
            c = np.interp(r, np.asarray(xs), np.asarray(ys))
        else:
            c = r
        out = np.round(100.0 * np.clip(c, 0.0, 1.0), 1)
        return float(out) if out.ndim == 0 else out

    # ----------------------------------------------------------------- fitting

    def fit(self, shows: Sequence[tuple[np.ndarray, np.ndarray]], lag: float | None = None, max_iter: int = 200) -> HighlightModel:
        """Learn the weights from ``(chat series, per-second labels)`` pairs (labels 1 inside a
        highlight). ``lag`` fixes the audience's delay; by default it is measured from the
        shows (:func:`label_lag`). Returns ``self``."""
        shows = _checked(shows)
        ys = np.concatenate([y for _, y in shows])
        if ys.size == 0 or ys.max() <= 0 or ys.min() >= 1:
            raise ValueError("the labels need both highlight and non-highlight seconds")
        self.lag = float(label_lag(shows)) if lag is None else float(lag)
        x = np.vstack([self.features(s) for s, _ in shows])
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        w, b = _logistic((x - mean) / scale, ys, np.zeros(x.shape[1]), math.log(ys.mean() / (1 - ys.mean())),
                         self.l2, None, max_iter)
        self.mean, self.scale, self.weights, self.bias = mean.tolist(), scale.tolist(), w.tolist(), b
        self.calibration = []
        logger.info("highlight model fitted on %d shows, %d seconds (%.1f%% highlight), lag %.0f s",
                    len(shows), ys.size, 100 * ys.mean(), self.lag)
        return self

    def tune(self, shows: Sequence[tuple[np.ndarray, np.ndarray]], strength: float = 0.05, max_iter: int = 100) -> HighlightModel:
        """A copy of this (fitted) model moved toward partial labels: ``labels`` 1 (approved),
        0 (rejected) or NaN (not reviewed, ignored). The weights are pulled back toward this model's
        own with ``strength``, so a few reviews nudge it rather than replace it; the lag, the
        feature scaling and the region settings stay."""
        if not self.fitted:
            raise ModelError("only a fitted model can be tuned")
        shows = _checked(shows)
        x = np.vstack([self.features(s) for s, _ in shows])
        ys = np.concatenate([y for _, y in shows])
        known = np.isfinite(ys)
        if known.sum() == 0:
            raise ValueError("no reviewed seconds to tune on")
        z = (x[known] - np.asarray(self.mean)) / np.asarray(self.scale)
        w0 = np.asarray(self.weights)
        w, b = _logistic(z, ys[known], w0, self.bias, strength, w0, max_iter)
        out = dataclasses.replace(self, weights=w.tolist(), bias=b, metrics=dict(self.metrics))
        return out

    def calibrate(self, raw: Sequence[float], hits: Sequence[bool]) -> None:
        """Set the confidence map from moments' peak probabilities and whether each was right,
        by isotonic regression (pool-adjacent-violators), from 0 -> 0 to 1 -> the rate of the
        strongest moments."""
        self.calibration = isotonic_knots(raw, hits)

    # ----------------------------------------------------------------- persistence

    def to_dict(self) -> dict:
        return {
            "format": _FORMAT, "version": _VERSION, "trained_on": self.trained_on,
            "offsets": list(self.offsets), "window": self.window, "lag": self.lag, "baseline_s": self.baseline_s,
            "l2": self.l2, "features": self.feature_names, "mean": self.mean, "scale": self.scale,
            "weights": self.weights, "bias": self.bias,
            "extent": self.extent, "level": self.level, "share": self.share, "min_confidence": self.min_confidence,
            "calibration": [list(k) for k in self.calibration], "metrics": self.metrics,
        }

    def save(self, path: Path | str) -> Path:
        """Write the model as JSON (atomically); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> HighlightModel:
        """A model written by :meth:`save`. Raises :class:`ModelError` for a missing or foreign file."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise ModelError(f"no highlight model at {path}") from e
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise ModelError(f"{path} is not a highlight model file: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ModelError(f"{path} is not a highlight model file")
        if doc.get("version") != _VERSION:
            raise ModelError(f"{path} is a version {doc.get('version')} highlight model; this ACE reads version {_VERSION}")
        try:
            m = cls(offsets=tuple(int(o) for o in doc["offsets"]), window=int(doc["window"]), lag=float(doc["lag"]),
                    baseline_s=int(doc["baseline_s"]), l2=float(doc.get("l2", 1e-2)),
                    mean=[float(v) for v in doc["mean"]], scale=[float(v) for v in doc["scale"]],
                    weights=[float(v) for v in doc["weights"]], bias=float(doc["bias"]),
                    extent=float(doc.get("extent", 0.45)), level=float(doc.get("level", 0.0)),
                    share=float(doc.get("share", 0.0)), min_confidence=float(doc.get("min_confidence", 45.0)),
                    calibration=[(float(a), float(b)) for a, b in doc.get("calibration", [])],
                    trained_on=str(doc.get("trained_on", "")), metrics=dict(doc.get("metrics") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: a field of the highlight model is missing or malformed: {e}") from e
        n = len(m.feature_names)
        if not (len(m.mean) == len(m.scale) == len(m.weights) == n) or m.window < 1 or not 0 <= m.lag <= 120:
            raise ModelError(f"{path}: the highlight model's weights do not fit its {n} features")
        if any(s <= 0 for s in m.scale) or not all(map(math.isfinite, [*m.weights, *m.mean, m.bias])):
            raise ModelError(f"{path}: the highlight model holds invalid numbers")
        return m


def _checked(shows: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = [(np.asarray(s, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1)) for s, y in shows]
    if not out:
        raise ValueError("no labelled shows to fit on")
    for s, y in out:
        if s.shape[0] != y.shape[0]:
            raise ValueError(f"{s.shape[0]} seconds of chat but {y.shape[0]} labels")
    return out


def _logistic(z: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: float, l2: float, prior: np.ndarray | None,
              max_iter: int) -> tuple[np.ndarray, float]:
    """L-BFGS on binary cross-entropy plus ``l2 * |w - prior|^2`` (prior 0 when None), from (w0, b0);
    torch on one thread, deterministic."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xt = torch.tensor(z, dtype=torch.float64)
        yt = torch.tensor(y, dtype=torch.float64)
        pt = torch.tensor(prior if prior is not None else np.zeros(z.shape[1]), dtype=torch.float64)
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        b = torch.tensor([b0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * ((w - pt) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    finally:
        torch.set_num_threads(before)
    return w.detach().numpy().copy(), float(b.detach().item())


_DEFAULT: HighlightModel | None = None


def default_model() -> HighlightModel:
    """The model ACE ships (loaded once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = HighlightModel.load(DEFAULT_PATH)
    return _DEFAULT


def load_model(spec: str | Path | None) -> HighlightModel:
    """``None``/``"default"`` -> the shipped model, else the model file at ``spec``."""
    if spec is None or str(spec) in ("", "default"):
        return default_model()
    return HighlightModel.load(spec)


def tenant_model_path(data_dir: str | Path, tenant: str) -> Path:
    """Where ``ace train --reviews TENANT`` keeps a tenant's own model: ``DATA_DIR/scorers/tenant-<name>.json``
    (a name with other characters than letters, digits, '-' and '_' is written as its hex)."""
    import re

    safe = tenant if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tenant or "") else (tenant or "").encode().hex()[:128]
    return Path(data_dir) / "scorers" / f"tenant-{safe}.json"


def model_for(spec: str | Path | None, data_dir: str | Path | None = None, tenant: str | None = None) -> HighlightModel:
    """The model a show of ``tenant`` uses: with the default setting, the tenant's own (tuned on its
    reviews) when it has one, else the shipped one; otherwise the model file ``spec`` names."""
    if (spec is None or str(spec) in ("", "default")) and tenant and data_dir is not None:
        own = tenant_model_path(data_dir, tenant)
        if own.is_file():
            return HighlightModel.load(own)
    return load_model(spec)


def label_lag(shows: Sequence[tuple[np.ndarray, np.ndarray]], max_lag: int = 60) -> float:
    """The audience's delay in labelled shows: for each show, the shift (0..``max_lag`` s) at which
    its chat rate (5 s mean, standardised) best correlates with its highlight labels; the median over
    the shows."""
    lags = []
    for s, y in shows:
        rate = np.convolve(np.asarray(s)[:, 0], np.ones(5) / 5, mode="same")
        if rate.std() <= 0 or len(rate) <= max_lag + 10:
            continue
        z = (rate - rate.mean()) / rate.std()
        yc = np.asarray(y, dtype=np.float64) - np.mean(y)
        n = len(z)
        corr = [float(np.dot(z[k:], yc[: n - k]) / (n - k)) for k in range(max_lag + 1)]
        lags.append(int(np.argmax(corr)))
    return float(np.median(lags)) if lags else 20.0


def isotonic_knots(raw: Sequence[float], hits: Sequence[bool], max_knots: int = 24) -> list[tuple[float, float]]:
    """Pool-adjacent-violators fit of ``hits`` on ``raw``, as ``(x, y)`` knots for ``np.interp``."""
    r = np.asarray(raw, dtype=np.float64)
    h = np.asarray(hits, dtype=np.float64)
    if r.size == 0:
        return []
    order = np.argsort(r, kind="stable")
    r, h = r[order], h[order]
    # blocks: [sum, count, x-sum]
    blocks: list[list[float]] = []
    for x, y in zip(r, h, strict=True):
        blocks.append([y, 1.0, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, c, xs = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
            blocks[-1][2] += xs
    # each block's rate with one hit and one miss added (Laplace): a handful of moments that were
    # all right is not a certainty
    knots = [(round(b[2] / b[1], 5), round((b[0] + 1.0) / (b[1] + 2.0), 4)) for b in blocks]
    if len(knots) > max_knots:  # keep the shape, fewer points
        pick = np.linspace(0, len(knots) - 1, max_knots).round().astype(int)
        knots = [knots[i] for i in sorted(set(pick.tolist()))]
    # from (0, 0) to (1, the top block's rate); x strictly increasing for np.interp, y never decreasing
    clean: list[tuple[float, float]] = [(0.0, 0.0)]
    for x, y in knots + [(1.0, knots[-1][1])]:
        y = max(y, clean[-1][1])
        if x <= clean[-1][0]:
            clean[-1] = (clean[-1][0], y)
        else:
            clean.append((x, y))
    return clean
