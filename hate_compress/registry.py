"""One way to make things selectable by name from a config: loss terms, pruners, quantizers,
compression-step restorers and pipeline stages.

Each kind keeps a `Registry`; a module registers its entries when it is imported (a decorator
on a class or function, or `add` for an instance), and a config value is turned into an entry
with `get`, whose error is the one line a user sees for a typo. Modules listed in the config's
`plugins` are imported before validation (`import_plugins`), so a user's own term, pruner or
quantizer registers itself exactly like the built-in ones, without editing this package.

A leaf module on purpose: it imports nothing of the package but `errors`, so any layer can hold
a registry without an import cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from hate_compress.errors import ConfigError

T = TypeVar("T")
_MISSING = object()


def qualified_name(obj: Any) -> str:
    """`module.qualname` of a class or function, else of the object's type."""
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{target.__module__}.{target.__qualname__}"


class Registry(Generic[T]):
    """Name -> entry, with a conflict check and a "choose from" error.

    `what` names the kind in messages ("loss term"); `key` is the config key whose value is
    looked up ("prune.method"), or whose last part is the name ("kd.terms.{name}"). `identity` says when two entries are the same thing: re-registering
    the same one (a module reloaded, a notebook cell run twice) replaces it silently, a
    different one under a taken name is an error — two plugins fighting over a name would make
    a config silently mean something else. `meta` keeps what an entry declared beside it (a
    stage's rank in the pipeline).
    """

    def __init__(self, what: str, key: str, identity: Callable[[T], str] = qualified_name):
        self.what, self.key, self.identity = what, key, identity
        self._entries: dict[str, T] = {}
        self.meta: dict[str, dict[str, Any]] = {}

    def add(self, name: str, entry: T, **meta: Any) -> T:
        old = self._entries.get(name)
        if old is not None and self.identity(old) != self.identity(entry):
            raise ValueError(f"{self.what} {name!r} is already registered by {self.identity(old)}; "
                             f"{self.identity(entry)} cannot take the name")
        self._entries[name] = entry
        self.meta[name] = meta
        return entry

    def pop(self, name: str, default: Any = None) -> Any:
        """Forget `name` (tests that register a throw-away entry clean up with this)."""
        self.meta.pop(name, None)
        return self._entries.pop(name, default)

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda entry: self.add(name, entry, **meta)

    def get(self, name: Any, default: Any = _MISSING) -> T:
        """The entry called `name`; else `default` when given, else a one-line ConfigError
        naming the choices."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value from a config
            if default is not _MISSING:
                return default
            raise ConfigError(self.unknown(name)) from None

    def unknown(self, name: Any) -> str:
        """`prune.method: unknown pruner 'x'; choose from ...`, or, when the name is part of the
        config key (`key="kd.terms.{name}"`), `kd.terms.x: unknown loss term; choose from ...`."""
        where = self.key.format(name=name)
        named = "" if where != self.key else f" {name!r}"
        return f"{where}: unknown {self.what}{named}; choose from {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        """Replace an entry on purpose, keeping what it declared (tests swap a stage this way);
        `add` is the checked path."""
        self._entries[name] = entry
        self.meta.setdefault(name, {})

    def __delitem__(self, name: str) -> None:
        self.pop(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


def with_defaults(options: Mapping[str, Any], declared: Mapping[str, Any], key: str,
                  owner: str) -> dict[str, Any]:
    """`options` over the `declared` defaults of a registered entry (a pruner's or a
    quantizer's); an undeclared key is a ConfigError naming the declared ones, because a typo
    must not silently fall back to a default."""
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not an option of {owner} "
                          f"(options: {sorted(declared) or 'none'})")
    return {**declared, **options}


def import_plugins(modules: Any) -> None:
    """Import the config's `plugins` (module names), whose imports register their entries.

    Runs before the config is validated, so a plugin's term/pruner/quantizer names are known to
    every check. A module that cannot be imported is one line naming it."""
    if modules is None:
        return
    if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"plugins={modules!r} must be a list of importable module names")
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # whatever the plugin raised, the user gets one line
            raise ConfigError(f"plugins: cannot import {name!r} ({type(exc).__name__}: {exc})"
                              ) from None
