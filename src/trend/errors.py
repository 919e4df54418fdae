"""One exception tree for everything ``trend`` raises on purpose::

    TrendError
    ├── ConfigError            a setting is invalid; names the TREND_* variable
    ├── InputError             the caller sent something we refuse (HTTP 4xx, CLI exit 2)
    │   ├── EventValidationError   one or more events are invalid; nothing was stored
    │   ├── PayloadTooLargeError   a body or batch over the documented limits
    │   └── QueryError             a query parameter is out of range
    └── StorageError           the database failed; driver errors are translated to this
        ├── DatabaseUnavailableError  the database cannot be reached right now
        │   └── NodeConnectionLostError  Citus lost its connection to a node: down, or restarted
        └── TransactionAbortedError   the database undid the transaction to break a deadlock

Messages are built here, so every caller shows the same words.
"""

from __future__ import annotations

from dataclasses import dataclass


class TrendError(Exception):
    """Base of every error ``trend`` raises on purpose."""


class ConfigError(TrendError):
    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"invalid setting {setting}: {problem}")


class InputError(TrendError):
    """The caller's input is refused; nothing was changed."""


@dataclass(frozen=True)
class FieldProblem:
    """One invalid event: where it was (index in a batch or line in a file), which field, why."""

    position: int
    field: str
    message: str


class EventValidationError(InputError):
    def __init__(self, problems: list[FieldProblem], *, position_name: str = "index") -> None:
        self.problems = problems
        self.position_name = position_name
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"event at {position_name} {first.position} is invalid: {first.field}: {first.message}{more}"
        )


class PayloadTooLargeError(InputError):
    def __init__(self, what: str, limit: int) -> None:
        self.limit = limit
        super().__init__(f"{what} exceeds the limit of {limit}")


class QueryError(InputError):
    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")


class StorageError(TrendError):
    """The database failed while doing something we asked of it."""


class DatabaseUnavailableError(StorageError):
    """The database could not be reached; the operation may succeed later."""


class CommitOutcomeUnknownError(DatabaseUnavailableError):
    """The connection was lost during COMMIT and the database could not be asked, in time, whether the
    transaction committed: it may be stored. Sent again with the same event ids, a batch is stored once."""


class NodeConnectionLostError(DatabaseUnavailableError):
    """A Citus coordinator's connection to a node failed: the node is down, or it restarted and the
    connection the session had cached to it is dead. The transaction rolled back."""


class TransactionAbortedError(StorageError):
    """The database undid the transaction to break a deadlock or a serialization conflict; nothing of
    it remains, so it may be run again."""


LISTED_AT_MOST = 20


def listed(items: list[str], at_most: int = LISTED_AT_MOST) -> str:
    """``a, b, c``, cut after ``at_most`` with the count left out: an error message stays small however
    many event types or segments a database holds."""
    shown = ", ".join(items[:at_most])
    rest = len(items) - at_most
    return f"{shown} and {rest:,} more" if rest > 0 else shown
