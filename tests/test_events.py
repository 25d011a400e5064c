"""ace.events: every supported format, the bad-input cases and the JSONL round trip."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import pytest

from ace.errors import EventFormatError, InputError
from ace.events import (
    FORMAT_BILIBILI,
    FORMAT_EMPTY,
    FORMAT_JSON,
    FORMAT_JSONL,
    FORMAT_TWITCH,
    event_to_json,
    iter_jsonl_lines,
    load_events,
    write_jsonl,
)
from ace.types import EVENT_KINDS, Event

# --------------------------------------------------------------------------------------------------
# fixtures


def _twitch_comment(i: int, t: float, name: str, body: str, *, bits: int = 0, msg_id: str | None = None, display: str | None = None) -> dict:
    """A comment shaped like TwitchDownloader's ChatRoot.comments[] entries."""
    display = display or name
    return {
        "_id": f"c0ffee00-0000-4000-8000-{i:012d}",
        "created_at": "2024-03-02T18:04:05.123Z",
        "channel_id": "123456789",
        "content_type": "video",
        "content_id": "2071234567",
        "content_offset_seconds": t,
        "commenter": {
            "display_name": display,
            "_id": str(40000000 + i),
            "name": name.lower(),
            "logo": "https://static-cdn.jtvnw.net/user-default-pictures-uv/x-profile_image-70x70.png",
        },
        "message": {
            "body": body,
            "bits_spent": bits,
            "fragments": [{"text": body, "emoticon": None}],
            "user_badges": [{"_id": "subscriber", "version": "12"}],
            "user_color": "#1E90FF",
            "user_notice_params": {"msg_id": msg_id},
            "emoticons": [],
        },
    }


def _twitch_doc(comments: list[dict], start: float = 0.0) -> dict:
    return {
        "FileInfo": {"Version": {"Major": 1, "Minor": 4, "Patch": 0}, "CreatedAt": "2024-03-03T10:00:00Z"},
        "streamer": {"name": "CozyShopTV", "id": 123456789},
        "video": {"title": "Sunday sale!", "id": "2071234567", "created_at": "2024-03-02T18:00:00Z", "start": start, "end": 600.0, "length": 7200.0},
        "comments": comments,
        "embeddedData": None,
    }


@pytest.fixture
def twitch_file(tmp_path: Path) -> Path:
    c = [
        _twitch_comment(1, 3.25, "Mia_88", "hello from Lisbon!"),
        _twitch_comment(2, 4.5, "bob", "Cheer100 take my bits", bits=100),
        _twitch_comment(3, 7.0, "CarlaZ", "CarlaZ subscribed at Tier 1. They've subscribed for 5 months! love this stream", msg_id="resub"),
        _twitch_comment(4, 8.0, "dan", "dan subscribed with Prime.", msg_id="sub"),
        _twitch_comment(5, 9.0, "GenerousGuy", "GenerousGuy is gifting 3 Tier 1 Subs to CozyShopTV's community! They've gifted a total of 10 in the channel!", msg_id="submysterygift"),
        _twitch_comment(6, 9.1, "GenerousGuy", "GenerousGuy gifted a Tier 1 sub to a1!", msg_id="subgift"),
        _twitch_comment(7, 9.2, "GenerousGuy", "GenerousGuy gifted a Tier 1 sub to a2!", msg_id="subgift"),
        _twitch_comment(8, 9.3, "GenerousGuy", "GenerousGuy gifted a Tier 1 sub to a3!", msg_id="subgift"),
        _twitch_comment(9, 12.0, "RaidLord", "250 raiders from RaidLord have joined!", msg_id="raid"),
        _twitch_comment(10, 13.0, "StreamElements", "newbie42 just followed!"),
        _twitch_comment(11, 14.0, "eve", "eve subscribed at Tier 3 lol jk"),  # typed by eve herself: a sub-looking chat line
        _twitch_comment(12, 15.0, "frank", "bob subscribed at Tier 1"),  # someone else's name: just chat
        _twitch_comment(13, 2.0, "early", "first!"),  # out of order in the file
    ]
    c[10]["message"]["user_notice_params"] = None
    c.append({"_id": "broken-1", "content_offset_seconds": "soon", "commenter": {"name": "x"}, "message": {"body": "hi"}})
    c.append({"_id": "broken-2", "content_offset_seconds": 20.0, "message": {"body": "no commenter"}})
    c.append({"_id": "broken-3", "content_offset_seconds": -1.0, "commenter": {"name": "neg"}, "message": {"body": "negative"}})
    p = tmp_path / "2071234567_chat.json"
    p.write_text(json.dumps(_twitch_doc(c), indent=2), encoding="utf-8")
    return p


BILIBILI_VIDEO_XML = """<?xml version="1.0" encoding="UTF-8"?><i><chatserver>chat.bilibili.com</chatserver><chatid>123456</chatid><mission>0</mission><maxlimit>1500</maxlimit><state>0</state><real_name>0</real_name><source>k-v</source>
<d p="12.40100,1,25,16777215,1709391845,0,8b1e4f2a,1400812345678901248">前方高能</d>
<d p="3.00000,5,25,16711680,1709391801,0,a0c3d9e1,1400812345678901249">来了来了</d>
<d p="15.9,4,25,16777215,1709391850,0,8b1e4f2a,1400812345678901250">哈哈哈哈 &amp; 233</d>
<d p="oops,1,25,16777215,1709391850,0,ffff0000,1400812345678901251">bad time</d>
<d>no p at all</d>
</i>
"""

BILILIVE_RECORDER_XML = """<?xml version="1.0" encoding="utf-8"?>
<?xml-stylesheet type="text/xsl" href="#s"?>
<i>
  <!--
B站录播姬 2.10.1
sc 为SuperChat
gift为礼物
guard为上船
-->
  <chatserver>chat.bilibili.com</chatserver>
  <chatid>0</chatid>
  <BililiveRecorder version="2.10.1" />
  <BililiveRecorderRecordInfo roomid="21452505" shortid="0" name="主播" title="带货专场" areanameparent="购物" areanamechild="好物" start_time="2024-03-02T20:00:00.0000000+08:00" />
  <z:stylesheet version="1.0" id="s" xml:id="s" xmlns:z="http://www.w3.org/1999/XSL/Transform"><z:template match="/"><html><d p="999,1,25,0,0,0,nested,0">inside the stylesheet, not a record</d></html></z:template></z:stylesheet>
  <d p="5.123,1,25,16777215,1709380805123,0,3493118,0" user="小明">上链接!</d>
  <d p="6.500,1,25,16777215,1709380806500,0,1789012,0" user="阿花">三二一</d>
  <sc ts="7.250" user="大佬" uid="55555" price="30" time="60">主播加油</sc>
  <gift ts="8.000" user="阿花" uid="1789012" giftname="小心心" giftcount="5" />
  <guard ts="9.500" user="舰长甲" uid="777" level="3" count="1" />
  <gift ts="x" user="bad" uid="1" giftname="broken" giftcount="1" />
</i>
"""


def _png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------------------
# ACE JSONL


def test_jsonl_valid_and_malformed_lines(tmp_path: Path) -> None:
    p = tmp_path / "show.events.jsonl"
    p.write_text(
        "\n".join(
            [
                "# ACE events, show 42",
                '{"t": 3.5, "kind": "chat", "user": "mia_88", "text": "how much is it?"}',
                "",
                '{"t": 1.0, "kind": "like", "user": "bob"}',
                '{"t": 2.0, "kind": "gift", "user": "li.wei", "value": 50, "extra": "ignored"}',
                '{"t": 4.0, "kind": "viewers", "user": "", "value": 1834}',
                '{"t": 5.0, "kind": "Cart", "user": 1234}',
                '{"t": 6.0, "kind": "superchat", "user": "x"}',  # unknown kind
                '{"t": -1.0, "kind": "chat", "user": "x"}',  # negative
                '{"t": NaN, "kind": "chat", "user": "x"}',  # not finite
                '{"t": "7", "kind": "chat", "user": "x"}',  # t as a string
                '{"t": 8.0, "kind": "gift", "user": "x", "value": "lots"}',
                '{"t": 9.0, "kind": "chat", "user": "x", "text": 5}',
                '{"kind": "chat", "user": "x"}',  # no t
                '{"t": 10.0, "kind": "chat", "user": "x"',  # truncated JSON
                "[1, 2, 3]",
                '{"t": 11.0, "kind": "order", "user": "zoe", "value": 2}',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    load = load_events(p)
    assert load.format == FORMAT_JSONL
    assert [e.t for e in load.events] == [1.0, 2.0, 3.5, 4.0, 5.0, 11.0]
    assert [e.kind for e in load.events] == ["like", "gift", "chat", "viewers", "cart", "order"]
    assert load.events[2] == Event(3.5, "chat", "mia_88", 1.0, "how much is it?")
    assert load.events[1].value == 50.0 and load.events[3].value == 1834.0
    assert load.events[4].user == "1234"  # numeric user ids become strings
    by_line = {int(w.split(":")[0].split()[1]): w for w in load.warnings}
    assert sorted(by_line) == [8, 9, 10, 11, 12, 13, 14, 15, 16]
    assert "unknown kind" in by_line[8]
    assert ">= 0" in by_line[9] and "finite" in by_line[10]
    assert "'t' must be a number" in by_line[11]
    assert "'value'" in by_line[12] and "'text'" in by_line[13]
    assert "missing 't'" in by_line[14]
    assert "not valid JSON" in by_line[15]
    assert "JSON object" in by_line[16]
    assert all(w.startswith("line ") for w in load.warnings)


def test_jsonl_first_line_broken_is_still_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_text('{"t": 1.0, "kind": "chat", "user": \n{"t": 2.0, "kind": "chat", "user": "a"}\n')
    load = load_events(p)
    assert load.format == FORMAT_JSONL
    assert len(load.events) == 1 and load.warnings[0].startswith("line 1:")


def test_jsonl_crlf_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"t": 1, "kind": "follow", "user": "a"}\r\n{"t": 2, "kind": "share", "user": "b"}\r\n')
    load = load_events(p)
    assert [e.kind for e in load.events] == ["follow", "share"] and load.warnings == []


def test_ace_json_array(tmp_path: Path) -> None:
    p = tmp_path / "e.json"
    p.write_text(json.dumps([{"t": 2, "kind": "chat", "user": "a"}, {"t": 1, "kind": "like", "user": "b"}, {"t": 3, "kind": "nope"}]))
    load = load_events(p)
    assert load.format == FORMAT_JSON
    assert [e.t for e in load.events] == [1.0, 2.0]
    assert load.warnings and load.warnings[0].startswith("record 3:")


def test_iter_jsonl_lines_for_a_growing_file(tmp_path: Path) -> None:
    lines = ['{"t": 1, "kind": "chat", "user": "a"}\n', "\n", "# note\n", "garbage\n", b'{"t": 2, "kind": "like", "user": "b"}\n']
    got = list(iter_jsonl_lines(lines, start_line=41))
    assert [g.line for g in got] == [41, 44, 45]
    assert got[0].event == Event(1.0, "chat", "a") and got[0].warning is None
    assert got[1].event is None and got[1].warning.startswith("line 44:")
    assert got[2].event.kind == "like"

    # a reader tailing a file: feed complete lines only, keep numbering across reads
    p = tmp_path / "live.jsonl"
    p.write_text('{"t": 1, "kind": "chat", "user": "a"}\n{"t": 2, "kind": "chat", "us')
    seen: list[Event] = []
    with open(p, encoding="utf-8") as f:
        next_line, pending = 1, ""
        for _ in range(2):
            pending += f.read()
            *complete, pending = pending.split("\n")
            for item in iter_jsonl_lines(complete, start_line=next_line):
                if item.event:
                    seen.append(item.event)
            next_line += len(complete)
            with open(p, "a", encoding="utf-8") as w:
                w.write('er": "b"}\n')
    assert [e.user for e in seen] == ["a", "b"]


def test_round_trip(tmp_path: Path) -> None:
    events = [
        Event(0.0, "viewers", "", 812.0),
        Event(1.25, "chat", "mia_88", 1.0, 'she said "wow" 🔥\nnew line'),
        Event(1.25, "gift", "大佬", 66.6, "火箭"),
        Event(2.0, "like", "bob"),
        Event(3.123456789, "order", "zoe", 2.0),
        Event(4.0, "order", "kim", promoted=True, trusted=True),
        Event(4.5, "impression", "", 300.0, promoted=True),
    ]
    events += [Event(10.0 + i * 0.1, k, f"u{i}") for i, k in enumerate(EVENT_KINDS)]
    p = write_jsonl(events, tmp_path / "sub" / "rt.jsonl")
    assert p.exists() and not list(p.parent.glob(".*tmp"))
    load = load_events(p)
    assert load.warnings == [] and load.format == FORMAT_JSONL
    assert load.events == sorted(events, key=lambda e: e.t)
    first = p.read_text(encoding="utf-8").splitlines()[3]
    assert json.loads(first) == {"t": 2.0, "kind": "like", "user": "bob"}  # value 1 and empty text left out
    assert json.loads(event_to_json(Event(1.0, "gift", "a", 5.0)))["value"] == 5
    assert json.loads(event_to_json(Event(1.0, "order", "a", promoted=True))) == {"t": 1.0, "kind": "order", "user": "a",
                                                                                 "promoted": True}


def test_promoted_and_trusted_must_be_booleans(tmp_path: Path) -> None:
    p = tmp_path / "flags.jsonl"
    p.write_text('{"t": 1, "kind": "order", "user": "a", "promoted": "yes"}\n'
                 '{"t": 2, "kind": "entry", "user": "b", "promoted": true, "trusted": null}\n')
    load = load_events(p)
    assert [(e.kind, e.promoted, e.trusted) for e in load.events] == [("entry", True, False)]
    assert len(load.warnings) == 1 and "'promoted' must be true or false" in load.warnings[0]


# --------------------------------------------------------------------------------------------------
# Twitch


def test_twitch_chat_json(twitch_file: Path) -> None:
    load = load_events(twitch_file)
    assert load.format == FORMAT_TWITCH
    ev = load.events
    assert [e.t for e in ev] == sorted(e.t for e in ev)
    assert ev[0] == Event(2.0, "chat", "early", 1.0, "first!")
    chats = [e for e in ev if e.kind == "chat"]
    assert {e.user for e in chats} >= {"mia_88", "bob", "early", "frank"}
    gifts = [(e.t, e.user, e.value) for e in ev if e.kind == "gift"]
    assert (4.5, "bob", 100.0) in gifts  # cheer: bits
    assert (7.0, "carlaz", 500.0) in gifts  # resub tier 1
    assert (8.0, "dan", 500.0) in gifts  # prime
    assert (9.0, "generousguy", 1500.0) in gifts  # 3 gifted subs counted once
    assert not [g for g in gifts if g[1] == "generousguy" and g[0] > 9.0]
    assert (14.0, "eve", 2500.0) in gifts  # text starts with her own name: Twitch's notice shape
    assert not [g for g in gifts if g[1] == "frank"]
    assert [e for e in ev if e.t == 4.5 and e.kind == "chat"]  # a cheer is also a chat line
    shares = [e for e in ev if e.kind == "share"]
    assert shares == [Event(12.0, "share", "RaidLord", 250.0, "250 raiders from RaidLord have joined!")]
    assert [e for e in ev if e.kind == "follow"] == [Event(13.0, "follow", "newbie42", 1.0, "newbie42 just followed!")]
    assert len(load.warnings) == 3
    assert load.warnings[0].startswith("comment 14:") and "content_offset_seconds" in load.warnings[0]
    assert load.warnings[1].startswith("comment 15:") and "commenter" in load.warnings[1]
    assert load.warnings[2].startswith("comment 16:") and "negative" in load.warnings[2]


def test_twitch_trimmed_download_is_shifted(tmp_path: Path) -> None:
    doc = _twitch_doc([_twitch_comment(1, 130.0, "a", "hi"), _twitch_comment(2, 100.5, "b", "yo")], start=100.0)
    p = tmp_path / "chat.json"
    p.write_text(json.dumps(doc))
    load = load_events(p)
    assert [(e.t, e.user) for e in load.events] == [(0.5, "b"), (30.0, "a")]


def test_twitch_gzip(tmp_path: Path) -> None:
    doc = _twitch_doc([_twitch_comment(i, i * 1.5, f"user{i % 3}", f"msg {i}") for i in range(1, 21)])
    p = tmp_path / "chat.json.gz"
    p.write_bytes(gzip.compress(json.dumps(doc).encode()))
    load = load_events(p)
    assert load.format == FORMAT_TWITCH and len(load.events) == 20 and load.warnings == []


# --------------------------------------------------------------------------------------------------
# Bilibili


def test_bilibili_video_danmaku(tmp_path: Path) -> None:
    p = tmp_path / "BV1xx411c7mD.xml"
    p.write_text(BILIBILI_VIDEO_XML, encoding="utf-8")
    load = load_events(p)
    assert load.format == FORMAT_BILIBILI
    assert [(e.t, e.kind, e.user, e.text) for e in load.events] == [
        (3.0, "chat", "a0c3d9e1", "来了来了"),
        (12.401, "chat", "8b1e4f2a", "前方高能"),
        (15.9, "chat", "8b1e4f2a", "哈哈哈哈 & 233"),
    ]
    assert len(load.warnings) == 2
    assert load.warnings[0].startswith("line 5:") and "time" in load.warnings[0]
    assert load.warnings[1].startswith("line 6:") and "'p'" in load.warnings[1]


def test_bililive_recorder_xml(tmp_path: Path) -> None:
    p = tmp_path / "录制-21452505-20240302-200000.xml"
    p.write_text(BILILIVE_RECORDER_XML, encoding="utf-8")
    load = load_events(p)
    got = [(e.t, e.kind, e.user, e.value) for e in load.events]
    assert got == [
        (5.123, "chat", "3493118", 1.0),
        (6.5, "chat", "1789012", 1.0),
        (7.25, "chat", "55555", 1.0),
        (7.25, "gift", "55555", 30.0),
        (8.0, "gift", "1789012", 5.0),
        (9.5, "gift", "777", 198.0),
    ]
    bad_line = BILILIVE_RECORDER_XML.splitlines().index('  <gift ts="x" user="bad" uid="1" giftname="broken" giftcount="1" />') + 1
    assert len(load.warnings) == 1 and "<gift>" in load.warnings[0] and load.warnings[0].startswith(f"line {bad_line}:")


def test_truncated_danmaku_keeps_what_was_read(tmp_path: Path) -> None:
    p = tmp_path / "cut.xml"
    p.write_text(BILILIVE_RECORDER_XML[: BILILIVE_RECORDER_XML.index("<guard")] + "<d p=\"10,1", encoding="utf-8")
    load = load_events(p)
    assert len(load.events) == 5
    assert any("XML error" in w for w in load.warnings)


def test_xml_entity_bomb_is_refused(tmp_path: Path) -> None:
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE i [\n<!ENTITY a "aaaaaaaaaa">\n'
        + "".join(f'<!ENTITY {chr(98 + k)} "{("&" + chr(97 + k) + ";") * 10}">\n' for k in range(8))
        + ']>\n<i><d p="1,1,25,0,0,0,u,0">&i;</d></i>\n'
    )
    p = tmp_path / "bomb.xml"
    p.write_text(bomb)
    with pytest.raises(EventFormatError, match="DOCTYPE"):
        load_events(p)
    p.write_text('<?xml version="1.0"?><!DOCTYPE i SYSTEM "file:///etc/passwd"><i/>')
    with pytest.raises(EventFormatError, match="DOCTYPE"):
        load_events(p)


def test_other_xml_is_not_danmaku(tmp_path: Path) -> None:
    p = tmp_path / "image.svg"
    p.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>')
    with pytest.raises(EventFormatError, match="not Bilibili danmaku"):
        load_events(p)
    p.write_text("<i><d p='1,1'>unclosed")
    with pytest.raises(EventFormatError):
        load_events(p)


# --------------------------------------------------------------------------------------------------
# not events at all


@pytest.mark.parametrize(
    "content, match",
    [
        (_png_bytes(), "binary"),
        (b"\x00\x01\x02\x03garbage\xff\xfe", "binary"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "binary"),
        (b"Dear diary,\nToday the stream was fun.\nThe end.\n", "not an events file"),
        (b"{}", "not an events file"),
        (b'{"name": "config", "debug": true}\n', "not an events file"),
        (b"[1, 2, 3]", "not of ACE events"),
        (b'{"comments": "nope"}', "not a list"),
        (b'{"comments": [', "not valid JSON"),
        (b'{"a": 1}\n{"b": 2}\n', "not an events file"),
    ],
)
def test_not_events_raise(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "input.jsonl"
    p.write_bytes(content)
    with pytest.raises(EventFormatError, match=match):
        load_events(p)


def test_empty_files_give_no_events(tmp_path: Path) -> None:
    for content in (b"", b"\n\n  \n", b"# only a comment\n"):
        p = tmp_path / "empty.jsonl"
        p.write_bytes(content)
        load = load_events(p)
        assert load.events == [] and load.warnings == []
        assert load.format in (FORMAT_EMPTY, FORMAT_JSONL)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_events(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="folder"):
        load_events(tmp_path)
    # EventFormatError is an InputError too, so callers can catch one
    assert issubclass(EventFormatError, InputError)


def test_many_warnings_are_capped_but_counted(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    good = '{"t": 1, "kind": "chat", "user": "a"}\n'
    bad = '{"t": 1, "kind": "bogus", "user": "a"}\n'
    p.write_text(good + bad * 1200)
    load = load_events(p)
    assert len(load.events) == 1
    assert load.warnings[-1] == f"{1200 - 500} more warnings not shown"
