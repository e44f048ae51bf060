"""Timestamps as Kubernetes writes them (RFC 3339, UTC, "Z"), and back."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware UTC datetime from "2026-11-29T01:05:21Z" (or a datetime); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a "Z", to the microsecond only when there is one."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
