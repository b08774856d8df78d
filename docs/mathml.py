"""MkDocs hook: LaTeX in the pages becomes MathML when the site is built, so that the browser
typesets the equations itself (no script, no network).

``$...$`` is inline math (on one line, no space just inside either dollar, so ``$5 or $6`` is
not math) and a paragraph of its own ``$$...$$`` a displayed equation, as in LaTeX; code spans
and fenced blocks are left alone. The Markdown pass never sees the math: each equation is
replaced by a placeholder before it and by its MathML (from ``latex2mathml``) after it. LaTeX
that does not convert, or names a command latex2mathml does not know, stops the build.
"""

from __future__ import annotations

import re
from typing import Any

from fastbp.errors import FastbpError, MissingDependency

DISPLAY = re.compile(r"^\$\$\n?(.+?)\n?\$\$$", re.S | re.M)
INLINE = re.compile(r"(?<![\\$])\$(?=\S)([^$\n]+?)(?<=\S)\$(?!\$)")
CODE = re.compile(r"^```.*?^```|`[^`\n]+`", re.S | re.M)
TOKEN = "MATHMLTOKEN{}X"
PARAGRAPH = re.compile(r"<p>(MATHMLTOKEN\d+X)</p>")
PLACED = re.compile(r"MATHMLTOKEN\d+X")
UNKNOWN = re.compile(r"\\[A-Za-z]+")


class MathError(FastbpError, ValueError):
    """LaTeX that does not convert to MathML."""


def to_mathml(latex: str, display: bool) -> str:
    """The MathML of one equation (``display``: a block, else inline)."""
    try:
        from latex2mathml.converter import convert
    except ImportError as exc:
        raise MissingDependency("the equations need latex2mathml: pip install -e '.[docs]'") \
            from exc

    try:
        out = convert(latex.strip(), display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises bare exceptions for bad input
        why = str(exc) or type(exc).__name__
        raise MathError(f"cannot typeset ${latex}$ ({why}): fix the LaTeX") from exc
    unknown = UNKNOWN.search(out)
    if unknown:  # latex2mathml writes a command it does not know as text
        raise MathError(f"cannot typeset ${latex}$: {unknown[0]} is not a LaTeX command "
                        "latex2mathml knows; write it another way")
    return out


def stash(markdown: str, store: dict[str, str]) -> str:
    """``markdown`` with each equation outside code replaced by a placeholder, its MathML kept
    in ``store``."""

    def keep(latex: str, display: bool) -> str:
        token = TOKEN.format(len(store))
        store[token] = to_mathml(latex, display)
        return token

    out, last = [], 0
    for code in CODE.finditer(markdown):
        out.append(_stash_prose(markdown[last:code.start()], keep))
        out.append(code[0])
        last = code.end()
    out.append(_stash_prose(markdown[last:], keep))
    return "".join(out)


def _stash_prose(text: str, keep: Any) -> str:
    text = DISPLAY.sub(lambda m: "\n" + keep(m[1], True) + "\n", text)
    return INLINE.sub(lambda m: keep(m[1], False), text)


def place(html: str, store: dict[str, str]) -> str:
    """``html`` with the placeholders replaced by their MathML (a displayed equation without
    the paragraph around it)."""
    html = PARAGRAPH.sub(lambda m: store[m[1]], html)
    return PLACED.sub(lambda m: store[m[0]], html)


_STORE: dict[str, dict[str, str]] = {}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Take the equations out of the page's Markdown."""
    store: dict[str, str] = {}
    markdown = stash(markdown, store)
    _STORE[page.file.src_uri] = store
    return markdown


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Put the equations back, as MathML."""
    return place(html, _STORE.pop(page.file.src_uri, {}))
