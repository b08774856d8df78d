"""Griffe extension: Sphinx roles in docstrings become cross-references when the site is built.

The docstrings write references as Sphinx does (``:func:`load```, ``:mod:`.book```,
``:class:`~fastbp.Network```); mkdocstrings does not read roles, so each one is rewritten before
its docstring is parsed:

- the target is looked up as Sphinx would: a leading dot is relative to the enclosing object,
  then each enclosing module or class up to the package (``.book`` in ``fastbp.model.network`` is
  ``fastbp.model.book``); a name without a dot is looked up the same way (the scope's members and
  imports), then as a full path, then as the unique object whose path ends with it;
- a target found becomes an optional autorefs reference to the object's canonical path: a link
  where the site documents it, the name in code elsewhere;
- a target not found becomes the name in code.

The text shown is the target as written (``~`` keeps its last component, a leading dot is dropped).
Enabled in ``mkdocs.yml`` under the Python handler's ``extensions``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(mod|func|class|meth|attr|data|exc|obj|const|type):`([^`]+)`")
"""A Sphinx role: its kind and its target (``~path``, ``.relative`` or ``title <path>``)."""


def _canonical(collection: Any, path: str) -> str | None:
    """The canonical path of the object at ``path`` in ``collection``, or None."""
    try:
        obj = collection[path]
        return obj.final_target.path if obj.is_alias else obj.path
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _scopes(obj: griffe.Object | griffe.Alias) -> list[str]:
    """The paths a name is looked up in from ``obj``'s docstring: itself when it holds members,
    then each enclosing class or module."""
    scopes = []
    current: Any = obj if obj.is_module or obj.is_class else obj.parent
    while current is not None:
        scopes.append(current.path)
        current = current.parent
    return scopes


def resolve(obj: griffe.Object, target: str, every_path: list[str]) -> str | None:
    """The canonical path ``target`` names in ``obj``'s docstring, or None if nothing matches."""
    collection = obj.modules_collection
    name = target.lstrip(".").removesuffix("()")
    for scope in _scopes(obj):
        found = _canonical(collection, f"{scope}.{name}")
        if found:
            return found
    if not target.startswith("."):
        found = _canonical(collection, name)
        if found:
            return found
    ends = [path for path in every_path if path.endswith("." + name)]
    return _canonical(collection, ends[0]) if len(ends) == 1 else None


def rewrite(text: str, obj: griffe.Object, every_path: list[str]) -> str:
    """``text`` with each role replaced by an optional autorefs reference or by code."""

    def one(m: re.Match[str]) -> str:
        target = m[2].strip()
        title, _, explicit = target.partition(" <")
        if explicit:  # :func:`title <path>`
            target, shown = explicit.rstrip(">"), title
        else:
            short = target.startswith("~")
            target = target.lstrip("~")
            shown = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
        path = resolve(obj, target, every_path)
        if path is None:
            return f"`{shown}`"
        return f'<autoref identifier="{html.escape(path)}" optional>`{shown}`</autoref>'

    return ROLE.sub(one, text)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    """``obj`` and every object defined under it (aliases left out: their targets are walked)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found += _walk(member)
    return found


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring in a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader,
                   **kwargs: Any) -> None:
        objects = _walk(pkg)
        every_path = [o.path for o in objects]
        for obj in objects:
            if obj.docstring is not None and ROLE.search(obj.docstring.value):
                obj.docstring.value = rewrite(obj.docstring.value, obj, every_path)
