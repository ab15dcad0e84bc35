"""A small typed name registry that refuses duplicates (as torchvision's does, not timm's)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from clbench.errors import RegistryError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    provider: str


class Registry(Generic[T]):
    """Maps snake_case names to registered objects, remembering who registered each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, description: str, provider: str) -> None:
        if not name.isidentifier() or name != name.lower():
            raise RegistryError(f"{self.kind} name {name!r} from {provider} is not a snake_case identifier")
        if name in self._entries:
            first = self._entries[name].provider
            raise RegistryError(f"{self.kind} {name!r} is registered twice: by {first} and by {provider}")
        self._entries[name] = Entry(name, obj, description, provider)

    def discard_provider(self, provider: str) -> None:
        """Remove every entry ``provider`` registered (a plugin found broken half-way)."""
        self._entries = {k: e for k, e in self._entries.items() if e.provider != provider}

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def get_or_none(self, name: str) -> T | None:
        """The object registered as ``name``, or None."""
        entry = self._entries.get(name)
        return entry.obj if entry is not None else None

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            available = ", ".join(sorted(self._entries)) or "(none)"
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {available}{hint}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
