"""The front door's weighted chooser is exact: over any 100 consecutive requests the canary gets
exactly `weight` of them, spread out, with no randomness; the splitter follows config changes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_runtime.frontdoor import routing, split

pytestmark = pytest.mark.unit

STABLE = routing.Backend(target="127.0.0.1:5001", revision="r1")
CANARY = routing.Backend(target="127.0.0.1:5002", revision="r2")


@settings(deadline=None)  # a shared CPU must not turn a slow example into a failure
@given(weight=st.integers(0, 100), start=st.integers(0, 10**12))
def test_any_100_consecutive_requests_give_the_canary_exactly_its_weight(
    weight: int, start: int
) -> None:
    assert sum(split.goes_to_canary(n, weight) for n in range(start, start + 100)) == weight


@settings(deadline=None)
@given(weight=st.integers(0, 100), start=st.integers(0, 10**6), length=st.integers(1, 400))
def test_any_window_is_within_one_of_its_share(weight: int, start: int, length: int) -> None:
    got = sum(split.goes_to_canary(n, weight) for n in range(start, start + length))
    assert abs(got - length * weight / 100) < 1


def test_the_canary_requests_are_spread_evenly() -> None:
    assert [n for n in range(100) if split.goes_to_canary(n, 10)] == list(range(9, 100, 10))
    assert [n for n in range(6) if split.goes_to_canary(n, 50)] == [1, 3, 5]
    assert not any(split.goes_to_canary(n, 0) for n in range(1000))
    assert all(split.goes_to_canary(n, 100) for n in range(1000))


@pytest.mark.parametrize(("n", "weight"), [(-1, 10), (0, -1), (0, 101)])
def test_out_of_range_arguments_are_refused(n: int, weight: int) -> None:
    with pytest.raises(ValueError):
        split.goes_to_canary(n, weight)


def test_without_config_there_is_no_route() -> None:
    assert split.Splitter().route() is None


def test_the_splitter_routes_by_weight_and_offers_the_stable_as_fallback() -> None:
    splitter = split.Splitter(routing.RoutingConfig(stable=STABLE, canary=CANARY, weight=25))
    routes = [splitter.route() for _ in range(200)]
    canary = [r for r in routes if r is not None and r.name == routing.CANARY]
    assert len(canary) == 50
    assert all(r.backend == CANARY and r.fallback == STABLE for r in canary)
    stable = [r for r in routes if r is not None and r.name == routing.STABLE]
    assert all(r.backend == STABLE and r.fallback is None for r in stable)


def test_a_new_weight_holds_from_the_next_request() -> None:
    splitter = split.Splitter(routing.RoutingConfig(stable=STABLE))
    first = [splitter.route() for _ in range(50)]
    assert all(r is not None and r.name == routing.STABLE for r in first)
    splitter.update(routing.RoutingConfig(stable=STABLE, canary=CANARY, weight=40))
    second = [splitter.route() for _ in range(100)]
    assert sum(r is not None and r.name == routing.CANARY for r in second) == 40
    splitter.update(routing.RoutingConfig(stable=STABLE, canary=CANARY, weight=0))
    third = [splitter.route() for _ in range(100)]
    assert all(r is not None and r.name == routing.STABLE for r in third)
