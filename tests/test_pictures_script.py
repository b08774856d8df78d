"""``python docs/pictures/make.py`` writes where its user says; the tracked pictures in
docs/pictures/ change only with ``--update``. The commands themselves are replaced by a stand-in
that writes small files, so these tests need neither MNIST nor matplotlib."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

PICTURES = Path(__file__).resolve().parents[1] / "docs" / "pictures"


@pytest.fixture
def make(monkeypatch, tmp_path):
    """docs/pictures/make.py with its commands stood in for and its tracked folder a copy."""
    spec = importlib.util.spec_from_file_location("pictures_make", PICTURES / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def compute(work: Path, plot: bool) -> dict:
        for folder, name in [("both", "learning_curve.png"), ("pictures", "confusion.png"),
                             ("pictures", "misclassified.png")]:
            (work / folder).mkdir(exist_ok=True)
            (work / folder / name).write_bytes(f"{name} drawn now".encode())
        return {"commands": module.COMMANDS}

    tracked = tmp_path / "tracked"
    tracked.mkdir()
    for name in (*module.PICTURES, module.DATA.name):
        (tracked / name).write_bytes(b"as committed")
    monkeypatch.setattr(module, "compute", compute)
    monkeypatch.setattr(module, "HERE", tracked)
    monkeypatch.setattr(module, "DATA", tracked / module.DATA.name)
    monkeypatch.chdir(tmp_path)
    return module


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_pictures_go_to_the_folder_named_and_the_tracked_ones_stay(make, tmp_path):
    before = digests(make.HERE)
    assert make.main(["--out", str(tmp_path / "mine")]) == 0
    written = sorted(p.name for p in (tmp_path / "mine").iterdir())
    assert written == sorted([*make.PICTURES, "pictures.json"])
    assert (tmp_path / "mine" / "confusion.png").read_bytes() == b"confusion.png drawn now"
    assert digests(make.HERE) == before


def test_without_out_they_go_to_a_folder_in_the_current_one(make, tmp_path, capsys):
    before = digests(make.HERE)
    assert make.main([]) == 0
    assert (tmp_path / make.DEFAULT_OUT / "learning_curve.png").is_file()
    assert make.DEFAULT_OUT in capsys.readouterr().out  # it says where
    assert digests(make.HERE) == before


def test_the_tracked_folder_as_out_is_refused_without_update(make, capsys):
    before = digests(make.HERE)
    with pytest.raises(SystemExit) as stop:
        make.main(["--out", str(make.HERE)])
    assert stop.value.code == 2
    assert "use --update" in capsys.readouterr().err
    assert digests(make.HERE) == before


def test_update_rewrites_the_tracked_pictures_and_their_data(make):
    assert make.main(["--update"]) == 0
    assert (make.HERE / "misclassified.png").read_bytes() == b"misclassified.png drawn now"
    recorded = (make.HERE / "pictures.json").read_text()
    assert hashlib.sha256(b"misclassified.png drawn now").hexdigest() in recorded


def test_check_is_kept_and_excludes_the_other_modes(make):
    with pytest.raises(SystemExit):
        make.main(["--check", "--update"])
