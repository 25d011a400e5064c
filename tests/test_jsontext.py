"""JSON from outside is refused before the parser recurses deeply: the same answers as
json.loads for anything of reasonable depth, a JSONDecodeError ("nested too deeply") for the rest,
in the events route, event files and product lists alike."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ace import jsontext
from ace.errors import EventFormatError
from ace.events import load_events
from ace.products.catalog import ProductError, load_products


def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


_brackety = st.text(alphabet='[]{}"\\ab', max_size=8)  # strings full of what the scan must skip
_docs = st.recursive(st.none() | st.booleans() | st.integers() | _brackety,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_brackety, inner, max_size=3),
                     max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(doc=_docs, limit=st.integers(min_value=1, max_value=12))
def test_the_depth_is_measured_as_the_parser_sees_it(doc, limit):
    text = json.dumps(doc)
    assert jsontext.max_depth_of(text) == _depth(doc)
    if _depth(doc) <= limit:
        assert jsontext.too_deep_at(text, limit) is None
        assert jsontext.loads(text, limit) == doc
    else:
        at = jsontext.too_deep_at(text, limit)
        assert at is not None and text[at] in "[{"
        with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
            jsontext.loads(text, limit)


def test_a_hostile_nesting_is_refused_where_it_goes_too_deep():
    text = "[" * 100_000
    with pytest.raises(json.JSONDecodeError) as e:
        jsontext.loads(text)
    assert e.value.pos == jsontext.MAX_DEPTH and "nested too deeply" in e.value.msg
    # the same depth inside a string (escaped quote included) is only text
    s = '["\\"' + "[" * 5000 + '"]'
    assert jsontext.loads(s) == ['"' + "[" * 5000]
    assert jsontext.loads("[" * jsontext.MAX_DEPTH + "]" * jsontext.MAX_DEPTH) is not None
    # a long, shallow document (a chat export) is passed without the token-by-token scan, and an
    # unclosed string's brackets never make a text "too deep" that is not
    shallow = json.dumps([{"a": [i, {"b": "[[{"}]} for i in range(20_000)])
    assert jsontext.too_deep_at(shallow) is None and jsontext.max_depth_of(shallow) == 4
    assert jsontext.too_deep_at('["' + "[" * 500) is None


def test_event_files_and_product_lists_refuse_deep_nesting_with_where(tmp_path):
    events = tmp_path / "chat.json"
    events.write_text('[{"t": 1, "kind": "chat", "user": ' + "[" * 50_000 + "]", encoding="utf-8")
    with pytest.raises(EventFormatError, match="nested too deeply"):
        load_events(events)
    lines = tmp_path / "chat.jsonl"
    lines.write_text('{"t": 1, "kind": "chat"}\n{"t": 2, "kind": ' + "[" * 50_000 + "\n", encoding="utf-8")
    loaded = load_events(lines)
    assert len(loaded.events) == 1 and any("line 2" in w and "nested too deeply" in w for w in loaded.warnings)
    products = tmp_path / "products.json"
    products.write_text('[\n{"id": "a", "name": "A"},\n' + "{" * 10 + "[" * 50_000, encoding="utf-8")
    with pytest.raises(ProductError, match="line 3: .*nested more than 100 levels"):
        load_products(products)
