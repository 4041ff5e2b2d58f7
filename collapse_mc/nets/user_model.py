"""A user's model: resolving ``"package.module:Name"`` and recording what ran.

A model is a callable ``(network: NetworkConfig, init: InitConfig) -> flax.linen.Module``; a linen module class
whose first two fields are ``network`` and ``init_config`` (as ``nets.MLP``) is one. It maps points
``(P, network.d_in) -> (P, network.d_out)`` and sows its hidden layers as ``nets.observe`` describes.

Import paths come only from what a user writes (a spec's ``model`` key, the ``--model`` option); nothing read
from a results store is ever imported.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys

from ..config import ConfigError

IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def resolve_model(path: str):
    """The callable named by ``"package.module:Name"`` (imported from the Python path)."""
    if not isinstance(path, str) or not IMPORT_PATH.match(path):
        raise ConfigError(f"model must be an import path 'package.module:Name', got {path!r}")
    module_name, attr = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"model {path!r}: cannot import {module_name!r} ({e})") from None
    model = getattr(module, attr, None)
    if model is None or not callable(model):
        raise ConfigError(f"model {path!r}: {module_name!r} has no callable {attr!r}")
    return model


def model_name(model) -> str:
    return f"{getattr(model, '__module__', '?')}:{getattr(model, '__qualname__', type(model).__name__)}"


def model_identity(model) -> dict:
    """``{"name": "module:QualName", "sha256": ...}``: the SHA-256 of the source file that defines the model
    (any edit to it gives another identity, so results of different code are never pooled), or of the
    model's own source, or of its name when no source is available (then say so: ``"source": false``)."""
    name = model_name(model)
    text, source = None, True
    for get in (lambda: inspect.getsource(sys.modules[model.__module__]), lambda: inspect.getsource(model)):
        try:
            text = get()
            break
        except (OSError, TypeError, KeyError, AttributeError):
            continue
    if text is None:
        text, source = name, False
    out = {"name": name, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    if not source:
        out["source"] = False
    return out
