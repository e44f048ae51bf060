"""Incremental detokenization and stop sequences: what a streaming client sees."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from llm_runtime.engine import text
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return tiny.build_tokenizer()


def _stream_text(tokenizer: object, sample: str) -> list[str]:
    ids = tokenizer.encode(sample, add_special_tokens=False)  # type: ignore[attr-defined]

    def decode(chunk: Sequence[int]) -> str:
        return str(tokenizer.decode(list(chunk), skip_special_tokens=True))  # type: ignore[attr-defined]

    decoder = text.IncrementalDecoder(decode)
    return [decoder.push(i) for i in ids]


@pytest.mark.parametrize("sample", ["Paris is nice.", "Zürich → 東京 😀 ok", "a  b\n\nc"])
def test_streamed_deltas_join_to_the_full_text(tokenizer: object, sample: str) -> None:
    deltas = _stream_text(tokenizer, sample)
    assert "".join(deltas) == sample
    assert all("\ufffd" not in d for d in deltas)


def test_multibyte_character_is_held_until_complete(tokenizer: object) -> None:
    deltas = _stream_text(tokenizer, "😀")
    assert deltas[-1] == "😀"
    assert all(d == "" for d in deltas[:-1])  # 4 byte-level tokens, nothing half-emitted


def test_stop_sequence_across_deltas_is_cut_and_never_shown() -> None:
    stream = text.TextStream(stops=("END",))
    shown = [stream.append(d) for d in ["Hello E", "N", "D and more"]]
    assert shown == ["Hello ", "", ""]
    assert stream.stopped
    assert stream.text == "Hello "


def test_held_back_prefix_is_released_when_it_does_not_match() -> None:
    stream = text.TextStream(stops=("END",))
    assert stream.append("Hi E") == "Hi "
    assert stream.append("x") == "Ex"
    assert not stream.stopped


def test_flush_releases_text_held_at_the_end() -> None:
    stream = text.TextStream(stops=("END",))
    stream.append("the EN")
    assert stream.flush() == "EN"
    assert stream.text == "the EN"


def test_earliest_of_several_stops_wins() -> None:
    stream = text.TextStream(stops=("b", "a"))
    assert stream.append("xxab") == "xx"
    assert stream.text == "xx"


@pytest.mark.parametrize(
    ("sample", "stops", "expected"),
    [("abc", ("cd",), 1), ("abc", ("bcd",), 2), ("abc", ("x",), 0), ("", ("ab",), 0)],
)
def test_held_back_length(sample: str, stops: tuple[str, ...], expected: int) -> None:
    assert text.held_back(sample, stops) == expected


def test_shared_chat_prefix_is_what_every_chat_prompt_starts_with(tokenizer: object) -> None:
    from llm_runtime.engine import core

    prefix = core.shared_chat_prefix(tokenizer)
    expected = tokenizer.encode("<|im_start|>user\n", add_special_tokens=False)  # type: ignore[attr-defined]
    assert prefix[: len(expected)] == expected
    rendered = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": "What is up?"}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer.encode(rendered, add_special_tokens=False)  # type: ignore[attr-defined]
    assert ids[: len(prefix)] == prefix
