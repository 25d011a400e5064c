"""A show's product list: read it from a file or an API body, check it, tag events with it.

A product list is JSON: a list of products (or ``{"products": [...]}``), or JSON Lines with one
product per line. A product is an object::

    {"id": "mug-01", "name": "Aurora travel mug", "aliases": ["travel mug"], "price": 29,
     "sku": "AUR-350", "image": "https://shop.example/mug.jpg"}

``id`` and ``name`` are required; ``id`` may be a number; ``aliases`` are other names the host
may use (a short name, the Chinese and English names); ``price`` is what the host will say
aloud. A plain string is a product whose id and name are that string (the API's older form).

Every problem names where it is: ``products.json line 4: 'price' must be a number >= 0``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ace import jsontext
from ace.errors import InputError
from ace.types import Event, Product

#: at most this many products per show or stream, and aliases per product
MAX_PRODUCTS = 200
MAX_ALIASES = 20
_ID = re.compile(r"^[\w.\-:]{1,64}$", re.UNICODE)
_MAX_TEXT = 200
_MAX_FILE = 4 << 20


class ProductError(InputError, ValueError):
    """A product list that does not parse: the message names the line (or item) and the field."""


def parse_product(obj: Any, where: str) -> Product:
    """One product from a JSON value; ``where`` prefixes every error ("line 3", "products[2]")."""
    if isinstance(obj, str):
        text = _text(obj, f"{where}", required=True)
        return Product(id=_slug_id(text), name=text)
    if not isinstance(obj, dict):
        raise ProductError(f"{where}: expected a product object or a name, got {type(obj).__name__}")
    unknown = sorted(set(obj) - {"id", "name", "aliases", "price", "sku", "image"})
    if unknown:
        raise ProductError(f"{where}: unknown field {unknown[0]!r} (expected id, name, aliases, price, sku, image)")
    raw_id = obj.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise ProductError(f"{where}: 'id' is required and must be a string" if raw_id is None
                           else f"{where}: 'id' must be a string, got {type(raw_id).__name__}")
    pid = str(raw_id).strip()
    if not _ID.match(pid):
        raise ProductError(f"{where}: 'id' must be 1-64 letters, digits, '.', '-', '_' or ':', got {pid[:70]!r}")
    name = _text(obj.get("name"), f"{where}: 'name'", required=True)
    aliases_raw = obj.get("aliases", [])
    if aliases_raw is None:
        aliases_raw = []
    if isinstance(aliases_raw, str):
        aliases_raw = [aliases_raw]
    if not isinstance(aliases_raw, list):
        raise ProductError(f"{where}: 'aliases' must be a list of names, got {type(aliases_raw).__name__}")
    if len(aliases_raw) > MAX_ALIASES:
        raise ProductError(f"{where}: 'aliases' has {len(aliases_raw)} names; at most {MAX_ALIASES}")
    aliases = tuple(dict.fromkeys(_text(a, f"{where}: 'aliases'[{i}]", required=True) for i, a in enumerate(aliases_raw)))
    price = obj.get("price")
    if price is not None:
        if isinstance(price, str):
            try:
                price = float(price.strip().lstrip("¥$€£").replace(",", ""))
            except ValueError:
                raise ProductError(f"{where}: 'price' must be a number, got {obj['price']!r:.40}") from None
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0 or price > 1e9:
            raise ProductError(f"{where}: 'price' must be a number >= 0, got {obj['price']!r:.40}")
        price = float(price)
    sku = _text(obj.get("sku"), f"{where}: 'sku'", required=False)
    image = _text(obj.get("image"), f"{where}: 'image'", required=False, limit=2000)
    if image and not re.match(r"^https?://", image, re.I):
        raise ProductError(f"{where}: 'image' must be an http(s) URL, got {image[:70]!r}")
    return Product(id=pid, name=name, aliases=aliases, price=price, sku=sku, image=image)


def parse_products(items: Sequence[Any], where: str = "products") -> list[Product]:
    """A list of products from JSON values (the API's ``products``); ids must be unique."""
    if not isinstance(items, (list, tuple)):
        raise ProductError(f"{where}: expected a list of products, got {type(items).__name__}")
    if len(items) > MAX_PRODUCTS:
        raise ProductError(f"{where}: {len(items)} products; at most {MAX_PRODUCTS}")
    return _unique([(parse_product(x, f"{where}[{i}]"), f"{where}[{i}]") for i, x in enumerate(items)])


def load_products(path: str | os.PathLike) -> list[Product]:
    """The product list in a file (JSON or JSON Lines); errors name the file, line and field."""
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_FILE:
            raise ProductError(f"{p.name}: larger than {_MAX_FILE >> 20} MiB; is this a product list?")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ProductError(f"no such product file: {path}") from None
    except IsADirectoryError:
        raise ProductError(f"{path} is a folder, not a product file") from None
    except OSError as e:
        raise ProductError(f"cannot read the product file {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ProductError(f"{p.name} line {line}: not UTF-8 text") from None
    items = list(_json_items(text, p.name))
    if not items:
        raise ProductError(f"{p.name}: no products in it")
    if len(items) > MAX_PRODUCTS:
        raise ProductError(f"{p.name}: {len(items)} products; at most {MAX_PRODUCTS}")
    return _unique([(parse_product(obj, f"{p.name} line {line}"), f"{p.name} line {line}") for line, obj in items])


def _json_items(text: str, name: str) -> Iterable[tuple[int, Any]]:
    """(line, value) for each product: the items of a JSON list (or of ``{"products": [...]}``),
    else one per non-blank line (JSON Lines)."""
    dec = json.JSONDecoder()
    stripped = text.lstrip()
    start = len(text) - len(stripped)

    def line_at(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    deep = jsontext.too_deep_at(text)
    if deep is not None:  # once for the whole text, before any parser below recurses that deep
        raise ProductError(f"{name} line {line_at(deep)}: not valid JSON (nested more than {jsontext.MAX_DEPTH} levels deep)")
    if stripped.startswith("{") and '"products"' in stripped[:2000]:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProductError(f"{name} line {e.lineno}: not valid JSON ({e.msg})") from None
        if isinstance(doc, dict) and "products" in doc:
            key = text.find('"products"')
            lst = text.find("[", key)
            if not isinstance(doc["products"], list) or lst < 0:
                raise ProductError(f"{name} line {line_at(key)}: 'products' must be a list")
            yield from _array_items(text, lst, name, dec, line_at, nested=True)
            return
    if stripped.startswith("["):
        yield from _array_items(text, start, name, dec, line_at)
        return
    for n, line in enumerate(text.splitlines(), 1):  # JSON Lines
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise ProductError(f"{name} line {n}: not valid JSON ({e.msg}); expected a JSON list or one product per line") from None


def _array_items(text: str, pos: int, name: str, dec: json.JSONDecoder, line_at, nested: bool = False) -> Iterable[tuple[int, Any]]:
    """The items of the JSON array starting at ``text[pos] == '['``, with the line each starts on."""
    i = pos + 1
    n = len(text)
    expect_item = True
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            raise ProductError(f"{name} line {line_at(n)}: the list is not closed with ']'")
        if text[i] == "]":
            rest = text[i + 1:].strip()
            if rest and not nested:
                raise ProductError(f"{name} line {line_at(i + 1 + text[i + 1:].find(rest[0]))}: text after the end of the list")
            return
        if not expect_item:
            if text[i] != ",":
                raise ProductError(f"{name} line {line_at(i)}: expected ',' or ']' between products")
            i += 1
            expect_item = True
            continue
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise ProductError(f"{name} line {e.lineno}: not valid JSON ({e.msg})") from None
        yield line_at(i), obj
        i = end
        expect_item = False


def _unique(products: list[tuple[Product, str]]) -> list[Product]:
    seen: dict[str, str] = {}
    for p, where in products:
        if p.id in seen:
            raise ProductError(f"{where}: id {p.id!r} is used twice (first at {seen[p.id]})")
        seen[p.id] = where
    return [p for p, _ in products]


def _text(v: Any, where: str, *, required: bool, limit: int = _MAX_TEXT) -> str:
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise ProductError(f"{where} is required and must be a non-empty string")
        return ""
    if not isinstance(v, str):
        raise ProductError(f"{where} must be a string, got {type(v).__name__}")
    v = " ".join(v.split())
    if len(v) > limit:
        raise ProductError(f"{where} is longer than {limit} characters")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
        raise ProductError(f"{where} is not valid Unicode text")
    return v


def _slug_id(name: str) -> str:
    s = re.sub(r"[^\w.\-:]+", "-", name, flags=re.UNICODE).strip("-")[:64]
    return s or "product"


def product_to_dict(p: Product) -> dict[str, Any]:
    """The JSON form :func:`parse_product` reads back."""
    d: dict[str, Any] = {"id": p.id, "name": p.name}
    if p.aliases:
        d["aliases"] = list(p.aliases)
    if p.price is not None:
        d["price"] = int(p.price) if float(p.price).is_integer() else p.price
    if p.sku:
        d["sku"] = p.sku
    if p.image:
        d["image"] = p.image
    return d


def tag_events(events: Sequence[Event], products: Sequence[Product]) -> tuple[list[Event], list[str]]:
    """Events whose ``product`` names no product in the list lose the tag (kept as untagged
    events); the warnings count them by id."""
    known = {p.id for p in products}
    unknown: dict[str, int] = {}
    out: list[Event] = []
    for e in events:
        if e.product and e.product not in known:
            unknown[e.product] = unknown.get(e.product, 0) + 1
            e = Event(t=e.t, kind=e.kind, user=e.user, value=e.value, text=e.text, promoted=e.promoted, trusted=e.trusted)
        out.append(e)
    warnings = [f"{n} event(s) name product {pid!r}, which is not in the product list; kept as untagged events"
                for pid, n in sorted(unknown.items())]
    return out, warnings
