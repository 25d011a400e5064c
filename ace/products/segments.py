"""Product segments (看点): where the host explains each product, from what was said, what was
shown and what the audience bought.

A pitch names its product, describes it (often without naming it again), says the price and calls
the link; carts and orders for that product follow. :class:`PitchTracker` reads final transcript
sentences in order and keeps one open pitch:

* a sentence naming a product is that product's evidence; naming another product closes the open
  pitch (the new one starts);
* the price said aloud and a link call ("上链接", "3 2 1", "the link is up") count for the open
  pitch; so do carts and orders tagged with its product;
* a pitch closes ``idle_s`` after its last evidence (the chatter in between is not part of it).

A closed pitch with enough evidence (its name twice, or its name with a price, a link call or
tagged carts/orders) becomes a :class:`ProductSegment`. Its start is the first sentence naming the
product, moved back to a scene cut just before it (the product held up to the camera); its end is
the end of the sentence after which the host moved on: the last evidence and the sentences that
follow it without a pause, up to a scene cut.

Batch: :func:`find_segments` feeds a whole transcript. Live: feed sentences as they become final
and collect what :meth:`PitchTracker.feed` returns; a segment is emitted once its end is certain.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ace.products.text import ProductMatcher, countdown_digit, link_call, says_price
from ace.types import Event, Product, ProductSegment, Sentence

#: a pitch closes this long after its last evidence
IDLE_S = 40.0
#: after the last evidence, sentences that follow within this pause still belong to the pitch ("go,
#: grab it!") ...
TAIL_GAP_S = 1.0
#: ... up to this long after it: the recogniser's sentence times often leave no pause between the
#: pitch's last line and the chatter after it, so the tail is bounded by time as well
TAIL_MAX_S = 6.0
#: a recognised "sentence" longer than this is read clause by clause (the recogniser may run
#: chatter and the next product's introduction into one unpunctuated segment)
CLAUSE_SPLIT_S = 8.0
_CLAUSE_END = (",", "，", "、", ";", "；", ":", "：")
#: a scene cut this close before the first mention starts the segment
CUT_BEFORE_S = 8.0
#: carts and orders count for a pitch up to this long after it
SALE_LAG_S = 60.0


@dataclass
class _Pitch:
    product: Product
    first: Sentence
    last_evidence: float  #: end of the last sentence that was evidence
    names: int = 1
    heard: list[str] = field(default_factory=list)
    evidence: set[str] = field(default_factory=lambda: {"name"})
    sentences: list[Sentence] = field(default_factory=list)  #: every sentence since ``first``


class PitchTracker:
    """Incremental product segmentation (see the module's text)."""

    def __init__(self, show_id: str, products: Sequence[Product], cuts: Iterable[float] = (), idle_s: float = IDLE_S):
        self.show_id = show_id
        self.products = {p.id: p for p in products}
        self.matcher = ProductMatcher(list(products))
        self.cuts: list[float] = sorted(cuts)
        self.idle_s = idle_s
        self._open: _Pitch | None = None
        #: segments emitted so far per product (numbers the next one; kept across a restart)
        self.counts: dict[str, int] = {}
        self._sales: list[tuple[float, str, str]] = []  # (t, product, kind)
        self._recent: list[Sentence] = []  # the last few sentences, for split countdowns

    # -- input ---------------------------------------------------------------------------------

    def add_cuts(self, cuts: Iterable[float]) -> None:
        for c in cuts:
            bisect.insort(self.cuts, float(c))

    def add_events(self, events: Iterable[Event]) -> None:
        for e in events:
            if e.product and e.kind in ("cart", "order") and e.product in self.products:
                self._sales.append((e.t, e.product, e.kind))

    def feed(self, sentences: Iterable[Sentence]) -> list[ProductSegment]:
        """Final sentences in time order; returns the segments closed by them."""
        out: list[ProductSegment] = []
        for s in (c for whole in sentences for c in clauses(whole)):
            out.extend(self._close_if_idle(s.start))
            text = s.text.strip()
            if not text:
                continue
            named = self.matcher.mentions(text)
            p = self._open
            if named and (p is None or p.product.id not in named):
                out.extend(self._close())
                pid = max(named, key=lambda k: named[k][0])
                self._open = p = _Pitch(self.products[pid], s, s.end, heard=[named[pid][1]])
                self._open.sentences.append(s)
                self._note_extra(p, s, text, first=True)
                self._remember(s)
                continue
            if p is None:
                self._remember(s)
                continue
            p.sentences.append(s)
            if p.product.id in named:
                p.names += 1
                p.last_evidence = s.end
                if named[p.product.id][1] not in p.heard:
                    p.heard.append(named[p.product.id][1])
            self._note_extra(p, s, text, first=False)
            self._remember(s)
        return out

    def advance(self, now: float) -> list[ProductSegment]:
        """Stream time has reached ``now`` (with no new sentence): closes an idle pitch."""
        return self._close_if_idle(now)

    def finish(self) -> list[ProductSegment]:
        """The end of the show: the open pitch closes."""
        return self._close()

    # -- internals ---------------------------------------------------------------------------------

    def _remember(self, s: Sentence) -> None:
        self._recent = (self._recent + [s])[-4:]

    def _note_extra(self, p: _Pitch, s: Sentence, text: str, first: bool) -> None:
        if says_price(text, p.product.price):
            p.evidence.add("price")
            p.last_evidence = s.end
            p.heard.append(text[:60])
        call = link_call(text)
        if not call and countdown_digit(text) == 1:
            digits = [countdown_digit(r.text) for r in self._recent[-2:]]
            if digits == [3, 2] and s.end - self._recent[-2].start < 6.0:
                call = "3 2 1"
        if call:
            p.evidence.add("link")
            p.last_evidence = s.end
            p.heard.append(call)

    def _close_if_idle(self, now: float) -> list[ProductSegment]:
        if self._open is not None and now - self._open.last_evidence > self.idle_s:
            return self._close()
        return []

    def _close(self) -> list[ProductSegment]:
        p, self._open = self._open, None
        if p is None:
            return []
        start = p.first.start
        before = [c for c in self.cuts if start - CUT_BEFORE_S <= c <= start + 0.5]
        if before:
            start = min(start, before[-1])
        end = p.last_evidence
        # the sentences right after the last evidence, spoken without a pause, up to a cut
        later = [s for s in p.sentences if s.start >= end - 0.05]
        for s in later:
            if s.start - end > TAIL_GAP_S or s.end - p.last_evidence > TAIL_MAX_S:
                break
            if any(end < c < s.start for c in self.cuts):
                break
            end = s.end
        cut_after = [c for c in self.cuts if end - 0.5 <= c <= end + 2.0]
        if cut_after:
            end = max(end, cut_after[0])
        sales = [k for t, pid, k in self._sales if pid == p.product.id and start <= t <= end + SALE_LAG_S]
        ev = set(p.evidence)
        if before:
            ev.add("visual")
        ev.update(sales)
        strong = p.names >= 2 or bool(ev & {"price", "link", "cart", "order"})
        if not strong or end - start < 3.0:
            return []
        n = self.counts.get(p.product.id, 0) + 1
        self.counts[p.product.id] = n
        score = min(1.0, 0.25 + 0.12 * min(p.names, 3) + 0.2 * ("price" in ev) + 0.2 * ("link" in ev)
                    + 0.1 * ("visual" in ev) + 0.15 * bool(sales))
        order = ("name", "price", "link", "visual", "cart", "order")
        return [ProductSegment(
            show_id=self.show_id, product=p.product.id, name=p.product.name, n=n, start=round(start, 2), end=round(end, 2),
            confidence=round(100 * score, 1), heard=tuple(dict.fromkeys(p.heard)),
            evidence=tuple(k for k in order if k in ev),
        )]


def clauses(s: Sentence) -> list[Sentence]:
    """``s`` itself, or its clauses (split after words ending in a comma) when it is long."""
    if s.end - s.start <= CLAUSE_SPLIT_S or len(s.words) < 2:
        return [s]
    from ace.signals.speech import split_sentences

    return split_sentences(s.words, ends=_CLAUSE_END + (".", "!", "?", "。", "！", "？", "…"))


def find_segments(show_id: str, products: Sequence[Product], sentences: Sequence[Sentence], cuts: Iterable[float] = (),
                  events: Iterable[Event] = ()) -> list[ProductSegment]:
    """Every product segment of a whole show (see :class:`PitchTracker`)."""
    if not products:
        return []
    tracker = PitchTracker(show_id, products, cuts)
    tracker.add_events(events)
    segs = tracker.feed(sorted(sentences, key=lambda s: s.start))
    segs += tracker.finish()
    return sorted(segs, key=lambda s: s.start)
