"""An attribute made on its first use, once, whichever thread comes first.

``Trend`` makes its ingest, rollups, alerts and worker this way: a process that only reads (``trend top``,
a script, a replica's first request) never imports them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar, overload

T = TypeVar("T")


class OnFirstUse(Generic[T]):
    """Like ``functools.cached_property``, made under a lock: two threads' first uses make one part."""

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._name = make.__name__
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, owner: None, owner_type: type | None = None) -> Self: ...

    @overload
    def __get__(self, owner: object, owner_type: type | None = None) -> T: ...

    def __get__(self, owner: object | None, owner_type: type | None = None) -> T | Self:
        if owner is None:
            return self
        made: dict[str, Any] = owner.__dict__
        if self._name not in made:
            with self._lock:
                if self._name not in made:
                    made[self._name] = self._make(owner)
        return made[self._name]  # type: ignore[no-any-return]

    def made(self, owner: object) -> bool:
        """Whether ``owner``'s part exists already (closing a part never used must not make it)."""
        return self._name in owner.__dict__
