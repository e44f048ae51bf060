"""The OpenAI-compatible HTTP API next to gRPC, for `runtime_bench.py --http-streams N`.

The same server, engine, prompts and greedy decoding serve N streams over gRPC (GenerateStream)
and then N over HTTP (`POST /v1/chat/completions`, `stream: true`, Server-Sent Events read with
httpx), back to back in one run; what HTTP costs is the difference: added TTFT p50 and the tok/s
ratio. Token counts come from the stream's usage chunk (an SSE chunk may carry several tokens).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol


class Clock(Protocol):
    """runtime_bench.Timing: `token(count)` stamps first and last token times."""

    tokens: int

    def token(self, count: int = 1) -> None: ...


def chat_body(messages: list[tuple[str, str]], *, model: str, new_tokens: int) -> dict[str, Any]:
    """The request gRPC's `build_request(messages=..., max_new_tokens=..., temperature=0)` is."""
    return {
        "model": model,
        "messages": [{"role": r, "content": c} for r, c in messages],
        "max_tokens": new_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def read_event(line: str, clock: Clock) -> bool:
    """Account one SSE line; True once `data: [DONE]` ends the stream. A chunk with text stamps
    a token; the usage chunk sets the true token count."""
    if not line.startswith("data: "):
        return False
    data = line.removeprefix("data: ")
    if data == "[DONE]":
        return True
    chunk = json.loads(data)
    if "error" in chunk:
        raise RuntimeError(f"stream failed: {chunk['error']}")
    if any(c.get("delta", {}).get("content") for c in chunk.get("choices") or ()):
        clock.token(1)
    usage = chunk.get("usage")
    if usage:
        clock.tokens = int(usage["completion_tokens"])
    return False


async def run_http(
    client: Any, url: str, body: dict[str, Any], clock: Clock
) -> None:  # client: httpx.AsyncClient
    """One streamed chat completion, read to its `[DONE]`."""
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if read_event(line, clock):
                return
    raise RuntimeError("the stream ended without data: [DONE]")


@dataclasses.dataclass(frozen=True)
class Cost:
    """What HTTP adds next to gRPC at the same concurrency, same run."""

    streams: int
    added_ttft_p50: float  # seconds, HTTP minus gRPC
    tok_s_ratio: float  # HTTP / gRPC aggregate generated tokens per second


def cost(*, streams: int, grpc: tuple[float, float], http: tuple[float, float]) -> Cost:
    """From (TTFT p50 seconds, tok/s) of the gRPC and the HTTP burst."""
    (grpc_ttft, grpc_tok_s), (http_ttft, http_tok_s) = grpc, http
    ratio = http_tok_s / grpc_tok_s if grpc_tok_s > 0 else float("nan")
    return Cost(streams=streams, added_ttft_p50=http_ttft - grpc_ttft, tok_s_ratio=ratio)


def describe(c: Cost) -> str:
    return (
        f"HTTP vs gRPC at N={c.streams}: added TTFT p50 {c.added_ttft_p50 * 1000:+.0f} ms, "
        f"tok/s ratio {c.tok_s_ratio:.2f}x"
    )
