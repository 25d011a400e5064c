"""Product lists, what the host says about products, ad-wording checks and product segments
(no media: transcripts are written by hand here; the sample shows test them end to end)."""

from __future__ import annotations

import json

import pytest

from ace.events import load_events
from ace.products.adwords import AdWordChecker, hits_in, parse_ad_words
from ace.products.catalog import ProductError, load_products, parse_products, product_to_dict, tag_events
from ace.products.segments import PitchTracker, find_segments
from ace.products.text import ProductMatcher, cn_number, en_number, link_call, numbers, says_price
from ace.errors import InputError
from ace.types import Event, Product, Sentence, Word

MUG = Product("mug-01", "Aurora travel mug", ("travel mug",), 29.0)
LAMP = Product("lamp-02", "Nova desk lamp", ("desk lamp",), 45.0)
CUP = Product("cup", "小熊保温杯", ("保温杯",), 69.0)
KETTLE = Product("kettle", "电热水壶", (), 99.0)


def S(start: float, end: float, text: str) -> Sentence:
    return Sentence(start, end, text)


# ------------------------------------------------------------------------------------------ catalog


def test_a_product_list_reads_json_json_lines_and_a_products_object(tmp_path):
    items = [{"id": "mug-01", "name": "Aurora travel mug", "aliases": ["travel mug"], "price": 29, "sku": "AUR",
              "image": "https://shop.example/m.jpg"}, {"id": 7, "name": "小熊保温杯", "price": "¥69"}]
    a = tmp_path / "a.json"
    a.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in items) + "\n", encoding="utf-8")
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"products": items}, ensure_ascii=False), encoding="utf-8")
    for f in (a, b, c):
        ps = load_products(f)
        assert [p.id for p in ps] == ["mug-01", "7"]
        assert ps[0].aliases == ("travel mug",) and ps[0].price == 29.0 and ps[1].price == 69.0
    assert parse_products([product_to_dict(p) for p in load_products(a)]) == load_products(a)


@pytest.mark.parametrize("text, where", [
    ('[\n {"id": "a", "name": "A"},\n {"id": "b", "name": "B", "price": "cheap"}\n]', "line 3: 'price'"),
    ('[\n {"id": "a", "name": "A"},\n\n {"id": "b"}\n]', "line 4: 'name'"),
    ('{"id": "a", "name": "A"}\n{"id": "a", "name": "again"}\n', "line 2: id 'a' is used twice"),
    ('{"id": "a", "name": "A"}\n{"id": "b", "name": "B", "colour": "red"}\n', "line 2: unknown field 'colour'"),
    ('{"id": "a", "name": "A"}\n{"id": "b" "name": "B"}\n', "line 2: not valid JSON"),
    ('[\n {"id": "a", "name": "A"},\n {"id": "../x", "name": "B"}\n]', "line 3: 'id'"),
    ('[\n {"id": "a", "name": "A", "image": "file:///etc/passwd"}\n]', "line 2: 'image'"),
])
def test_a_bad_product_file_names_the_line_and_the_field(tmp_path, text, where):
    f = tmp_path / "products.json"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ProductError) as e:
        load_products(f)
    assert f"products.json {where}" in str(e.value)
    assert isinstance(e.value, InputError)


def test_missing_and_empty_product_files_are_clear_errors(tmp_path):
    with pytest.raises(ProductError, match="no such product file"):
        load_products(tmp_path / "nope.json")
    (tmp_path / "e.json").write_text("  \n", encoding="utf-8")
    with pytest.raises(ProductError, match="no products"):
        load_products(tmp_path / "e.json")
    with pytest.raises(ProductError, match=r"products\[1\]: 'price'"):
        parse_products(["mug", {"id": "x", "name": "X", "price": -1}])


def test_events_naming_an_unknown_product_are_kept_untagged_with_a_warning(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text('{"t": 1, "kind": "cart", "user": "a", "product": "mug-01"}\n'
                 '{"t": 2, "kind": "order", "user": "b", "product": "ghost"}\n'
                 '{"t": 3, "kind": "order", "user": "c", "product": "ghost"}\n', encoding="utf-8")
    events = load_events(f).events
    assert [e.product for e in events] == ["mug-01", "ghost", "ghost"]
    tagged, warnings = tag_events(events, [MUG])
    assert [e.product for e in tagged] == ["mug-01", "", ""]
    assert len(tagged) == 3 and tagged[1].kind == "order" and tagged[1].user == "b"
    assert warnings == ["2 event(s) name product 'ghost', which is not in the product list; kept as untagged events"]


# ------------------------------------------------------------------------------------------ text


def test_numbers_are_read_in_digits_chinese_numerals_and_english_words():
    assert cn_number("一百九十九") == 199 and cn_number("六十九") == 69 and cn_number("九块九") == 9.9
    assert cn_number("两千") == 2000 and cn_number("十五") == 15 and cn_number("一万二千") == 12000
    assert en_number("forty nine") == 49 and en_number("one hundred and ninety nine") == 199
    assert numbers("原价199元，今天只要六十九元") == [199, 69]
    assert says_price("It is usually forty nine dollars, today only twenty nine.", 29)
    assert says_price("只要 ¥1,299", 1299) and not says_price("只要一百块", 69) and not says_price("anything", None)


def test_link_calls_in_english_and_mandarin_even_misheard():
    assert link_call("Three, two, one, the link is up!")
    assert link_call("3, 2, 1, go!")
    assert link_call("上链接！") and link_call("上练肩") and link_call("三二一上链接")
    assert not link_call("We talked about the weather in the link building") and not link_call("今天天气不错")


def test_products_are_matched_by_name_alias_sound_and_script():
    m = ProductMatcher([MUG, LAMP, CUP, KETTLE])
    assert set(m.mentions("Next up is the Aurora travel mugs.")) == {"mug-01"}
    assert set(m.mentions("this desk lamp has three levels")) == {"lamp-02"}
    assert set(m.mentions("接下来给大家介绍这款小雄保溫杯")) == {"cup"}  # homophone, traditional character
    assert set(m.mentions("電熱水壺燒水很快")) == {"kettle"}
    assert m.mentions("I like my old mug and a lamp") == {}
    assert m.mentions("今天天气不错") == {}


# ------------------------------------------------------------------------------------------ ad words


def test_ad_words_are_found_with_their_time_and_exceptions():
    words = (Word(11.36, 11.86, "这是"), Word(11.86, 12.12, "全"), Word(12.12, 12.32, "網"), Word(12.32, 12.54, "最"),
             Word(12.54, 12.76, "好的"), Word(12.76, 13.0, "保温杯"))
    hits = AdWordChecker().find([Sentence(11.36, 13.0, "这是全網最好的保温杯", words)])
    assert [(h.phrase, h.start, h.end) for h in hits] == [("最好", 12.32, 12.76)]
    c = AdWordChecker(["第一!第一次", "best ever", "100%有效"])
    found = c.find([S(0, 2, "第一次来直播间"), S(3, 5, "销量第一"), S(6, 8, "The BEST ever mug"), S(9, 10, "the best everyday"),
                    S(11, 12, "百分百 100% 有效")])
    assert [(h.phrase, h.start) for h in found] == [("第一", 3), ("best ever", 6), ("100%有效", 11)]
    assert hits_in(found, 2.5, 7) == found[:2]


def test_an_ad_word_list_is_checked():
    assert parse_ad_words([" best  ever ", "best ever", "最好"]) == ("best ever", "最好")
    with pytest.raises(InputError):
        parse_ad_words(["ok", ""])
    with pytest.raises(InputError):
        parse_ad_words([3])


# ------------------------------------------------------------------------------------------ segments


PITCHES = [
    S(2, 5, "Hello everyone and welcome back."),
    S(10, 13, "Next up is the Aurora travel mug."),
    S(14, 17, "It keeps coffee hot for twelve hours."),
    S(18, 21, "The lid locks, so nothing spills in your bag."),
    S(22, 25, "It is usually forty nine dollars, today only twenty nine."),
    S(26, 28, "Three, two, one, the link is up!"),
    S(28.5, 30, "Go and grab one."),
    S(40, 43, "Let me read a few questions from the chat."),
    S(47, 50, "Someone asked about shipping, it takes three days."),
    S(60, 63, "Now the Nova desk lamp."),
    S(64, 67, "It has three brightness levels."),
    S(68, 71, "The desk lamp charges over USB."),
    S(75, 78, "Forty five dollars, and the link for it is in the shop below."),
    S(120, 123, "By the way my own travel mug is in the kitchen."),
    S(200, 203, "Thanks for watching."),
]


def test_each_pitch_becomes_a_segment_with_its_evidence():
    segs = find_segments("show", [MUG, LAMP], PITCHES, cuts=[9.0, 59.5, 85.0],
                         events=[Event(31, "cart", "u", product="mug-01"), Event(33, "order", "v", product="mug-01")])
    assert [(s.product, s.n) for s in segs] == [("mug-01", 1), ("lamp-02", 1)]
    mug, lamp = segs
    assert mug.start == 9.0  # the cut to the product, just before its name is said
    assert mug.end == 30.0  # the link call and the line said right after it; not the chat questions
    assert set(mug.evidence) >= {"name", "price", "link", "visual", "cart", "order"}
    assert lamp.start == 59.5 and lamp.end == 78.0
    assert "price" in lamp.evidence and "link" in lamp.evidence and "cart" not in lamp.evidence
    assert mug.confidence > lamp.confidence - 20 and 0 < lamp.confidence <= 100
    assert mug.id != lamp.id and mug.id == find_segments("show", [MUG, LAMP], PITCHES, cuts=[9.0, 59.5, 85.0])[0].id


def test_a_product_named_once_in_passing_is_not_a_pitch():
    segs = find_segments("show", [MUG], [S(2, 5, "Hello."), S(120, 123, "By the way my own travel mug is in the kitchen."),
                                         S(124, 127, "Anyway, back to the game.")])
    assert segs == []


def test_a_product_pitched_twice_gets_two_numbered_segments():
    again = [*PITCHES[:7], S(140, 143, "Back to the Aurora travel mug, only a few left."), S(144, 147, "Twenty nine dollars."),
             S(149, 151, "3, 2, 1, link is up.")]
    segs = find_segments("show", [MUG, LAMP], again)
    assert [(s.product, s.n) for s in segs] == [("mug-01", 1), ("mug-01", 2)]
    assert segs[1].start == 140 and segs[1].end == 151


def test_mandarin_pitches_are_found_from_a_misheard_transcript():
    zh = [S(0, 1.3, "欢迎来到直播间"), S(1.3, 3.9, "今天给大家介绍这款小熊保温杯"), S(3.9, 6.1, "原价199元"), S(6.6, 8.4, "今天只要69元"),
          S(8.4, 9.0, "3"), S(9.0, 9.7, "2"), S(9.7, 10.4, "1"), S(10.4, 11.4, "上练肩"), S(30, 32, "家人们晚上好"),
          S(60, 62, "下面是这款電熱水壺"), S(63, 66, "烧水特别快"), S(67, 69, "只要九十九元")]
    segs = find_segments("zh", [CUP, KETTLE], zh)
    assert [(s.product, s.start, s.end) for s in segs] == [("cup", 1.3, 11.4), ("kettle", 60, 69)]
    assert "link" in segs[0].evidence and "price" in segs[0].evidence


def test_live_a_segment_is_emitted_once_its_end_is_certain():
    t = PitchTracker("live", [MUG, LAMP], cuts=[9.0])
    assert t.feed(PITCHES[:7]) == []  # the mug's pitch may go on
    assert t.feed(PITCHES[7:9]) == []
    assert t.advance(28.0 + 30) == []  # idle only IDLE_S after the last evidence (the link call at 28 s)
    closed = t.feed(PITCHES[9:10])  # another product is named: the mug's pitch is over
    assert [s.product for s in closed] == ["mug-01"] and closed[0].end == 30.0
    assert t.feed(PITCHES[10:13]) == []
    idle = t.advance(78.0 + 41)
    assert [s.product for s in idle] == ["lamp-02"]
    assert t.finish() == []


def test_a_long_unpunctuated_recognised_sentence_is_read_clause_by_clause():
    from ace.products.segments import clauses

    words = [Word(128.1 + i, 128.9 + i, w) for i, w in enumerate(["今天外面下雨,", "大家在家里看直播吧,", "背景音乐是歌单,"])]
    words += [Word(143.5, 144.5, "下面这款是"), Word(144.5, 145.8, "云朵雨荣府。")]
    long = Sentence(128.1, 145.8, "今天外面下雨,大家在家里看直播吧,背景音乐是歌单,下面这款是云朵雨荣府。", tuple(words))
    parts = clauses(long)
    assert [p.start for p in parts] == [128.1, 129.1, 130.1, 143.5]
    jacket = Product("jacket", "云朵羽绒服", ("羽绒服",), 299.0)
    segs = find_segments("zh", [jacket], [long, S(146, 150, "原价三百九十九，今天只要二百九十九元")])
    assert [(s.start, s.end) for s in segs] == [(143.5, 150)]
    assert clauses(S(0, 3, "short, and plain")) == [S(0, 3, "short, and plain")]
