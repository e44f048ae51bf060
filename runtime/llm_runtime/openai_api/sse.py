"""Server-Sent Events as OpenAI streams them: `data: <json>` events, then `data: [DONE]`.

Each event is encoded on its own and written as soon as the engine produced it (the response is
never buffered whole); an error after the stream started is sent as an `{"error": ...}` event,
which the OpenAI SDK raises, and the stream ends without `[DONE]` so no client takes it for a
finished answer.
"""

from __future__ import annotations

import json
from typing import Any

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
# No proxy buffering (nginx honours X-Accel-Buffering), no caching of a live stream.
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def event(data: dict[str, Any]) -> bytes:
    """One `data:` event; compact JSON never contains a newline, so one line is one event."""
    return (
        b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
    )
