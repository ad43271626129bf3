"""The one place the core looks a method up by name.

The table itself is ``trainables/registry.py`` (name -> module, task, objective,
search space), part of the user-facing ``trainables/`` folder. Everything in
``sweeplab/`` that needs a method by name (validation, the engine, results that
need a method's default epochs, the command line) asks here, so the core has a
single import of ``trainables``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainables import registry  # the table of names only: a method's module loads when it is used
from trainables.registry import MethodEntry

if TYPE_CHECKING:
    from sweeplab.method import Method

__all__ = ["MethodEntry", "entries", "entry", "method_class", "names"]


def entries() -> dict[str, MethodEntry]:
    """Every registered method, by name."""
    return registry.METHODS


def names() -> list[str]:
    return sorted(entries())


def entry(name: str) -> MethodEntry:
    """The registry entry of ``name``; ``KeyError`` listing the known names otherwise."""
    return registry.get(name)


def method_class(name: str) -> type["Method"]:
    return entry(name).load()
