"""The documentation site as a reader opens it: no raw Sphinx role left, no broken link, the
equations typeset as MathML, and the build-time pieces behind that (docs/roles.py,
docs/mathml.py, docs/hooks.py) each doing what its docstring says."""

from __future__ import annotations

import html
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RAW_ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj|const|type):(?:`|<code>)")
LINK = re.compile(r"""(?:href|src)="([^"]*)\"""")
ID = re.compile(r"""\bid="([^"]*)\"""")


def load(name: str):
    """A module of docs/ by file name (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once in strict mode as CI builds it."""
    for package in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "latex2mathml"):
        pytest.importorskip(package, reason=f"the docs build needs {package}: "
                                            "pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_no_page_shows_a_raw_sphinx_role(site):
    left = {p.relative_to(site).as_posix(): RAW_ROLE.findall(p.read_text()) for p in pages(site)}
    assert not {page: found for page, found in left.items() if found}


def test_every_link_inside_the_site_reaches_its_page_and_anchor(site):
    broken = []
    ids: dict[Path, set[str]] = {}
    for page in pages(site):
        for target in LINK.findall(page.read_text()):
            target = html.unescape(target)
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("mailto:", "data:")):
                continue
            base = site if parts.path.startswith("/") else page.parent  # 404.html: from the root
            path = (base / unquote(parts.path).lstrip("/")).resolve() if parts.path else page
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{page.relative_to(site)} -> {target}")
                continue
            if parts.fragment and path.suffix == ".html":
                if path not in ids:
                    ids[path] = set(ID.findall(path.read_text()))
                if unquote(parts.fragment) not in ids[path]:
                    broken.append(f"{page.relative_to(site)} -> {target} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_every_page_renders_offline(site):
    """No script, stylesheet, font or picture from another host (no CDN): the site reads the
    same without a network."""
    outside = re.compile(r"""<(?:script|img)[^>]+src="(?:https?:)?//|"""
                         r"""<link[^>]+href="(?:https?:)?//[^"]*"[^>]*>""")
    found = {p.relative_to(site).as_posix(): outside.findall(p.read_text()) for p in pages(site)}
    assert not {page: tags for page, tags in found.items() if tags}
    for css in site.rglob("*.css"):
        assert not re.search(r"url\((['\"]?)(?:https?:)?//", css.read_text()), css


def test_the_roles_of_the_docstrings_became_links(site):
    """A docstring's :func:`fastbp.load` (in Network.save) links to load's entry in the
    reference, wherever the reference documents it."""
    network = (site / "reference" / "network" / "index.html").read_text()
    links = re.findall(r'<a class="autorefs autorefs-internal"[^>]*href="([^"]*)"', network)
    assert any(href.endswith("#fastbp.model.persist.load") for href in links), links


def test_the_guide_equations_are_mathml(site):
    """Every page whose Markdown holds LaTeX shows MathML in its place and no dollar-math."""
    for source in [DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md"))]:
        text = source.read_text()
        if "$" not in text.replace("`$", ""):
            continue
        name = "" if source.name == "index.md" else f"guide/{source.stem}/"
        built = (site / name / "index.html").read_text()
        assert "<math" in built, source
        assert "MATHMLTOKEN" not in built and "$$" not in built, source
    chapter3 = (site / "guide" / "chapter3" / "index.html").read_text()
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in chapter3


def test_the_pictures_appear_where_the_guide_talks_about_them(site):
    for page, picture in [("see-and-keep", "confusion.png"), ("see-and-keep", "misclassified.png"),
                          ("chapter3", "learning_curve.png")]:
        assert f"pictures/{picture}" in (site / "guide" / page / "index.html").read_text()


# --- docs/roles.py on a package of its own -------------------------------------------------

PACKAGE = {
    "__init__.py": '"""The package: see :mod:`.sub`, :func:`load` and :class:`~pkg.sub.Thing`."""\n'
                   "from .sub import Thing, load\n",
    "sub.py": '"""Holds :class:`Thing`; :meth:`Thing.go` goes; :func:`missing` is nowhere;\n'
              ':func:`the loader <pkg.sub.load>`."""\n'
              "class Thing:\n"
              '    """Calls :meth:`go` and :data:`pkg.LIMIT`."""\n'
              "    def go(self):\n"
              '        """Back to :class:`Thing`."""\n'
              "def load():\n"
              '    """A loader."""\n',
}


@pytest.fixture
def package(tmp_path):
    griffe = pytest.importorskip("griffe")
    (tmp_path / "pkg").mkdir()
    for name, text in PACKAGE.items():
        (tmp_path / "pkg" / name).write_text(text)
    return griffe.load("pkg", search_paths=[str(tmp_path)],
                       extensions=griffe.load_extensions(load("roles").SphinxRoles()))


def ref(path: str, shown: str) -> str:
    return f'<autoref identifier="{path}" optional>`{shown}`</autoref>'


def test_roles_resolve_as_sphinx_resolves_them(package):
    assert package.docstring.value == (
        f"The package: see {ref('pkg.sub', 'sub')}, {ref('pkg.sub.load', 'load')} and "
        f"{ref('pkg.sub.Thing', 'Thing')}.")
    sub = package["sub"]
    assert sub.docstring.value == (
        f"Holds {ref('pkg.sub.Thing', 'Thing')}; {ref('pkg.sub.Thing.go', 'Thing.go')} goes; "
        f"`missing` is nowhere;\n{ref('pkg.sub.load', 'the loader')}.")
    assert sub["Thing"].docstring.value == (
        f"Calls {ref('pkg.sub.Thing.go', 'go')} and `pkg.LIMIT`.")
    assert sub["Thing.go"].docstring.value == f"Back to {ref('pkg.sub.Thing', 'Thing')}."


# --- docs/mathml.py ---------------------------------------------------------------------------

def test_math_outside_code_becomes_mathml_and_code_stays_as_written():
    pytest.importorskip("latex2mathml")
    mathml = load("mathml")
    store: dict[str, str] = {}
    text = ("Set `$FASTBP_DATA` and pay $5 or $6; BP1 is $\\delta^L = a - y$.\n\n"
            "$$\nw \\rightarrow w - \\eta v\n$$\n\n```bash\necho $HOME $PATH\n```\n")
    stashed = mathml.stash(text, store)
    assert "`$FASTBP_DATA`" in stashed and "$5 or $6" in stashed and "echo $HOME $PATH" in stashed
    assert len(store) == 2 and "\\delta" not in stashed
    rendered = mathml.place(stashed.replace(list(store)[1], f"<p>{list(store)[1]}</p>"), store)
    assert rendered.count("<math") == 2 and 'display="block"' in rendered
    assert "<p><math" not in rendered  # a displayed equation leaves its paragraph


@pytest.mark.parametrize("latex", ["\\frac{", "a^", "\\nosuchcommand x"])
def test_latex_that_cannot_be_typeset_stops_the_build_naming_it(latex):
    pytest.importorskip("latex2mathml")
    mathml = load("mathml")
    from fastbp.errors import FastbpError

    with pytest.raises(FastbpError, match=re.escape(f"${latex}$")):
        mathml.to_mathml(latex, display=False)


# --- docs/hooks.py --------------------------------------------------------------------------

def test_figures_keep_tables_and_pictures_with_what_says_where_they_come_from():
    hooks = load("hooks")
    text = ("# Title\n\nAn intro to skip.\n\n```bash\nrun it\n```\n\n| a | b |\n|---|---|\n"
            "| 1 | 2 |\n\nMeasured on a machine.\n\nA paragraph to skip.\n\nBefore the chart.\n\n"
            "![chart](c.png)\n\n```bash\nnot after\n```\n")
    assert hooks.figures(text) == ("```bash\nrun it\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                   "Measured on a machine.\n\nBefore the chart.\n\n"
                                   "![chart](c.png)\n")


def test_the_baselines_table_is_the_recorded_one():
    hooks = load("hooks")
    recorded = json.loads((DOCS / "pictures" / "pictures.json").read_text())["baselines"]
    table = hooks.baselines_table()
    for correct in recorded.values():
        assert f"{correct:,} ({correct / 100:.2f} %)" in table
    assert len(table.splitlines()) == 2 + len(recorded)


def test_the_guide_shows_the_commands_that_drew_its_pictures():
    spec = importlib.util.spec_from_file_location("pictures_make", DOCS / "pictures" / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    guide = (DOCS / "guide" / "see-and-keep.md").read_text().replace("\\\n    ", "")
    assert all(command in guide for command in make.COMMANDS)


# --- what the README tells a reader to run -------------------------------------------------

def test_the_docs_extra_holds_what_the_notebook_and_site_commands_need():
    """The README's notebook command runs with the extras its install line names: `jupyter
    execute` is nbclient's, the kernel ipykernel's, the site mkdocs with latex2mathml."""
    import tomllib

    readme = (ROOT / "README.md").read_text().splitlines()
    run = next(i for i, line in enumerate(readme) if "jupyter execute docs/tutorial.ipynb" in line)
    assert "FASTBP_DATA=" in readme[run]
    install = next(line for line in reversed(readme[:run]) if line.startswith("pip install"))
    extras = set(re.search(r'"\.\[([^\]]+)\]"', install)[1].split(","))
    assert {"docs", "plot"} <= extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = project["optional-dependencies"]
    named = {re.split(r"[<>=\[; ]", dep, maxsplit=1)[0].lower()
             for extra in extras for dep in groups[extra]}
    assert {"mkdocs", "mkdocstrings", "latex2mathml", "nbclient", "ipykernel",
            "matplotlib"} <= named
    try:
        from importlib.metadata import PackageNotFoundError, distribution
        scripts = {ep.name for ep in distribution("nbclient").entry_points}
    except PackageNotFoundError:
        pytest.skip("nbclient is not installed: pip install -e '.[docs]'")
    assert "jupyter-execute" in scripts


def test_the_errors_page_quotes_a_real_message():
    """The example on the errors page is what fastbp says for the book's data as rows."""
    import numpy as np

    import fastbp
    from fastbp.errors import ShapeError

    net = fastbp.Network([784, 30, 10], device="cpu")
    with pytest.raises(ShapeError) as raised:
        net.train(np.zeros((100, 784)), np.zeros(100, dtype=int), epochs=1, batch_size=10,
                  eta=1.0)
    assert str(raised.value) in (DOCS / "guide" / "errors.md").read_text()
