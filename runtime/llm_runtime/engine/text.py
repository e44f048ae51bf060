"""Incremental detokenization and stop-sequence handling for one sequence (pure, no torch).

Decoding token by token breaks multi-byte characters (a UTF-8 character split over two byte-level
tokens decodes to U+FFFD until its last byte arrives) and word-boundary spacing (SentencePiece
drops a leading space when a token is decoded alone). So, like TGI and vLLM, we decode a short
window of already-emitted tokens plus the new ones and emit only the difference, and hold text
back while it ends in U+FFFD.

Stop sequences can span tokens, so text that could still turn into a stop sequence is held back
too: a client never sees a prefix of a stop sequence that later matches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


@dataclasses.dataclass
class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas that are safe to emit."""

    decode: Decode
    ids: list[int] = dataclasses.field(default_factory=list)
    prefix_offset: int = 0
    read_offset: int = 0

    def push(self, token_id: int) -> str:
        """Add one token and return the newly completed text (possibly empty)."""
        self.ids.append(token_id)
        prefix_text = self.decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self.decode(self.ids[self.prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return delta
        return ""


def find_stop(text: str, stops: Sequence[str], *, search_from: int) -> int:
    """Index where the earliest stop sequence starts in `text`, or -1. Scans from `search_from`."""
    best = -1
    for stop in stops:
        index = text.find(stop, max(0, search_from))
        if index != -1 and (best == -1 or index < best):
            best = index
    return best


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


@dataclasses.dataclass
class TextStream:
    """The visible completion text of one sequence: what is emitted and where it stops."""

    stops: tuple[str, ...]
    text: str = ""
    emitted: int = 0
    stopped: bool = False

    def append(self, delta: str) -> str:
        """Add decoded text; return what may be shown now. Sets `stopped` on a stop sequence."""
        if self.stopped or not delta:
            return ""
        longest_stop = max((len(s) for s in self.stops), default=0)
        search_from = len(self.text) - longest_stop + 1
        self.text += delta
        if self.stops:
            index = find_stop(self.text, self.stops, search_from=search_from)
            if index != -1:
                self.text = self.text[:index]
                self.stopped = True
                return self._emit_upto(len(self.text))
        return self._emit_upto(len(self.text) - held_back(self.text, self.stops))

    def flush(self) -> str:
        """Emit whatever was held back (the sequence ended without completing a stop sequence)."""
        return self._emit_upto(len(self.text))

    def _emit_upto(self, end: int) -> str:
        if end <= self.emitted:
            return ""
        chunk = self.text[self.emitted : end]
        self.emitted = end
        return chunk
