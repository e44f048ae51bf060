"""Greedy outputs stay what the engine produced before the speed work (issue 14), token for token.

Fixed prompts on a tiny random Llama (float32), one at a time and all together (more requests
than slots, chunked prefill, shared chat prefix, slot compaction): see `greedy_golden`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.runtime.engine import greedy_golden

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[int]]]:
    import asyncio

    loaded = greedy_golden.load_tiny(Path(tmp_path_factory.mktemp("golden")))
    return asyncio.run(greedy_golden.run(loaded, greedy_golden.TINY_LIMITS))


def test_each_prompt_alone_gives_the_recorded_tokens(
    outputs: dict[str, list[list[int]]],
) -> None:
    golden = greedy_golden.read("tiny")
    for index, (got, want) in enumerate(zip(outputs["alone"], golden["alone"], strict=True)):
        assert got == want, f"prompt {index}: {greedy_golden.PROMPTS[index]}"


def test_all_prompts_together_give_the_recorded_tokens(
    outputs: dict[str, list[list[int]]],
) -> None:
    golden = greedy_golden.read("tiny")
    for index, (got, want) in enumerate(zip(outputs["together"], golden["together"], strict=True)):
        assert got == want, f"prompt {index}: {greedy_golden.PROMPTS[index]}"


def test_the_golden_prompts_exercise_the_batching_paths() -> None:
    golden = greedy_golden.read("tiny")
    assert len(greedy_golden.PROMPTS) > greedy_golden.TINY_LIMITS.max_batch_size
    assert all(golden["alone"]), "every prompt produced tokens"
    assert golden["alone"] == golden["together"]  # float32: batching changes nothing
