"""JSON from outside (request bodies, uploaded files, a receiver's answer), parsed without deep
recursion.

The standard parser recurses once per nesting level and raises :class:`RecursionError` near the
interpreter's limit. Recovering from that is not enough: while the stack is that deep, anything
else Python runs on the same thread (a garbage-collection finaliser, a signal handler) fails too.
So the nesting is measured first, without recursion, and a text nested deeper than
:data:`MAX_DEPTH` is refused as a :class:`json.JSONDecodeError` before the parser sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

#: the deepest nesting accepted; ACE's own formats go 4 levels deep, Twitch chat exports about 6
MAX_DEPTH = 100

# an escape pair (so that \" does not end a string), a quote, or a bracket
_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
_ESCAPES = re.compile(r"\\.", re.DOTALL)
# a string once its escapes are gone (linear: an unclosed one is the last quote of the text)
_STRINGS = re.compile(r'"[^"]*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def max_depth_of(text: str) -> int:
    """How deep ``text``'s arrays and objects nest (brackets inside strings do not count), in C
    and numpy: escapes out, strings out, then a running sum over the brackets left."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", _ESCAPES.sub("", text)))
    if not brackets:
        return 0
    b = np.frombuffer(brackets.encode("ascii"), np.uint8)
    steps = np.where((b == ord("[")) | (b == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def too_deep_at(text: str, max_depth: int = MAX_DEPTH) -> int | None:
    """Where ``text`` opens its ``max_depth + 1``-th nested array or object (brackets inside
    strings do not count), or None if it never goes that deep."""
    if text.count("[") + text.count("{") <= max_depth:  # the usual case, decided in C
        return None
    if max_depth_of(text) <= max_depth:  # a long document: decided without a Python loop
        return None
    depth, in_string = 0, False  # too deep: find where, token by token
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok == '"':
            in_string = not in_string
        elif in_string or len(tok) == 2:
            continue
        elif tok in "[{":
            depth += 1
            if depth > max_depth:
                return m.start()
        else:
            depth -= 1
    return None


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """:func:`json.loads` for a text from outside: :class:`json.JSONDecodeError` ("nested too
    deeply", with its line and column) for one nested deeper than ``max_depth``."""
    at = too_deep_at(text, max_depth)
    if at is not None:
        raise json.JSONDecodeError(f"nested too deeply (more than {max_depth} levels)", text, at)
    return json.loads(text)
