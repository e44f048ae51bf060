"""The exact, deterministic weighted split: which backend serves the n-th request.

`goes_to_canary(n, weight)` is true when `floor((n + 1) * weight / 100) > floor(n * weight / 100)`:
the canary's cumulative count after n+1 requests is `floor((n + 1) * weight / 100)`, so over ANY
100 consecutive request numbers it gets exactly `weight` of them (the floor of a sum shifted by an
integer), spread evenly (weight 10: requests 9, 19, 29...), with no randomness for tests to
tolerate. A weight change takes effect on the next request; the window that straddles it is off
by at most one.

`Splitter` numbers requests and keeps the current config. Pure (no clock, no gRPC, no I/O), so an
HTTP front door can share it with the gRPC one.
"""

from __future__ import annotations

import dataclasses

from llm_runtime.frontdoor import routing


def goes_to_canary(n: int, weight: int) -> bool:
    """Whether request number `n` (0, 1, 2...) goes to the canary at `weight` percent."""
    if n < 0:
        raise ValueError(f"request numbers start at 0, got {n}")
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be within 0..100, got {weight}")
    return (n + 1) * weight // 100 > n * weight // 100


@dataclasses.dataclass(frozen=True)
class Route:
    """Where one request goes first, and where it may be retried (the stable, from a canary)."""

    name: str  # routing.STABLE or routing.CANARY
    backend: routing.Backend
    fallback: routing.Backend | None = None


class Splitter:
    """The current config and the request counter; `route()` once per request."""

    def __init__(self, config: routing.RoutingConfig | None = None) -> None:
        self._config = config
        self._n = 0

    @property
    def config(self) -> routing.RoutingConfig | None:
        return self._config

    def update(self, config: routing.RoutingConfig) -> None:
        """Switch config; the counter carries on, so the new weight holds from the next request."""
        self._config = config

    def route(self) -> Route | None:
        """The next request's route; None until a config was set."""
        config = self._config
        if config is None:
            return None
        n = self._n
        self._n += 1
        if config.canary is not None and goes_to_canary(n, config.canary_weight):
            return Route(name=routing.CANARY, backend=config.canary, fallback=config.stable)
        return Route(name=routing.STABLE, backend=config.stable)
