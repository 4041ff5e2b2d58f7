"""Name -> callable registries (losses, initializers, optimizers) and how a callable is recorded.

Wherever a setting takes a name (``TrainConfig.loss``, ``TrainConfig.optimizer``, ``InitConfig.weights``),
a Python callable is accepted too. Validation, the command line and sweep specs read the same registry, so
a name means one thing everywhere. Registries are read-only: a new loss, initializer or optimizer is passed
as a callable (from Python) rather than registered under a global name.

Every cell records what ran as a name and a hash (``identity``): a registered name and the SHA-256 of its
function's source; a callable as ``custom:<qualified name>`` and the SHA-256 of its source (or bytecode)
and captured constants, so two different callables with the same name are told apart.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import re
import types
from collections.abc import Callable, Mapping

CUSTOM_PREFIX = "custom:"


def callable_name(fn) -> str:
    """``custom:<module>.<qualname>`` of a user's callable (its class's name for a callable object)."""
    target = fn if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)) else type(fn)
    module = getattr(target, "__module__", "") or ""
    qual = getattr(target, "__qualname__", type(fn).__name__)
    return CUSTOM_PREFIX + (f"{module}.{qual}" if module and module != "builtins" else qual)


def _describe(obj, depth: int = 0) -> str:
    """Source (or bytecode) of a function plus the repr of its captured constants, recursively."""
    if depth > 4:
        return repr(type(obj))
    if isinstance(obj, functools.partial):
        return f"partial({_describe(obj.func, depth + 1)};{obj.args!r};{sorted(obj.keywords.items())!r})"
    fn = obj if isinstance(obj, types.FunctionType) else getattr(obj, "__call__", None)
    if not isinstance(fn, (types.FunctionType, types.MethodType)):
        return repr(obj)
    fn = getattr(fn, "__func__", fn)
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        code = fn.__code__
        text = code.co_code.hex() + repr(code.co_consts) + repr(code.co_names)
    parts = [text, repr(fn.__defaults__), repr(fn.__kwdefaults__)]
    for cell in fn.__closure__ or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        parts.append(_describe(v, depth + 1) if callable(v) else repr(v))
    if not isinstance(obj, types.FunctionType) and hasattr(obj, "__dict__"):
        parts.append(repr(sorted((k, repr(v)) for k, v in vars(obj).items())))
    return "\n".join(parts)


_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")


def callable_hash(fn) -> str:
    """16 hex digits of SHA-256 over the callable's source and captured constants (see ``_describe``); memory
    addresses in reprs (``<object at 0x...>``) are dropped so the hash is the same in every process."""
    return hashlib.sha256(_ADDRESS.sub("", _describe(fn)).encode()).hexdigest()[:16]


def callable_value(fn) -> str:
    """``custom:<qualified name>#<hash>``: how a callable setting enters a cell's identity."""
    return f"{callable_name(fn)}#{callable_hash(fn)}"


class Registry(Mapping):
    """A read-only mapping name -> callable for one ``kind`` of setting (``"loss"``, ...)."""

    def __init__(self, kind: str, entries: Mapping[str, Callable]):
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Callable:
        return self._entries[name]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def check(self, value, setting: str | None = None) -> None:
        """``ConfigError`` unless ``value`` is a registered name or a callable."""
        from .config import ConfigError  # lazy: config reads the initializer registry
        if callable(value) and not isinstance(value, str):
            return
        if not isinstance(value, str) or value not in self._entries:
            raise ConfigError(f"unknown {setting or self.kind} {value!r}; choose one of {', '.join(self._entries)} "
                              f"(or pass a Python callable)")

    def resolve(self, value) -> Callable:
        """The callable for a name, or the callable itself."""
        self.check(value)
        return value if callable(value) and not isinstance(value, str) else self._entries[value]

    def label(self, value) -> str:
        """The name recorded for ``value``: the registered name or ``custom:<qualified name>``."""
        return value if isinstance(value, str) else callable_name(value)

    def cell_value(self, value) -> str:
        """What enters a cell's identity: the name, or ``custom:<qualified name>#<hash>`` for a callable (a
        registered name does not carry its hash, so editing the library's code keeps old cells' ids)."""
        return value if isinstance(value, str) else callable_value(value)

    def identity(self, value) -> dict:
        """``{"name": label, "hash": callable_hash}`` of what runs for ``value``."""
        return {"name": self.label(value), "hash": callable_hash(self.resolve(value))}
