"""Builds objects from config nodes with a ``_target_``, checking keys and types first.

The constructor's signature is the schema: a key it does not take, a value of the wrong type or
a value its constructor refuses becomes a :class:`ConfigError` naming the config key, before
any run starts. Runtime values (spaces, the sampler, the policy) are passed as keyword
arguments and never written back into the config.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """Bad configuration: the message names the key and how to fix it."""


def build(node: DictConfig, key: str, **runtime: Any) -> Any:
    """Instantiate ``node`` (its ``_target_`` with its keys, plus ``runtime``)."""
    target, kwargs, partial = _target_and_kwargs(node, key)
    check_kwargs(target, kwargs, key, runtime=set(runtime))
    if partial:
        return functools.partial(target, **kwargs, **runtime)
    try:
        return target(**kwargs, **runtime)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{key}: {error}") from error


def accepts(node: DictConfig, key: str, name: str) -> bool:
    """Whether the ``_target_`` of ``node`` takes a parameter ``name``."""
    target, _, _ = _target_and_kwargs(node, key)
    return name in inspect.signature(target).parameters


def check_node(node: DictConfig, key: str, runtime: set[str] | None = None) -> None:
    """Validate a ``_target_`` node without building it."""
    target, kwargs, _ = _target_and_kwargs(node, key)
    check_kwargs(target, kwargs, key, runtime or set())


def check_kwargs(target: Callable[..., Any], kwargs: Mapping[str, Any], key: str,
                 runtime: set[str]) -> None:
    params = inspect.signature(target).parameters
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and n not in runtime]
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for name in kwargs:
            if name not in accepted:
                raise ConfigError(f"{key}.{name}: unknown key; valid keys are "
                                  f"{', '.join(accepted)}")
    hints = _type_hints(target)
    for name, value in kwargs.items():
        expected = hints.get(name)
        if expected is not None and not _matches(value, expected):
            raise ConfigError(f"{key}.{name}: expected {_type_name(expected)}, got "
                              f"{value!r} ({type(value).__name__})")


def _target_and_kwargs(node: DictConfig, key: str
                       ) -> tuple[Callable[..., Any], dict[str, Any], bool]:
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"{key}: expected a config with a _target_")
    data = OmegaConf.to_container(node, resolve=True)
    assert isinstance(data, dict)
    path = data.pop("_target_")
    partial = bool(data.pop("_partial_", False))
    try:
        target = get_object(path)
    except Exception as error:  # hydra raises ImportError or a bare Exception
        raise ConfigError(f"{key}._target_: cannot import {path!r} ({error})") from error
    return target, {str(k): v for k, v in data.items()}, partial


def _type_hints(target: Callable[..., Any]) -> dict[str, Any]:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except (NameError, TypeError):  # annotations that name types we cannot resolve: skip
        return {}


def _matches(value: Any, expected: Any) -> bool:
    """Whether a plain config value fits a type hint; hints we cannot judge pass."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if origin in (list, tuple, abc.Sequence) or expected in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = [a for a in typing.get_args(expected) if a is not Ellipsis]
        if origin is tuple and args and Ellipsis not in typing.get_args(expected):
            return len(value) == len(args) and all(map(_matches, value, args))
        return all(_matches(v, args[0]) for v in value) if args else True
    return True


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")
