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

    def canonical(self, name: str) -> str:
        """The registered spelling of `name`: itself, or the one name equal to it ignoring case
        (`TFN` -> `tfn`, `MOSI` -> `mosi`); an unknown name is a UserError with close names."""
        self._ensure_discovered()
        if name in self._items:
            return name
        folded = [n for n in self._items if n.casefold() == str(name).casefold()]
        if len(folded) == 1:
            return folded[0]
        raise UserError(f"unknown {self.kind} {name!r}.{self.unknown_hint(name, self._items)}")

    def unknown_hint(self, name: str, names) -> str:
        """' Did you mean: ...?' (close names, ignoring case) and where the names are listed."""
        names = sorted(names)
        by_fold: dict[str, str] = {}
        for n in names:
            by_fold.setdefault(n.casefold(), n)
        matches = [by_fold[m] for m in close_matches(str(name).casefold(), by_fold)]
        if self.listing is None:
            return (f" Did you mean: {', '.join(matches)}?" if matches else "") + f" Use one of: {', '.join(names)}."
        hint = f" Did you mean: {', '.join(matches)}?" if matches else did_you_mean(str(name), names)
        return f"{hint} List them with `{self.listing}`."

    def get(self, name: str) -> T:
        """The object registered as `name` (any case, `canonical`)."""
        return self._items[self.canonical(name)]

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
