"""Library logs and warnings without their text, and a bounded number of them per request.

pydicom quotes the values it complains about ("Invalid value for VR UI: ..."), and a corrupt
length can make such a value swallow the header, patient name and id included. Its records come
from ``pydicom`` and from child loggers (``pydicom.pixels.decoders.base``), and its complaints
also arrive as ``warnings``, which Python prints raw to stderr. So:

* every record of a ``pydicom`` logger gets a fixed text, no arguments and no exception (a
  record factory does it as the record is made, so it holds for loggers created later too,
  and whatever handler receives it, pytest's ``caplog`` included);
* every warning raised from a ``pydicom`` module becomes such a record instead of stderr text
  (``warnings.showwarning``), so it is counted, scrubbed and carries the request id;
* inside :func:`log_budget` (one per decoded upload) at most ``limit`` of these records are
  kept, and one line says how many more were dropped: one 1.1 MB file wrote 9,500 lines.

Outside any budget (the trainer, a header read elsewhere) the 1st, 2nd, 4th, 8th ... scrubbed
record of each thread is kept, which bounds a flood logarithmically without a clock.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

SCRUBBED_PREFIXES = ("pydicom",)
"""Loggers (and their children) and warning-raising modules whose text may quote file content."""

WITHHELD = "%s reported a problem with its input (%s; details withheld: may hold PHI)"
DEFAULT_LIMIT = 20
"""Scrubbed records kept per budget: enough to see what kind of trouble, never a flood."""

WARNINGS_LOGGER = "pydicom.warnings"
"""Where captured library warnings are logged (a child of ``pydicom``, so scrubbed too)."""


def is_scrubbed(name: str) -> bool:
    """Whether the logger or module ``name`` is one whose text is withheld."""
    return any(name == p or name.startswith(p + ".") for p in SCRUBBED_PREFIXES)


@dataclass
class _Budget:
    limit: int
    kept: int = 0
    dropped: int = 0

    def admit(self) -> bool:
        if self.kept < self.limit:
            self.kept += 1
            return True
        self.dropped += 1
        return False


logger = logging.getLogger(__name__)

_budget: ContextVar[_Budget | None] = ContextVar("lus_log_budget", default=None)
_unscoped = threading.local()


def _admit_unscoped() -> bool:
    count = getattr(_unscoped, "count", 0) + 1
    _unscoped.count = count
    return count & (count - 1) == 0  # a power of two


def admit() -> bool:
    """Whether one more scrubbed record may be written now (and count it)."""
    budget = _budget.get()
    return budget.admit() if budget is not None else _admit_unscoped()


@contextmanager
def log_budget(limit: int = DEFAULT_LIMIT) -> Iterator[None]:
    """Keep at most ``limit`` scrubbed library records inside the block, then say how many
    were dropped. Threads that work for the block must run in a copy of its context
    (``contextvars.copy_context().run``) to share the budget. Nested blocks keep the outer one:
    the limit is per request, not per helper."""
    if _budget.get() is not None:
        yield
        return
    budget = _Budget(limit)
    token = _budget.set(budget)
    try:
        yield
    finally:
        _budget.reset(token)
        if budget.dropped:  # a count only, on a logger of ours: not scrubbed, not budgeted
            logger.warning(
                "%d more problem reports of %s were dropped (limit %d per request)",
                budget.dropped,
                "/".join(SCRUBBED_PREFIXES),
                limit,
            )


def _scrub(record: logging.LogRecord) -> None:
    """Replace what a record says by what kind of record it was."""
    if record.msg is WITHHELD:  # made so, e.g. by _show_warning: its arguments are names
        return
    exc_type = record.exc_info[0] if record.exc_info else None
    record.msg = WITHHELD
    record.args = (record.name.split(".")[0], exc_type.__name__ if exc_type else "log record")
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None


class ScrubFilter(logging.Filter):
    """Scrubs a record of a library logger (again, should the record factory have been
    replaced) and applies the request's budget. Installed on the library's loggers: a logger's
    filters see only the records made on that very logger, so each known child gets one too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_scrubbed(record.name):
            return True
        _scrub(record)
        return admit()


@dataclass
class _Hooks:
    """What install() replaced, so that calls it does not handle go on as before."""

    factory: Callable[..., logging.LogRecord]
    showwarning: Callable[..., None]


_FILTER = ScrubFilter()
_hooks = _Hooks(factory=logging.getLogRecordFactory(), showwarning=warnings.showwarning)
_lock = threading.Lock()


def _scrubbing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _hooks.factory(*args, **kwargs)
    if is_scrubbed(record.name):
        _scrub(record)
    return record


def _show_warning(  # noqa: PLR0917 (the signature of warnings.showwarning)
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the library's warnings: a scrubbed record, never text."""
    module = _module_of(filename)
    if module is None:  # not the library's: shown as before
        _hooks.showwarning(message, category, filename, lineno, file, line)
        return
    logging.getLogger(WARNINGS_LOGGER).warning(WITHHELD, module, category.__name__)


def _module_of(filename: str) -> str | None:
    """The scrubbed package a warning's file belongs to, if any."""
    parts = filename.replace("\\", "/").split("/")
    for prefix in SCRUBBED_PREFIXES:
        if prefix in parts[:-1]:
            return prefix
    return None


def _attach_filters() -> None:
    """Add the filter to every library logger that exists now."""
    names = [n for n in logging.Logger.manager.loggerDict if is_scrubbed(n)]
    for name in {*names, *SCRUBBED_PREFIXES, WARNINGS_LOGGER}:
        library_logger = logging.getLogger(name)
        if _FILTER not in library_logger.filters:
            library_logger.addFilter(_FILTER)


def install() -> None:
    """Scrub library records and warnings from now on (idempotent). Call it after importing
    the library, so that its child loggers exist, and again where something (a test
    framework's warning capture) replaced the warning hook since."""
    with _lock:
        _attach_filters()
        if warnings.showwarning is not _show_warning:
            _hooks.showwarning = warnings.showwarning
            warnings.showwarning = _show_warning
        if logging.getLogRecordFactory() is not _scrubbing_factory:
            _hooks.factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_scrubbing_factory)


__all__ = [
    "DEFAULT_LIMIT",
    "ScrubFilter",
    "admit",
    "install",
    "is_scrubbed",
    "log_budget",
]
