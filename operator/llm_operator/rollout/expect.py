"""Matching a smoke reply against its `expect` regex in linear time (RE2 semantics).

The pattern comes from a spec and the text from a pod: Python's backtracking `re` can spend
minutes on one `(a+)+$` against a long reply, hanging the tick of every object the operator
serves. RE2 guarantees time linear in the text and refuses what it cannot do that way
(backreferences, lookaround); the CRD's CEL rule refuses those at apply, and a pattern that
slips through still only fails its own window, naming the prompt, never the operator. The
text matched is bounded too (`MAX_REPLY_CHARS`), so the cost of one match is bounded outright.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2

# Replies are short (the operator asks for a few dozen tokens), but a hostile or broken pod may
# send megabytes: only this many characters of a reply are searched.
MAX_REPLY_CHARS = 4096
# RE2's memory budget for one compiled pattern; a pattern needing more is refused.
MAX_PATTERN_MEMORY = 8 << 20


@dataclass(frozen=True)
class Compiled:
    """A compiled pattern, or why RE2 refused it (exactly one of the two is set)."""

    pattern: Any  # re2._Regexp (the package has no type hints); None when refused
    error: str | None = None


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the refusal is reported in the window, not on stderr
    options.max_mem = MAX_PATTERN_MEMORY
    return options


@functools.lru_cache(maxsize=256)
def compile_expect(pattern: str) -> Compiled:
    """The pattern compiled once per process (specs change rarely, windows close often)."""
    try:
        return Compiled(re2.compile(pattern, options=_options()))
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        return Compiled(None, text)


def bounded(text: str, limit: int = MAX_REPLY_CHARS) -> str:
    """The part of a reply that is matched: its first `limit` characters."""
    return text[:limit]


def search(compiled: Compiled, text: str, *, limit: int = MAX_REPLY_CHARS) -> bool:
    """True when the pattern occurs in the first `limit` characters (search, not fullmatch)."""
    if compiled.pattern is None:
        raise ValueError(compiled.error or "pattern refused")
    return compiled.pattern.search(bounded(text, limit)) is not None
