"""ace.evaluation.captions: WebVTT parsing, cue/word alignment, and timing on friday.vtt."""

from __future__ import annotations

import pytest

from ace.evaluation.captions import Cue, align_cues, evaluate_captions, parse_vtt, parse_vtt_text, summarise, tokens
from ace.types import Word

VTT = """\ufeffWEBVTT - a header line

NOTE a comment block
spanning two lines

STYLE
::cue { color: yellow }

intro
00:00:00.000 --> 00:00:00.999  line:80% align:start
Hildy!

00:01.000 --> 00:01.499
<v Walter>How are you?</v>

3
01:02:03.250 --> 01:02:04,500 position:10%
Tell me, is the lord
of the <i>universe</i> in? &amp; more
"""


def words(text: str, start: float, step: float = 0.3, dur: float = 0.25) -> list[Word]:
    """Whisper-like words (punctuation attached) every ``step`` seconds from ``start``."""
    return [Word(round(start + i * step, 3), round(start + i * step + dur, 3), w) for i, w in enumerate(text.split())]


# ---------------------------------------------------------------------------------------------- parsing


def test_parse_vtt_settings_ids_hours_and_markup(tmp_path):
    path = tmp_path / "x.vtt"
    path.write_text(VTT.replace("\n", "\r\n"), encoding="utf-8")
    cues = parse_vtt(path)
    assert [c.id for c in cues] == ["intro", "", "3"]
    assert [(c.start, c.end) for c in cues] == [(0.0, 0.999), (1.0, 1.499), (3723.25, 3724.5)]
    assert cues[0].settings == "line:80% align:start"
    assert cues[1].settings == "" and cues[2].settings == "position:10%"
    assert cues[0].text == "Hildy!"
    assert cues[1].text == "How are you?"
    assert cues[2].text == "Tell me, is the lord\nof the universe in? & more"


def test_parse_vtt_rejects_other_files_and_skips_broken_cues():
    with pytest.raises(ValueError, match="WEBVTT"):
        parse_vtt_text("1\n00:00:01,000 --> 00:00:02,000\nan SRT file\n")
    cues = parse_vtt_text("WEBVTT\n\n00:00:01.000 --> soon\nbroken\n\n00:00:02.000 --> 00:00:03.000\nkept\n")
    assert [(c.start, c.text) for c in cues] == [(2.0, "kept")]


def test_tokens_normalise_case_punctuation_contractions_and_numbers():
    assert tokens("Somebody must've stolen the crown jewels!") == ["somebody", "must", "have", "stolen", "the", "crown", "jewels"]
    assert tokens("Yes, he's in - in a bad humor") == ["yes", "hes", "in", "in", "a", "bad", "humor"]
    assert tokens("I can't, 3 2 1 GO") == ["i", "can", "not", "three", "two", "one", "go"]
    assert tokens("he\u2019s") == tokens("he's")


# -------------------------------------------------------------------------------------------- alignment


def test_align_exact_matches_give_the_timing_errors():
    cues = [Cue(0.0, 1.0, "Hello there."), Cue(1.5, 3.0, "How are you today?")]
    ws = words("Hello there.", 0.1) + words("How are you today?", 1.6)
    rows = align_cues(cues, ws)
    assert [r["status"] for r in rows] == ["matched", "matched"]
    assert [r["matched"] for r in rows] == [2, 4]
    assert rows[0]["start_error_s"] == pytest.approx(0.1)
    assert rows[0]["end_error_s"] == pytest.approx(0.65 - 1.0)
    assert rows[1]["start_error_s"] == pytest.approx(0.1)
    assert rows[1]["end_error_s"] == pytest.approx(1.6 + 0.9 + 0.25 - 3.0)
    assert rows[1]["transcript"] == "How are you today?"
    s = summarise(rows)
    assert s["cues"] == 2 and s["matched"] == 2 and s["unmatched"] == []
    assert s["start_mae_s"] == pytest.approx(0.1)
    assert s["end_max_s"] == pytest.approx(0.35)
    assert s["end_bias_s"] == pytest.approx((-0.35 - 0.25) / 2)


def test_align_reports_a_missing_cue_as_unmatched():
    cues = [Cue(0.0, 1.0, "Hildy!"), Cue(1.0, 2.0, "Tell me more."), Cue(2.0, 3.0, "Goodbye now.")]
    ws = words("Tell me more.", 1.2) + words("Goodbye now.", 2.05)
    rows = align_cues(cues, ws)
    assert len(rows) == 3, "an unmatched cue is kept"
    assert rows[0]["status"] == "unmatched" and rows[0]["matched"] == 0
    assert rows[0]["start_error_s"] is None and rows[0]["end_error_s"] is None
    assert rows[1]["start_error_s"] == pytest.approx(0.2)
    assert rows[2]["start_error_s"] == pytest.approx(0.05)
    s = summarise(rows)
    assert s["matched"] == 2 and s["unmatched"] == [1]
    assert s["start_mae_s"] == pytest.approx(0.125)
    assert s["start_max_s"] == pytest.approx(0.2)


def test_align_ignores_extra_words_and_pairs_near_spellings():
    cues = [Cue(1.0, 2.0, "the crown jewels"), Cue(3.0, 4.0, "in a bad humor")]
    ws = (
        words("Um, well,", 0.0)  # said before any cue
        + words("the crown, Jewell.", 1.0)  # "jewell" is close enough to "jewels"
        + words("oh", 2.5)  # between the cues
        + words("in a bad humor.", 3.0)
        + words("thanks bye", 5.0)  # after the last cue
    )
    rows = align_cues(cues, ws)
    assert [r["matched"] for r in rows] == [3, 4]
    assert rows[0]["fuzzy"] == 1 and rows[1]["fuzzy"] == 0
    assert rows[0]["transcript"] == "the crown, Jewell."
    assert rows[0]["start_error_s"] == pytest.approx(0.0)
    assert rows[0]["end_error_s"] == pytest.approx(1.85 - 2.0)
    assert rows[1]["first_token_matched"] and rows[1]["last_token_matched"]


def test_align_does_not_pair_different_words():
    rows = align_cues([Cue(0.0, 1.0, "How are you?")], words("All right,", 0.1))
    assert rows[0]["status"] == "unmatched"


def test_align_repeated_words_stay_in_their_own_cue():
    cues = [Cue(0.0, 1.0, "go go"), Cue(2.0, 3.0, "go go go")]
    ws = words("go go", 0.1) + words("go go go", 2.2)
    rows = align_cues(cues, ws)
    assert [r["matched"] for r in rows] == [2, 3]
    assert rows[1]["start_error_s"] == pytest.approx(0.2)


# ------------------------------------------------------------------------------------------- real media


@pytest.fixture(scope="module")
def friday(eval_data, tmp_path_factory):
    from ace.config import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), cpu_threads=2)
    return evaluate_captions(eval_data, settings=settings)


@pytest.mark.slow
@pytest.mark.shared_data
def test_friday_cue_timing(friday):
    s = friday["summary"]
    rows = friday["rows"]
    assert s["cues"] == 5 and len(rows) == 5
    # tiny.en (with the pipeline's VAD) hears "Hildy! How are you?" as "All right," or not at all;
    # the three cues after it are recognised. A better model may match more, never fewer.
    assert s["matched"] >= 3
    assert all(r["status"] == "matched" for r in rows[2:])
    # measured: start errors -0.02/+0.06/+0.26 s, end errors -0.14/+0.14/+0.12 s (MAE 0.11 / 0.13 s)
    assert s["start_mae_s"] <= 0.3 and s["end_mae_s"] <= 0.3
    assert s["start_max_s"] <= 0.5 and s["end_max_s"] <= 0.5
    assert s["model"]
    for r in rows[2:]:
        assert r["matched"] >= 0.6 * r["tokens"], r
