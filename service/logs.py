"""Log hygiene: client-supplied text never makes a log line longer than a bound.

``clip`` shortens one value where it is logged; :class:`TruncatingFormatter` bounds whole lines
(tracebacks excepted) for the process's handlers (``shotstream serve`` installs it).
"""

from __future__ import annotations

import logging

DEFAULT_MAX_CHARS = 500


def clip(text: str, limit: int = DEFAULT_MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut; control characters escaped."""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class TruncatingFormatter(logging.Formatter):
    """Cuts each record's message to ``limit`` characters before the usual formatting."""

    def __init__(self, fmt: str | None = None, limit: int = 4 * DEFAULT_MAX_CHARS):
        super().__init__(fmt)
        self.limit = limit

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        if len(record.message) > self.limit:
            record.message = clip(record.message, self.limit)
        return super().formatMessage(record)


def install(limit: int = 4 * DEFAULT_MAX_CHARS) -> None:
    """Give every root handler a TruncatingFormatter (keeping its format string)."""
    for handler in logging.getLogger().handlers:
        fmt = handler.formatter._fmt if handler.formatter is not None else None  # noqa: SLF001
        handler.setFormatter(TruncatingFormatter(fmt, limit))
