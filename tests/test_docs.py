"""The documentation stays current: the site (guide and API reference) builds in strict mode, the
tutorial notebook runs, and the README's pictures match the data they were drawn from."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import mnist_dir

ROOT = Path(__file__).resolve().parents[1]
PICTURES = ROOT / "docs" / "pictures"


def load_make():
    spec = importlib.util.spec_from_file_location("pictures_make", PICTURES / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    network = (tmp_path / "site" / "reference" / "network" / "index.html").read_text()
    assert "default_weight_initializer" in network  # the reference comes from the docstrings
    guide = (tmp_path / "site" / "guide" / "see-and-keep" / "index.html").read_text()
    assert "learning_curve.png" in guide  # a README section, with its pictures


def test_the_tutorial_notebook_runs(monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    data = mnist_dir()
    if data is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    monkeypatch.setenv("FASTBP_DATA", str(data))  # the kernel inherits it
    notebook = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "docs")}}).execute()
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "Epoch 4:" in text and "by hand" in text and "worst relative error" in text


def test_the_pictures_are_those_of_their_data():
    make = load_make()
    data = json.loads(make.DATA.read_text())
    for name in make.PICTURES:
        assert make.sha256(PICTURES / name) == data["png_sha256"][name], name
    assert make.readme_figures(data) == []  # the README quotes the recorded table
    assert data["commands"] == make.COMMANDS
    readme = (ROOT / "README.md").read_text()
    assert all(command in readme.replace("\\\n    ", "") for command in make.COMMANDS)


def test_the_pictures_check_tells_rounding_from_a_change():
    make = load_make()
    old = json.loads(make.DATA.read_text())
    same = json.loads(make.DATA.read_text())
    assert make.differences(old, same, exact=True) == []
    nudged = json.loads(make.DATA.read_text())
    nudged["learning_curve"]["quadratic"]["correct"][-1] -= 30  # another BLAS's rounding
    assert make.differences(old, nudged, exact=False) == []
    assert make.differences(old, nudged, exact=True) != []  # but not on the same machine
    changed = json.loads(make.DATA.read_text())
    changed["learning_curve"]["quadratic"]["correct"][-1] -= 300  # another network
    assert any("quadratic epoch 9" in d for d in make.differences(old, changed, exact=False))
    commands = json.loads(make.DATA.read_text())
    commands["commands"] = commands["commands"][:1]
    assert make.differences(old, commands, exact=False) != []


def test_the_readme_followed_top_to_bottom():
    """Every install is editable, the CUDA one says it needs an NVIDIA GPU, PyTorch's CPU-only
    wheel is mentioned before the install that would pull in CUDA, and the compared runs are
    ones an earlier step saved."""
    readme = (ROOT / "README.md").read_text()
    installs = [ln for ln in readme.splitlines() if ln.lstrip().startswith("pip install")]
    assert installs and all(ln.split()[2] == "-e" for ln in installs), installs
    cuda = next(ln for ln in installs if "backends/cupy" in ln)
    assert "only with an NVIDIA GPU" in cuda
    assert readme.index("CPU-only wheel") < readme.index('pip install -e ".[bench,peers]"')
    compare = next(ln for ln in readme.splitlines() if "fastbp bench --compare" in ln)
    for run in compare.split("#")[0].split()[3:]:
        assert f"--out {run}" in readme, run
    assert "first `cpu-jit` run" in readme  # the compile, said
