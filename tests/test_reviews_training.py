"""A tenant's approve/reject reviews tune its own highlight model, and its shows then use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ace.signals.chat import chat_series
from ace.training import MIN_REVIEWS_TO_TUNE, reviewed_shows, tune_on_reviews
from ace.types import Event
from models.scorer import default_model, model_for, tenant_model_path
from tests.test_chat_highlights import BACKGROUND, write_events


def two_kinds(seed: int, n: int = 16, duration: float = 1200.0, delay: float = 5.0):
    """Chat with bursts of two kinds, alternating: laughter ("LUL") and hype ("PogChamp"), each
    ``delay`` s after its moment. Returns (events, [(start, end, kind)], duration)."""
    rng = np.random.default_rng(seed)
    events = [Event(float(t), "chat", f"v{rng.integers(0, 500)}", text=str(rng.choice(BACKGROUND)))
              for t in np.sort(rng.uniform(0, duration, int(0.5 * duration)))]
    moments = []
    for k, s in enumerate(np.linspace(60, duration - 90, n)):
        kind = "laugh" if k % 2 else "hype"
        text = "LUL LUL" if kind == "laugh" else "PogChamp"
        moments.append((float(s), float(s) + 15.0, kind))
        for j, t in enumerate(np.sort(rng.uniform(s + delay, s + delay + 12, 40))):
            events.append(Event(float(t), "chat", f"f{k}_{j}", text=text))
    events.sort(key=lambda e: e.t)
    return events, moments, duration


def test_reviews_become_partial_labels_and_missing_chat_is_said(tmp_path):
    events, moments, _ = two_kinds(1)
    path = write_events(tmp_path / "s1" / "events.jsonl", events)
    reviews = [{"show_id": "s1", "start": 100.0, "end": 110.0, "verdict": "approve"},
               {"show_id": "s1", "start": 105.0, "end": 120.0, "verdict": "reject"},  # overlaps: approval wins there
               {"show_id": "s1", "start": 300.0, "end": 310.0, "verdict": "reject"},
               {"show_id": "gone", "start": 1.0, "end": 5.0, "verdict": "approve"}]
    shows, skipped = reviewed_shows(reviews, lambda sid: path if sid == "s1" else None)
    assert [s.name for s in shows] == ["s1"] and shows[0].approved == 1 and shows[0].rejected == 2
    y = shows[0].labels
    assert np.all(y[100:110] == 1) and np.all(y[110:120] == 0) and np.all(y[300:310] == 0)
    assert np.isnan(y[50]) and np.isnan(y[200])
    assert len(skipped) == 1 and skipped[0].startswith("gone") and "no chat log" in skipped[0]


def test_a_few_reviews_recalibrate_only_and_many_move_the_weights(tmp_path):
    base = default_model()
    events, moments, duration = two_kinds(2)
    path = write_events(tmp_path / "s" / "events.jsonl", events)
    # the tenant wants hype, not laughter
    reviews = [{"show_id": "s", "start": a, "end": b, "verdict": "approve" if kind == "hype" else "reject"}
               for a, b, kind in moments]
    few = reviews[:4]
    shows, _ = reviewed_shows(few, lambda sid: path)
    m = tune_on_reviews(base, shows, "tenant t")
    assert m.weights == base.weights and m.calibration != base.calibration
    assert not m.metrics["reviews"]["weights_tuned"] and "tenant t" in m.trained_on

    many = []
    for seed in (3, 4):  # two shows, 16 reviewed moments each
        ev, ms, _ = two_kinds(seed)
        p = write_events(tmp_path / f"s{seed}" / "events.jsonl", ev)
        many += [{"show_id": f"s{seed}", "start": a, "end": b, "verdict": "approve" if k == "hype" else "reject",
                  "_path": p} for a, b, k in ms]
    paths = {r["show_id"]: r["_path"] for r in many}
    shows, _ = reviewed_shows(many, paths.get)
    assert sum(s.approved for s in shows) >= MIN_REVIEWS_TO_TUNE and sum(s.rejected for s in shows) >= MIN_REVIEWS_TO_TUNE
    tuned = tune_on_reviews(base, shows, "tenant t")
    assert tuned.metrics["reviews"]["weights_tuned"] and tuned.weights != base.weights

    # on a show neither model saw, the tuned one prefers hype bursts to laughter, more than the base does
    ev, ms, d = two_kinds(9)
    series = chat_series(ev, d)

    def preference(model) -> float:
        p = model.probability(series)
        hype = np.mean([p[int(a):int(b)].max() for a, b, k in ms if k == "hype"])
        laugh = np.mean([p[int(a):int(b)].max() for a, b, k in ms if k == "laugh"])
        return hype - laugh

    assert preference(tuned) > preference(base) + 0.05


def test_no_usable_reviews_is_a_clear_error():
    from ace.errors import InputError

    with pytest.raises(InputError, match="no reviews"):
        tune_on_reviews(default_model(), [], "tenant t")


def test_a_tenants_own_model_is_used_by_default_and_only_for_it(tmp_path):
    own = tenant_model_path(tmp_path, "acme")
    m = default_model()
    tuned = type(m)(**{**m.__dict__, "trained_on": "acme's own"})
    tuned.save(own)
    assert model_for("default", tmp_path, "acme").trained_on == "acme's own"
    assert model_for("default", tmp_path, "other").trained_on == m.trained_on
    assert model_for(None, tmp_path, None).trained_on == m.trained_on
    other = tmp_path / "x.json"
    m.save(other)
    assert model_for(str(other), tmp_path, "acme").trained_on == m.trained_on  # an explicit --scorer wins
    # odd tenant names never leave the scorers folder
    p = tenant_model_path(tmp_path, "../../etc/passwd")
    assert p.parent == tmp_path / "scorers" and "/" not in p.name[len("tenant-"):]


def test_cli_train_on_a_tenants_reviews_in_the_store(tmp_path, capsys):
    """Reviews saved through the store, chat kept in the live streams' journals: `ace train
    --reviews` writes the tenant's own model, which then serves that tenant's shows by default."""
    from commands.main import main
    from ace.store import Store
    from ace.types import Moment

    data = tmp_path / "data"
    store = Store(f"sqlite:///{data / 'ace.db'}")
    store.create_all()
    for tenant, sid, seed in (("acme", "live-a", 5), ("acme", "live-b", 6), ("other", "live-c", 7)):
        ev, ms, _ = two_kinds(seed)
        write_events(data / "live" / sid / "events.jsonl", ev)
        store.upsert_show(sid, path=f"rtmp://example/{sid}", name=sid, duration=1200.0, settings_hash="h",
                          status="done", tenant=tenant)
        moments = [Moment(sid, a, b, 0.5, a + 5, rank=k + 1, confidence=50.0) for k, (a, b, _kind) in enumerate(ms)]
        store.save_results(sid, moments, [], "h", tenant=tenant)
        for m, (_a, _b, kind) in zip(moments, ms):
            assert store.set_review(m.id, "approve" if kind == "hype" else "reject", tenant=tenant)
    rows = store.tenant_reviews("acme")
    assert len(rows) == 32 and {r["show_id"] for r in rows} == {"live-a", "live-b"}  # never another tenant's

    assert main(["train", "--reviews", "acme", "--data-dir", str(data)]) == 0
    target = Path(capsys.readouterr().out.strip())
    assert target == tenant_model_path(data, "acme") and target.is_file()
    own = model_for("default", data, "acme")
    assert "acme" in own.trained_on and own.metrics["reviews"] == {"approved": 16, "rejected": 16, "shows": 2,
                                                                    "weights_tuned": True}
    assert model_for("default", data, "other").trained_on == default_model().trained_on

    # a tenant with no reviews: a clear error, nothing written
    assert main(["train", "--reviews", "nobody", "--data-dir", str(data)]) == 2
    assert "no reviews" in capsys.readouterr().err
    assert not tenant_model_path(data, "nobody").exists()
