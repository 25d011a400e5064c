"""A small learned highlight scorer: per-second evidence -> probability of being inside a highlight.

Features
--------
One row per second of the show, ten columns in this fixed order (:data:`FEATURES`)::

    speech, keyword, audio, visual, interaction,                      # levels, each in [0, 1]
    d_speech, d_keyword, d_audio, d_visual, d_interaction             # short-window deltas

A level is a detector's score for that second (the highest ``Signal.score`` of that source in
the second, 0 when it said nothing). A delta is the level minus the mean level over the previous
``window`` seconds (3 by default; 0 for the first second), so rising evidence counts for a little
more than evidence that has been there all along. :func:`make_features` builds the matrix from
the five level series.

Model
-----
``logit = w . x + b + mlp(x)`` and ``p = sigmoid(logit)``: a logistic regression plus an optional
tiny MLP (``hidden`` tanh units) whose output layer starts at zero. The default, untrained scorer
therefore reproduces exactly a weighted sum squashed by a sigmoid::

    p = sigmoid(GAIN * (sum_s W[s] * level_s + sum_s DELTA_SHARE * W[s] * delta_s - CENTER))

with :data:`DEFAULT_WEIGHTS` ``W`` (summing to 1), ``DELTA_SHARE = 0.25``, ``GAIN = 10`` and
``CENTER = 0.35``: a second whose weighted evidence is 0.35 scores 0.5, one at 0.6 scores 0.92,
silence scores 0.03. :meth:`HighlightScorer.fit` learns the weights (Adam on binary cross-entropy)
from labelled seconds; :meth:`~HighlightScorer.save` / :meth:`~HighlightScorer.load` keep them.
Everything is seeded and runs on one CPU thread: scoring a few thousand seconds takes about a
millisecond, fitting them for 300 epochs well under a second (plus torch's one-off warm-up).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ace.errors import ModelError

logger = logging.getLogger("ace.models")

#: Signal sources, in feature order.
SOURCES: tuple[str, ...] = ("speech", "keyword", "audio", "visual", "interaction")
#: Feature names, in column order: the five levels, then their short-window deltas.
FEATURES: tuple[str, ...] = SOURCES + tuple(f"d_{s}" for s in SOURCES)

#: Default share of each source in the weighted sum (they add up to 1).
DEFAULT_WEIGHTS: dict[str, float] = {
    "speech": 0.20,
    "keyword": 0.20,
    "audio": 0.15,
    "visual": 0.15,
    "interaction": 0.30,
}
#: A delta's weight relative to its level's weight.
DELTA_SHARE = 0.25
#: Slope of the sigmoid around CENTER.
GAIN = 10.0
#: Weighted evidence that scores exactly 0.5.
CENTER = 0.35
#: Seconds of look-behind for the deltas.
DEFAULT_WINDOW = 3

_FORMAT = "ace-highlight-scorer"
_VERSION = 1


def make_features(levels: Mapping[str, Any] | np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """The ``(T, 10)`` float32 feature matrix from per-second levels.

    ``levels`` is either a mapping ``source -> sequence of T levels`` (missing sources count as
    0; unknown ones raise ``ValueError``) or an array of shape ``(T, 5)`` in :data:`SOURCES` order.
    NaNs count as 0.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, not {window}")
    if isinstance(levels, Mapping):
        unknown = set(levels) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown sources {sorted(unknown)}; expected some of: {', '.join(SOURCES)}")
        lengths = {len(np.asarray(v).reshape(-1)) for v in levels.values()}
        if len(lengths) > 1:
            raise ValueError(f"level series differ in length: {sorted(lengths)}")
        t = lengths.pop() if lengths else 0
        x = np.zeros((t, len(SOURCES)), dtype=np.float64)
        for i, s in enumerate(SOURCES):
            if s in levels:
                x[:, i] = np.asarray(levels[s], dtype=np.float64).reshape(-1)
    else:
        x = np.asarray(levels, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(SOURCES):
            raise ValueError(f"levels must have shape (T, {len(SOURCES)}), not {x.shape}")
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)

    n = x.shape[0]
    csum = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    idx = np.arange(n)
    lo = np.maximum(idx - window, 0)
    count = (idx - lo).astype(np.float64)
    prev_mean = (csum[idx] - csum[lo]) / np.maximum(count, 1.0)[:, None]
    delta = np.where(count[:, None] > 0, x - prev_mean, 0.0)
    return np.hstack([x, delta]).astype(np.float32)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread for the duration. The scorer's matrices are tiny: on a busy
    machine two threads waiting on each other are ten times slower than one."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Net(nn.Module):
    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)
        self.mlp: nn.Module | None = None
        if hidden > 0:
            self.mlp = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        if self.mlp is not None:
            z = z + self.mlp(x)
        return z.squeeze(-1)


def _default_linear() -> tuple[np.ndarray, float]:
    w = np.array([DEFAULT_WEIGHTS[s] for s in SOURCES], dtype=np.float64)
    weights = GAIN * np.concatenate([w, DELTA_SHARE * w])
    return weights, -GAIN * CENTER


class HighlightScorer:
    """Per-second probability of "inside a highlight" from the :data:`FEATURES` vector.

    ``hidden`` is the width of the optional MLP branch (0 gives a pure logistic model),
    ``window`` the look-behind of the deltas when :meth:`score` is given bare levels, ``seed``
    what initialises the MLP branch. A new scorer carries the documented default weights.
    """

    def __init__(self, hidden: int = 8, window: int = DEFAULT_WINDOW, seed: int = 0):
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, not {hidden}")
        self.hidden = int(hidden)
        self.window = int(window)
        self.fitted = False
        self._net: _Net
        self.reset(seed)

    # ----------------------------------------------------------------- weights

    def reset(self, seed: int = 0) -> None:
        """Back to the default weights (the MLP branch re-initialised from ``seed``, contributing 0)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _Net(len(FEATURES), self.hidden)
        weights, bias = _default_linear()
        with torch.no_grad():
            net.linear.weight.copy_(torch.tensor(weights, dtype=torch.float32).unsqueeze(0))
            net.linear.bias.fill_(bias)
            if net.mlp is not None:
                net.mlp[-1].weight.zero_()
        self._net = net.eval()
        self.fitted = False

    @property
    def weights(self) -> dict[str, float]:
        """The logistic part's weight for each feature (plus ``"bias"``)."""
        w = self._net.linear.weight.detach().numpy().reshape(-1)
        out = {name: float(v) for name, v in zip(FEATURES, w, strict=True)}
        out["bias"] = float(self._net.linear.bias.detach().item())
        return out

    # ----------------------------------------------------------------- scoring

    def _as_features(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D (T, {len(FEATURES)}), not shape {x.shape}")
        if x.shape[1] == len(SOURCES):
            return make_features(x, self.window)
        if x.shape[1] != len(FEATURES):
            raise ValueError(
                f"features must have {len(FEATURES)} columns ({', '.join(FEATURES)}) or "
                f"{len(SOURCES)} level columns, not {x.shape[1]}"
            )
        return np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Probabilities, shape ``(T,)`` float32, for a ``(T, 10)`` feature matrix (a ``(T, 5)``
        matrix of bare levels gets its deltas from :func:`make_features`; one 1-D row gives ``(1,)``)."""
        x = self._as_features(features)
        with _one_thread(), torch.inference_mode():
            p = torch.sigmoid(self._net(torch.from_numpy(np.ascontiguousarray(x))))
        return p.numpy().astype(np.float32, copy=False)

    __call__ = score

    # ----------------------------------------------------------------- training

    def fit(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        epochs: int = 300,
        seed: int = 0,
        lr: float = 0.05,
        weight_decay: float = 1e-4,
        batch_size: int | None = None,
        pos_weight: float | None = None,
        warm_start: bool = False,
    ) -> list[float]:
        """Learn the weights from labelled seconds (``labels`` 1 inside a highlight, 0 outside;
        soft labels in [0, 1] work too) with Adam on binary cross-entropy. Returns the loss per epoch.

        Training starts from the default weights (or the current ones with ``warm_start``) and
        is deterministic for a given ``seed``. ``batch_size=None`` trains on all rows at once;
        ``pos_weight`` up-weights positives when highlights are rare (e.g. ``negatives / positives``).
        """
        x = self._as_features(features)
        y = np.asarray(labels, dtype=np.float32).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
        if x.shape[0] == 0:
            raise ValueError("no training rows")
        if not np.all(np.isfinite(y)) or y.min() < 0 or y.max() > 1:
            raise ValueError("labels must lie in [0, 1]")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, not {epochs}")

        if not warm_start:
            self.reset(seed)
        net = self._net
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
        pw = torch.tensor([pos_weight], dtype=torch.float32) if pos_weight else None
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pw)
        gen = torch.Generator().manual_seed(seed)
        n = xt.shape[0]
        bs = n if not batch_size or batch_size >= n else int(batch_size)

        history: list[float] = []
        net.train()
        with _one_thread(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
            for _ in range(epochs):
                order = torch.randperm(n, generator=gen) if bs < n else None
                total = 0.0
                for start in range(0, n, bs):
                    rows = order[start : start + bs] if order is not None else slice(None)
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(net(xt[rows]), yt[rows])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * (min(start + bs, n) - start)
                history.append(total / n)
        net.eval()
        self.fitted = True
        logger.info("highlight scorer fitted on %d seconds (%d positive): loss %.4f -> %.4f",
                    n, int((y > 0.5).sum()), history[0], history[-1])
        return history

    # ----------------------------------------------------------------- persistence

    def save(self, path: Path | str) -> Path:
        """Write the scorer to ``path`` (a small torch file); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": _FORMAT,
            "version": _VERSION,
            "features": list(FEATURES),
            "hidden": self.hidden,
            "window": self.window,
            "fitted": self.fitted,
            "state_dict": {k: v.detach().clone() for k, v in self._net.state_dict().items()},
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> HighlightScorer:
        """A scorer saved by :meth:`save`. Raises :class:`ModelError` for a missing or foreign file."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as e:
            raise ModelError(f"no highlight scorer at {path}") from e
        except Exception as e:
            raise ModelError(f"{path} is not a highlight scorer file: {e}") from e
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ModelError(f"{path} is not a highlight scorer file")
        if state.get("version") != _VERSION or tuple(state.get("features", ())) != FEATURES:
            raise ModelError(
                f"{path} was saved for features {state.get('features')} (version {state.get('version')}); "
                f"this ACE expects {list(FEATURES)} (version {_VERSION})"
            )
        scorer = cls(hidden=int(state["hidden"]), window=int(state["window"]))
        try:
            scorer._net.load_state_dict(state["state_dict"])
        except (RuntimeError, KeyError) as e:
            raise ModelError(f"{path}: weights do not fit the scorer: {e}") from e
        scorer._net.eval()
        scorer.fitted = bool(state.get("fitted", True))
        return scorer

    def __repr__(self) -> str:
        return f"HighlightScorer(hidden={self.hidden}, window={self.window}, fitted={self.fitted})"
