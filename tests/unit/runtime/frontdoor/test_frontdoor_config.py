"""The front door's routing config: the JSON format, refusals that name the field, and the
watcher that applies content changes (symlink swaps included) and keeps the last good config."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import grpc
import pytest
from llm_runtime.frontdoor import proxy, routing, watch

pytestmark = pytest.mark.unit

STABLE = {"target": "dns:///chat-r1a2b3.ns.svc.cluster.local:50051", "revision": "r1a2b3"}
CANARY = {"target": "127.0.0.1:5002", "revision": "r4c5d6"}


def test_a_full_config_parses_into_frozen_values() -> None:
    config = routing.parse(json.dumps({"stable": STABLE, "canary": CANARY, "weight": 10}))
    assert config == routing.RoutingConfig(
        stable=routing.Backend(**STABLE), canary=routing.Backend(**CANARY), weight=10
    )
    assert config.canary_weight == 10
    with pytest.raises(AttributeError):
        config.weight = 20  # type: ignore[misc]


def test_stable_alone_or_a_null_canary_means_everything_to_stable() -> None:
    for doc in ({"stable": STABLE}, {"stable": STABLE, "canary": None, "weight": 0}):
        config = routing.parse(json.dumps(doc))
        assert config.canary is None and config.canary_weight == 0


def test_a_canary_at_weight_zero_is_valid() -> None:
    config = routing.parse(json.dumps({"stable": STABLE, "canary": CANARY}))
    assert config.canary is not None and config.canary_weight == 0


def test_to_json_round_trips() -> None:
    config = routing.RoutingConfig(
        stable=routing.Backend(**STABLE), canary=routing.Backend(**CANARY), weight=33
    )
    assert routing.parse(routing.to_json(config)) == config


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "JSON object"),
        ({}, "stable: required"),
        ({"stable": STABLE, "wieght": 5}, "wieght: unknown field"),
        ({"stable": "127.0.0.1:1"}, "stable: must be an object"),
        ({"stable": {"revision": "r1"}}, "stable.target"),
        ({"stable": {**STABLE, "target": ""}}, "stable.target"),
        ({"stable": {**STABLE, "target": "a b:1"}}, "stable.target"),
        ({"stable": {**STABLE, "revision": ""}}, "stable.revision"),
        ({"stable": {**STABLE, "revision": "r 1"}}, "stable.revision"),
        ({"stable": {**STABLE, "port": 1}}, "stable.port: unknown field"),
        ({"stable": STABLE, "canary": {"target": "x:1"}}, "canary.revision"),
        ({"stable": STABLE, "canary": CANARY, "weight": 101}, "weight: must be within 0..100"),
        ({"stable": STABLE, "canary": CANARY, "weight": -1}, "weight: must be within 0..100"),
        ({"stable": STABLE, "canary": CANARY, "weight": 12.5}, "weight: must be an integer"),
        ({"stable": STABLE, "canary": CANARY, "weight": "10"}, "weight: must be an integer"),
        ({"stable": STABLE, "canary": CANARY, "weight": True}, "weight: must be an integer"),
        ({"stable": STABLE, "weight": 10}, "weight: is 10 but there is no canary"),
    ],
)
def test_invalid_configs_are_refused_naming_the_field(doc: Any, field: str) -> None:
    with pytest.raises(routing.ConfigError, match=field):
        routing.parse(json.dumps(doc))


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(routing.ConfigError, match="not valid JSON"):
        routing.parse("stable: x")
    with pytest.raises(routing.ConfigError, match="not valid JSON"):
        routing.parse(b"\xff\xfe")


class _Recorder:
    def __init__(self) -> None:
        self.configs: list[routing.RoutingConfig] = []
        self.results: list[watch.Result] = []

    def watcher(self, path: Path) -> watch.ConfigWatcher:
        return watch.ConfigWatcher(
            path, on_config=self.configs.append, on_result=self.results.append, poll_seconds=0.01
        )


def _doc(weight: int) -> str:
    return json.dumps({"stable": STABLE, "canary": CANARY, "weight": weight})


def test_the_watcher_applies_changes_and_keeps_the_last_good_config(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    rec = _Recorder()
    w = rec.watcher(path)
    assert w.check() is watch.Result.UNREADABLE and w.config is None
    assert w.check() is None  # still missing: reported once
    path.write_text(_doc(10))
    assert w.check() is watch.Result.OK and w.config is not None and w.config.weight == 10
    assert w.check() is None  # unchanged content: nothing to do
    path.write_text(_doc(10) + "\n")  # new bytes, same config: counted, not re-applied
    assert w.check() is watch.Result.OK and len(rec.configs) == 1
    path.write_text('{"stable": {"target": "x:1"}}')
    assert w.check() is watch.Result.INVALID
    assert w.config.weight == 10 and w.last_error and "stable.revision" in w.last_error
    assert w.check() is None  # the same bad content is reported once
    path.unlink()
    assert w.check() is watch.Result.UNREADABLE and w.config.weight == 10
    path.write_text(_doc(30))
    assert w.check() is watch.Result.OK and w.config.weight == 30 and w.last_error is None
    assert [c.weight for c in rec.configs] == [10, 30]
    assert rec.results == [
        watch.Result.UNREADABLE,
        watch.Result.OK,
        watch.Result.OK,
        watch.Result.INVALID,
        watch.Result.UNREADABLE,
        watch.Result.OK,
    ]


def test_a_configmap_style_symlink_swap_is_seen_even_when_mtimes_do_not_move(
    tmp_path: Path,
) -> None:
    """kubelet writes a new timestamped dir, points `..data` at it, and the key is a symlink
    into `..data`: the path's own mtime can stay as it was."""
    mount = tmp_path / "mount"
    mount.mkdir()
    first, second = mount / "..2026_01_01_a", mount / "..2026_01_01_b"
    for d, weight in ((first, 5), (second, 50)):
        d.mkdir()
        (d / "routing.json").write_text(_doc(weight))
        os.utime(d / "routing.json", (1_000_000, 1_000_000))  # identical mtimes
    (mount / "..data").symlink_to(first.name)
    (mount / "routing.json").symlink_to("..data/routing.json")
    rec = _Recorder()
    w = rec.watcher(mount / "routing.json")
    assert w.check() is watch.Result.OK and w.config is not None and w.config.weight == 5
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(second.name)
    tmp_link.replace(mount / "..data")  # the atomic rename kubelet does
    assert w.check() is watch.Result.OK and w.config.weight == 50


async def test_run_polls_until_cancelled(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "routing.json"
    path.write_text(_doc(1))
    rec = _Recorder()
    w = rec.watcher(path)
    w.check()
    task = asyncio.create_task(w.run())
    path.write_text(_doc(2))
    for _ in range(200):
        if w.config is not None and w.config.weight == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert w.config is not None and w.config.weight == 2


async def test_a_backend_channel_stuck_in_transient_failure_is_reopened() -> None:
    """gRPC backs off for a minute and more before re-resolving a name that failed; a
    channel failing for over REOPEN_SECONDS is replaced, and a new one tries at once."""
    channels = proxy.Channels(grace_seconds=0)
    target = "127.0.0.1:9"  # discard port on loopback: nothing listens, connects fail fast
    first = channels.get("stable", target)
    first.get_state(try_to_connect=True)
    async with asyncio.timeout(10):
        while first.get_state() is not grpc.ChannelConnectivity.TRANSIENT_FAILURE:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert channels.get("stable", target) is first  # not before REOPEN_SECONDS
    await asyncio.sleep(proxy.REOPEN_SECONDS)
    second = channels.get("stable", target)
    assert second is not first
    await channels.close()
