"""Timestamps as status stores them: RFC 3339, UTC, whole seconds, with a "Z"."""

from __future__ import annotations

import datetime as dt


def rfc3339(moment: dt.datetime) -> str:
    """`moment` as status stores it, e.g. 2024-05-01T12:00:00Z."""
    if moment.tzinfo is None:
        raise ValueError(f"time {moment.isoformat()} has no time zone; pass an aware datetime")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """A timestamp from status, as an aware datetime."""
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


# the last moment a datetime holds: a wait that would end after it never ends
END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


def after(text: str, seconds: float) -> dt.datetime:
    """The moment `seconds` after the stored timestamp `text`, at most END_OF_TIME."""
    try:
        return parse_time(text) + dt.timedelta(seconds=seconds)
    except OverflowError:  # a wait the schema should have refused must not fail the reconcile
        return END_OF_TIME
