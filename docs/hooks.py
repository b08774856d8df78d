"""MkDocs hooks: the README's figures in the guide pages, and links that leave the docs folder.

A page holds ``<!-- readme: TITLE -->`` where a section of ``README.md`` belongs (``intro`` is the
text above the first section): the section comes in with its headings raised so that its title
is the page's title, and its links made relative to the page. ``<!-- readme: TITLE | figures -->``
brings only the section's tables and pictures, each with the block just before it and the
paragraph just after it (the commands and the words that say where the figures come from), so
that the guide quotes the README's measurements instead of copying them.
``<!-- pictures: baselines -->`` is the baselines table recorded in ``docs/pictures/pictures.json``
with the pictures. A link to a repository file outside ``docs/`` becomes the file's path in code
(the site does not carry it), except an image, which the site then carries at the same path.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme: (.+?)(?: \| (figures))? -->")
PICTURES_MARKER = re.compile(r"<!-- pictures: baselines -->")
PICTURES_DATA = ROOT / "docs" / "pictures" / "pictures.json"
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")


def _is_external(target: str) -> bool:
    return target.startswith(("http://", "https://", "mailto:", "#")) or target.startswith("/")


def _lines_outside_code(text: str) -> list[tuple[str, bool]]:
    """Each line of ``text`` and whether it lies outside a fenced code block."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append((line, False))
        else:
            out.append((line, not fenced))
    return out


def readme_section(title: str) -> str:
    """The README's section ``title`` (down to the next heading of its level or above), its
    headings raised so that the title is a level-1 heading; ``intro`` is the text above the
    first section."""
    lines = _lines_outside_code(README.read_text(encoding="utf-8"))
    heading = re.compile(r"^(#{1,6}) (.*)$")
    if title == "intro":
        start = 1  # below the README's own title
        end = next(i for i, (ln, prose) in enumerate(lines) if prose and ln.startswith("## "))
        return "\n".join(ln for ln, _ in lines[start:end]).strip() + "\n"
    for i, (line, prose) in enumerate(lines):
        m = heading.match(line) if prose else None
        if m and m[2].strip() == title:
            start, level = i, len(m[1])
            break
    else:
        raise ValueError(f"README.md has no section {title!r}")
    end = len(lines)
    for j in range(start + 1, len(lines)):
        m = heading.match(lines[j][0]) if lines[j][1] else None
        if m and len(m[1]) <= level:
            end = j
            break
    body = []
    for line, prose in lines[start:end]:
        m = heading.match(line) if prose else None
        body.append(f"{'#' * (len(m[1]) - level + 1)} {m[2]}" if m else line)
    return "\n".join(body).strip() + "\n"


def _blocks(text: str) -> list[str]:
    """The blank-line separated blocks of Markdown ``text``, a fenced code block as one."""
    blocks, current, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def figures(text: str) -> str:
    """The tables and pictures of ``text``, each with the block just before it (a paragraph or
    the commands that made it) and the paragraph just after it."""
    blocks = _blocks(text)

    def kept(i: int, code: bool) -> bool:
        return 0 <= i < len(blocks) and not blocks[i].startswith("#") and (
            code or not blocks[i].startswith("```"))

    keep: set[int] = set()
    for i, block in enumerate(blocks):
        if block.startswith(("|", "![")):
            keep.update(j for j, code in ((i - 1, True), (i, True), (i + 1, False))
                        if kept(j, code))
    return "\n\n".join(blocks[i] for i in sorted(keep)) + "\n"


def baselines_table() -> str:
    """The baselines table as the pictures' script recorded it (10,000 test images)."""
    data = json.loads(PICTURES_DATA.read_text(encoding="utf-8"))
    rows = ["| method | correct on the 10,000 test images |", "|---|---|"]
    names = {"network": "the cross-entropy network above"}
    for method, correct in data["baselines"].items():
        rows.append(f"| {names.get(method, method)} | {correct:,} ({correct / 100:.2f} %) |")
    return "\n".join(rows) + "\n"


def _from_readme(text: str, here: str) -> str:
    """Links of README text (relative to the repository root) as links from the page in the
    docs folder ``here``."""

    def fix(m: re.Match[str]) -> str:
        bang, label, target = m.groups()
        if _is_external(target):
            return m[0]
        inside = target[len("docs/"):] if target.startswith("docs/") else "../" + target
        return f"{bang}[{label}]({posixpath.relpath(inside, here or '.')})"

    return LINK.sub(fix, text)


def _outside_images() -> set[str]:
    """Repository paths of the images the README and the docs pages show from outside docs/."""
    found = set()
    for md in [README, *(ROOT / "docs").rglob("*.md")]:
        base = ROOT if md == README else md.parent
        for bang, _, target in LINK.findall(md.read_text(encoding="utf-8")):
            if bang and not _is_external(target) and target.lower().endswith(IMAGE_SUFFIXES):
                path = (base / target).resolve()
                if path.is_file() and ROOT / "docs" not in path.parents:
                    found.add(path.relative_to(ROOT).as_posix())
    return found


def on_files(files: Any, config: Any) -> Any:
    """Carry the images shown from outside docs/ at their repository paths."""
    from mkdocs.structure.files import File

    for path in sorted(_outside_images()):
        files.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill in README sections and recorded tables; point links that leave docs/ at what the
    site carries."""
    here = posixpath.dirname(page.file.src_uri)

    def section(m: re.Match[str]) -> str:
        text = readme_section(m[1].strip())
        if m[2]:
            text = figures(text)
        return _from_readme(text, here)

    markdown = MARKER.sub(section, markdown)
    markdown = PICTURES_MARKER.sub(lambda m: baselines_table(), markdown)
    carried = _outside_images()

    def fix(m: re.Match[str]) -> str:
        bang, label, target = m.groups()
        if _is_external(target):
            return m[0]
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(here, path))
        if not resolved.startswith("../"):
            return m[0]  # inside docs/: MkDocs checks it
        repo_path = resolved[len("../"):]
        if bang and repo_path in carried:
            return f"![{label}]({posixpath.relpath(repo_path, here or '.')})"
        code = f"`{repo_path}`"
        return code if label.strip("`") in (repo_path, path) else f"{label} ({code})"

    return LINK.sub(fix, markdown)
