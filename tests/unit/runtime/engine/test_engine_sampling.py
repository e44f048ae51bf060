"""Sampling: greedy is argmax, seeds reproduce, top-k/top-p narrow the choice."""

from __future__ import annotations

import typing

import pytest
import torch
from llm_runtime import types
from llm_runtime.engine import sampling

pytestmark = pytest.mark.unit


def _logits() -> torch.Tensor:
    return torch.tensor([[0.1, 3.0, 0.5, 2.9], [5.0, 0.0, 0.0, 0.0]])


def test_greedy_rows_take_the_argmax() -> None:
    assert sampling.choose_tokens(_logits(), [sampling.RowSampling()] * 2) == [1, 0]


def test_same_seed_gives_same_tokens_whatever_the_other_rows() -> None:
    logits = torch.zeros(3, 50)

    def draw(seed: int, other: sampling.RowSampling) -> list[object]:
        row = sampling.RowSampling(
            temperature=1.0,
            generator=sampling.make_generator(seed=seed, device=torch.device("cpu")),
        )
        return [sampling.choose_tokens(logits, [other, row, other])[1] for _ in range(20)]

    other = sampling.RowSampling(
        temperature=1.0, generator=sampling.make_generator(seed=None, device=torch.device("cpu"))
    )
    assert draw(7, sampling.RowSampling()) == draw(7, other)
    assert draw(7, other) != draw(8, other)


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    gen = sampling.make_generator(seed=0, device=torch.device("cpu"))
    logits = torch.randn(64)
    best = int(logits.argmax())
    for row in (
        sampling.RowSampling(temperature=5.0, top_k=1, generator=gen),
        sampling.RowSampling(temperature=5.0, top_p=1e-6, generator=gen),
    ):
        assert {sampling.sample_row(logits, row) for _ in range(30)} == {best}


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = sampling.filter_logits(logits, top_k=0, top_p=0.75)
    assert torch.isfinite(kept).tolist() == [True, True, False, False]


def test_top_k_keeps_k_tokens() -> None:
    kept = sampling.filter_logits(torch.tensor([1.0, 4.0, 3.0, 2.0]), top_k=2, top_p=1.0)
    assert torch.isfinite(kept).tolist() == [False, True, True, False]


def test_a_near_zero_temperature_is_greedy_not_nan() -> None:
    """temperature 1e-40 once made inf logits, NaN probabilities and a failed batch."""
    row = sampling.RowSampling(
        temperature=1e-40, generator=sampling.make_generator(seed=1, device=torch.device("cpu"))
    )
    assert row.greedy
    assert sampling.choose_tokens(_logits(), [row, sampling.RowSampling()]) == [1, 0]
    tiny = sampling.RowSampling(
        temperature=1e-5, generator=sampling.make_generator(seed=1, device=torch.device("cpu"))
    )
    huge = torch.tensor([3e38, -3e38, 0.0, 1.0])
    assert sampling.sample_row(huge, tiny) == 0  # overflowing probabilities: the greedy limit


def test_a_row_with_non_finite_logits_fails_alone() -> None:
    logits = torch.tensor(
        [[0.1, float("nan"), 0.5, 2.9], [5.0, 0.0, 0.0, 0.0], [0.0, float("inf"), 0.0, 0.0]]
    )
    seeded = sampling.RowSampling(
        temperature=0.7, generator=sampling.make_generator(seed=3, device=torch.device("cpu"))
    )
    chosen = sampling.choose_tokens(logits, [sampling.RowSampling(), seeded, seeded])
    assert isinstance(chosen[0], types.NumericalError)
    assert isinstance(chosen[2], types.NumericalError)
    assert chosen[1] == 0  # the neighbour is unaffected


def test_a_row_whose_sampling_raises_fails_alone() -> None:
    logits = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    not_a_generator = typing.cast(torch.Generator, object())  # multinomial raises TypeError
    broken = sampling.RowSampling(temperature=1.0, generator=not_a_generator)
    chosen = sampling.choose_tokens(logits, [broken, sampling.RowSampling()])
    assert isinstance(chosen[0], types.RuntimeError_)
    assert "sampling failed" in str(chosen[0])
    assert chosen[1] == 2


def test_finite_rows_is_the_elementwise_check_even_when_a_sum_overflows() -> None:
    inf, nan = float("inf"), float("nan")
    logits = torch.tensor(
        [
            [3e38, 3e38, 0.0],  # finite entries whose sum overflows
            [-inf, 0.0, 1.0],
            [inf, -inf, 0.0],  # opposite infinities: NaN sum
            [nan, 0.0, 0.0],
            [1.0, 2.0, 3.0],
        ]
    )
    assert sampling.finite_rows(logits) == torch.isfinite(logits).all(dim=-1).tolist()


def test_greedy_ties_take_the_first_index_as_argmax_does() -> None:
    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0], [5.0, 5.0, 5.0, 5.0]])
    assert sampling.choose_tokens(logits, [sampling.RowSampling()] * 2) == [1, 0]
