"""Registry of positional-embedding families: ``build_pe(name, **kwargs)`` and ``list_pes()``."""
from __future__ import annotations

import inspect
from collections.abc import Callable

from .base import PositionalEmbedding

__all__ = ["build_pe", "get_pe_class", "list_pes", "register_pe"]

_REGISTRY: dict[str, type[PositionalEmbedding]] = {}


def register_pe(name: str) -> Callable[[type[PositionalEmbedding]], type[PositionalEmbedding]]:
    """Class decorator that makes a :class:`PositionalEmbedding` buildable as ``name``."""

    def decorate(cls: type[PositionalEmbedding]) -> type[PositionalEmbedding]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a PE named {name!r} is already registered ({_REGISTRY[name].__name__})")
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_pes() -> list[str]:
    """Names accepted by :func:`build_pe`, sorted."""
    return sorted(_REGISTRY)


def get_pe_class(name: str) -> type[PositionalEmbedding]:
    """The class registered as ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown PE {name!r}; known PEs: {', '.join(list_pes())}") from None


def build_pe(name: str, **kwargs) -> PositionalEmbedding:
    """Build the PE registered as ``name``.

    Every family takes ``dim``, ``num_heads``, ``num_axes``, ``num_prefix_tokens``, ``depth`` and
    ``grid`` (see :class:`visionpe.base.PositionalEmbedding`) plus its own keyword arguments.

    Example:
        >>> pe = build_pe("rope-axial", dim=64, num_heads=4, num_axes=2)

    Raises:
        ValueError: unknown ``name``, or a keyword argument the family does not take (the message
            lists the ones it does).
    """
    cls = get_pe_class(name)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params) - {"self"})
        if unknown:
            accepted = [n for n in params if n != "self"]
            raise ValueError(f"PE {name!r} takes no argument {', '.join(map(repr, unknown))}; "
                             f"it takes: {', '.join(accepted)}")
    return cls(**kwargs)
