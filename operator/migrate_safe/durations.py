"""Durations as users write them ('500ms', '5s', '2m', '1h30m') and as PostgreSQL reads them.

No dependency beyond the standard library: the directives of a migration file, the flags, the
settings file and the operator's spec all parse durations here, and lint stays pure.
"""

from __future__ import annotations

import re

from migrate_safe.errors import ConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|min|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str, *, what: str) -> float:
    """Parse '500ms', '5s', '2m', '1h30m' or a bare number of seconds into seconds.

    `what` names the flag, directive or field so the error tells the user where to look.
    """
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise ConfigError(f"{what}: cannot parse duration {text!r} (use e.g. 500ms, 5s, 2m, 1h)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def parse_positive_duration(text: str, *, what: str, zero_means: str) -> float:
    """A duration of at least 1ms: `zero_means` says why zero is refused, e.g. that
    PostgreSQL reads a zero timeout as "no timeout" (wait forever). Below 1ms counts as
    zero, because PostgreSQL receives whole milliseconds (`format_duration`)."""
    seconds = parse_duration(text, what=what)
    if round(seconds * 1000) < 1:
        raise ConfigError(f"{what}: {text!r} is less than 1ms; {zero_means}; give e.g. 500ms")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way PostgreSQL settings accept them ('500ms')."""
    return f"{round(seconds * 1000)}ms"
