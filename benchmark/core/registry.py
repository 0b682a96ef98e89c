"""One registry class for models, protocols, datasets, executors and table templates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from msabench.core.errors import UserError, close_matches, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping that refuses duplicates and suggests close names."""

    def __init__(self, kind: str, listing: str | None = "", discover: Callable[[], None] | None = None):
        """`listing`: the command that lists the names (default `msabench {kind}s`); None when there
        is none, and an unknown name's error then lists the names itself. `discover`: called once,
        before the first lookup or listing, to register what lives elsewhere (built-in plugins,
        entry points), so nothing is imported before it is needed."""
        self.kind = kind
        self.listing = f"msabench {kind}s" if listing == "" else listing
        self._items: dict[str, T] = {}
        self._discover = discover

    def _ensure_discovered(self) -> None:
        discover, self._discover = self._discover, None
        if discover is not None:
            discover()

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: `@MODELS.register("tfn")` (or the object's `name` attribute)."""

        def decorate(obj: T) -> T:
            self.add(name or obj.name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> T:
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        self._ensure_discovered()
        try:
            return self._items[name]
        except KeyError:
            if self.listing is None:
                matches = close_matches(name, self._items)
                hint = (f" Did you mean: {', '.join(matches)}?" if matches else "") + \
                    f" Use one of: {', '.join(sorted(self._items))}."
            else:
                hint = f"{did_you_mean(name, self._items)} List them with `{self.listing}`."
            raise UserError(f"unknown {self.kind} {name!r}.{hint}") from None

    def __contains__(self, name: object) -> bool:
        self._ensure_discovered()
        return name in self._items

    def names(self) -> list[str]:
        self._ensure_discovered()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._ensure_discovered()
        return iter(sorted(self._items.items()))

    def __len__(self) -> int:
        self._ensure_discovered()
        return len(self._items)
