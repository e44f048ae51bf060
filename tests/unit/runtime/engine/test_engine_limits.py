"""Request checks, admission planning and KV capacity planning: pure decisions, table tests."""

from __future__ import annotations

import pytest
from llm_runtime import types
from llm_runtime.engine import kvcache, limits, scheduler

pytestmark = pytest.mark.unit

LIMITS = limits.EngineLimits(max_input_tokens=100, max_new_tokens=200)


def _request(
    prompt: str | None = "hi", messages: tuple[types.ChatMessage, ...] = ()
) -> types.GenerationRequest:
    return types.GenerationRequest(
        request_id="r", prompt=prompt, messages=messages, sampling=types.SamplingParams()
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (types.SamplingParams(max_new_tokens=0), "max_new_tokens"),
        (types.SamplingParams(max_new_tokens=201), "max_new_tokens"),
        (types.SamplingParams(temperature=-0.1), "temperature"),
        (types.SamplingParams(temperature=float("nan")), "temperature"),
        (types.SamplingParams(top_p=0.0), "top_p"),
        (types.SamplingParams(top_p=1.5), "top_p"),
        (types.SamplingParams(top_k=-1), "top_k"),
        (types.SamplingParams(stop=("",)), "stop"),
        (types.SamplingParams(stop=("x" * 257,)), "stop"),
        (types.SamplingParams(stop=tuple(str(i) for i in range(17))), "stop"),
    ],
)
def test_bad_sampling_is_rejected_naming_the_field(
    params: types.SamplingParams, field: str
) -> None:
    with pytest.raises(types.InvalidRequestError, match=field):
        limits.check_sampling(params, limits=LIMITS)


def test_in_range_sampling_is_accepted() -> None:
    params = types.SamplingParams(
        max_new_tokens=200, temperature=0.7, top_p=1.0, top_k=40, stop=("x",)
    )
    limits.check_sampling(params, limits=LIMITS)


@pytest.mark.parametrize(
    "request_",
    [
        _request(prompt=""),
        _request(prompt=None),
        _request(prompt=None, messages=(types.ChatMessage("user", "  "),)),
        _request(prompt="x", messages=(types.ChatMessage("user", "y"),)),
    ],
)
def test_missing_empty_or_double_input_is_rejected(request_: types.GenerationRequest) -> None:
    with pytest.raises(types.InvalidRequestError, match=r"prompt|messages"):
        limits.check_input(request_)


@pytest.mark.parametrize(
    ("prompt_tokens", "max_new", "context", "message"),
    [
        (0, 10, 1000, "empty"),
        (101, 10, 1000, "max_input_tokens"),
        (95, 10, 100, "context length"),
    ],
)
def test_prompt_that_cannot_fit_is_rejected(
    prompt_tokens: int, max_new: int, context: int, message: str
) -> None:
    with pytest.raises(types.InvalidRequestError, match=message):
        limits.check_prompt_length(
            prompt_tokens=prompt_tokens,
            max_new_tokens=max_new,
            limits=LIMITS,
            context_length=context,
        )


def test_prompt_that_exactly_fits_is_accepted() -> None:
    limits.check_prompt_length(
        prompt_tokens=90, max_new_tokens=10, limits=LIMITS, context_length=100
    )


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        limits.EngineLimits(max_batch_size=0)


def test_slot_capacity_is_prompt_plus_output_within_context() -> None:
    assert limits.sequence_capacity(limits=LIMITS, context_length=8192) == 300
    assert limits.sequence_capacity(limits=LIMITS, context_length=120) == 120


@pytest.mark.parametrize(
    ("lengths", "free", "budget", "chunk_left", "expected"),
    [
        ([], 4, 100, None, (0, False, 0)),
        ([40, 40, 40], 4, 100, None, (2, True, 20)),  # the third starts in chunks
        ([40, 40, 40], 1, 100, None, (1, False, 0)),  # free slots stop the second
        ([500, 10], 4, 100, None, (0, True, 100)),  # a long prompt is chunked, FIFO kept
        ([10] * 10, 0, 100, None, (0, False, 0)),  # no free slot: nothing
        ([30, 30, 40], 8, 100, None, (3, False, 0)),  # exactly the budget
        ([30, 30], 8, 100, 250, (0, False, 100)),  # a chunked prompt takes the budget first
        ([30, 30], 8, 100, 40, (2, False, 40)),  # ...and leaves the rest to others
        ([30, 80], 8, 100, 40, (1, False, 40)),  # only one chunked prompt at a time
    ],
)
def test_prefill_plan_respects_slots_budget_and_fifo(
    lengths: list[int],
    free: int,
    budget: int,
    chunk_left: int | None,
    expected: tuple[int, bool, int],
) -> None:
    plan = scheduler.plan_prefill(
        lengths, free_slots=free, token_budget=budget, chunk_left=chunk_left
    )
    assert (plan.admit, plan.start_chunked, plan.chunk_tokens) == expected


@pytest.mark.parametrize(
    ("needed", "current", "expected"),
    [
        (10, 64, 64),  # fits
        (65, 64, 128),  # grows in granularity steps
        (1000, 64, 512),  # never beyond the slot capacity
        (100, 512, 128),  # shrinks once half the cache is idle
        (200, 256, 256),  # but does not thrash near the boundary
    ],
)
def test_kv_capacity_follows_the_longest_sequence(needed: int, current: int, expected: int) -> None:
    assert (
        kvcache.plan_capacity(needed=needed, current=current, granularity=64, maximum=512)
        == expected
    )
