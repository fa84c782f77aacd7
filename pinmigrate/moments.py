"""Moments in time as pinmigrate reads and writes them: aware, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone; a naive one is taken as UTC (comparisons never raise)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    """Full ISO-8601 in UTC (``...+00:00``), as plan files and inventory JSON hold it."""
    return None if moment is None else aware(moment).astimezone(UTC).isoformat()


def iso_z(moment: datetime | None) -> str | None:
    """``2024-01-10T12:00:00Z``: seconds, UTC, as journals, messages and Adobe payloads say."""
    if moment is None:
        return None
    return aware(moment).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
