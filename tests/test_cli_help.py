"""The command line explains itself: ``--version``, the help of a bare ``fastbp``, a help text
and a default for every option, one name for the data folder, one list syntax in ``bench``, and
the end of ``fastbp train`` saying which epoch ``--save`` keeps."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest
from conftest import mnist_dir

from fastbp import __version__, cli
from fastbp.cli import bench as bench_cli

COMMANDS = list(cli.SUBCOMMANDS)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.fixture
def data_dir() -> str:
    d = mnist_dir()
    if d is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    return str(d)


# -- fastbp itself -----------------------------------------------------------------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastbp {__version__}"


def test_bare_fastbp_prints_the_help_to_stdout(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2  # argparse's status for a missing argument
    out, err = capsys.readouterr()
    assert out.startswith("usage: fastbp") and all(c in out for c in COMMANDS)
    assert "--version" in out and "fastbp COMMAND --help" in out
    assert err.count("\n") == 1 and "COMMAND is required" in err


@pytest.mark.parametrize("argv", [["-m", "fastbp"], ["-m", "fastbp", "--version"]])
def test_python_m_fastbp(argv):
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    if "--version" in argv:
        assert proc.returncode == 0 and proc.stdout.strip() == f"fastbp {__version__}"
    else:
        assert proc.returncode == 2 and proc.stdout.startswith("usage: fastbp")
        assert "Traceback" not in proc.stderr


# -- every option explains itself --------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command):
    p = subparsers()[command]
    silent = [a.option_strings or [a.dest] for a in p._actions
              if a.help is None or (a.help != argparse.SUPPRESS and not a.help.strip())]
    assert silent == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_default_is_shown(command):
    """An option whose default is a value (not None, False or a flag) names it in its help."""
    for a in subparsers()[command]._actions:
        if a.help in (None, argparse.SUPPRESS) or not a.option_strings:
            continue
        if a.default in (None, False) or isinstance(a, argparse._StoreTrueAction):
            continue
        if a.dest in ("help", "version"):
            continue
        assert "default" in a.help, (command, a.option_strings)


def test_train_help_shows_the_books_defaults_and_explains_the_options(capsys):
    text = " ".join(help_of("train", capsys).split())
    for default in ("(default: 784,30,10)", "(default: 30)", "(default: 10)", "(default: 3.0)",
                    "(default: quadratic)", "fresh random seed", "(default: float32)"):
        assert default in text, default
    assert "comma-separated" in text and "784 inputs" in text  # the --sizes format
    assert "standard draws weights and biases from N(0, 1)" in text
    assert "scaled divides each weight by √n_in" in text
    assert "scaled with --cost cross-entropy" in text
    assert "last epoch" in text  # what --save keeps


@pytest.mark.parametrize("command", ["train", "evaluate", "baselines", "bench"])
def test_one_name_for_the_data_folder(command, capsys):
    p = subparsers()[command]
    options = {s for a in p._actions for s in a.option_strings}
    assert "--data" in options and "--data-dir" in options  # the second as a hidden alias
    assert "--data-dir" not in help_of(command, capsys)
    args = ["MODEL"] if command == "evaluate" else []
    assert p.parse_args([*args, "--data-dir", "some/dir"]).data == "some/dir"
    assert p.parse_args([*args, "--data", "some/dir"]).data == "some/dir"


def test_baselines_seed_defaults_as_train_does():
    parsers = subparsers()
    assert parsers["baselines"].get_default("seed") is parsers["train"].get_default("seed")
    assert parsers["train"].get_default("seed") is None


def test_baselines_and_evaluate_and_train_can_plot():
    for command in ("train", "evaluate", "baselines"):
        assert "--plot" in {s for a in subparsers()[command]._actions for s in a.option_strings}


# -- bench: one list syntax --------------------------------------------------------------------
@pytest.mark.parametrize("spaced, commas", [
    (["--batch-sizes", "10", "100", "1000"], ["--batch-sizes", "10,100,1000"]),
    (["--devices", "cpu", "cpu-jit"], ["--devices", "cpu,cpu-jit"]),
    (["--kinds", "step", "epoch"], ["--kinds", "step,epoch"]),
    (["--dtype", "float32", "float64"], ["--dtype", "float32,float64"]),
    (["--peers", "torch-eager", "jax-jit"], ["--peers", "torch-eager,jax-jit"]),
])
def test_bench_lists_take_spaces_or_commas(spaced, commas):
    p = subparsers()["bench"]
    a, b = p.parse_args(spaced), p.parse_args(commas)
    dest = spaced[0][2:].replace("-", "_")
    assert bench_cli._flat(getattr(a, dest)) == bench_cli._flat(getattr(b, dest))
    assert len(bench_cli._flat(getattr(a, dest))) == len(spaced) - 1


def test_bench_sizes_are_networks_separated_by_spaces():
    args = subparsers()["bench"].parse_args(["--sizes", "784,30,10", "784,100,10"])
    assert args.sizes == [[784, 30, 10], [784, 100, 10]]


def test_bench_rejects_a_bad_dtype_in_a_comma_list(capsys):
    with pytest.raises(SystemExit):
        subparsers()["bench"].parse_args(["--dtype", "float32,float16"])
    assert "float16" in capsys.readouterr().err


def test_bench_data_is_synthetic_mnist_or_a_folder(tmp_path):
    assert bench_cli.data_choice("synthetic") == ("synthetic", None)
    assert bench_cli.data_choice("mnist") == ("mnist", None)
    assert bench_cli.data_choice(str(tmp_path)) == ("mnist", str(tmp_path))
    with pytest.raises(Exception, match="not synthetic, mnist or a folder"):
        bench_cli.data_choice(str(tmp_path / "nowhere"))


def test_bench_compare_takes_the_folders_a_run_writes(tmp_path, capsys):
    """The README's ``--out before`` / ``--out after`` / ``--compare before after``."""
    for name in ("before", "after"):
        assert cli.main(["bench", "--sizes", "20,8,4", "--batch-sizes", "4", "--kinds", "step",
                         "--no-loop", "--samples", "40", "--target-s", "0.01",
                         "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name / "bench.json").is_file()
    capsys.readouterr()
    assert cli.main(["bench", "--compare", str(tmp_path / "before"),
                     str(tmp_path / "after")]) == 0
    assert "B / A" in capsys.readouterr().out


# -- what train and baselines print ------------------------------------------------------------
def test_train_says_which_epoch_save_keeps(data_dir, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert cli.main(["train", "--epochs", "4", "--limit", "1000", "--seed", "3", "--eta", "6",
                     "--data", data_dir, "--save", str(model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [re.match(r"Epoch (\d+): test (\d+) / 10000", ln) for ln in lines]
    scored = [(int(m[1]), int(m[2])) for m in epochs if m]
    assert [e for e, _ in scored] == [0, 1, 2, 3]  # numbered from 0, as the pictures
    best = max(scored, key=lambda ec: ec[1])
    last = lines[-1]
    assert last.startswith(f"best test accuracy {best[1] / 100:.2f} % (epoch {best[0]}")
    assert f"saved in {model}" in last
    if best[0] != 3:
        assert f"the last epoch, 3, has {scored[-1][1] / 100:.2f} %" in last
    else:
        assert "the last" in last


def test_baselines_plot_writes_its_pictures(data_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["baselines", "--epochs", "0", "--seed", "1", "--data", data_dir,
                     "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1,002 / 10,000" in out  # the random guesses of seed 1, as the README's table
    for name in ("baselines.png", "confusion.png", "misclassified.png"):
        assert (tmp_path / name).stat().st_size > 1000


# -- the offline MNIST error -------------------------------------------------------------------
def test_offline_mnist_error_is_one_short_line_in_the_commands_words(tmp_path, monkeypatch,
                                                                     capsys):
    pooch = pytest.importorskip("pooch")

    def offline(url, *args, **kwargs):
        raise ConnectionError(
            "HTTPSConnectionPool(host='example.invalid', port=443): Max retries exceeded with "
            "url: /mnist/x.gz (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection"
            " object at 0x7f00>: Failed to establish a new connection: [Errno -3] Temporary "
            "failure in name resolution'))")

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["train", "--epochs", "1"]) == 2  # no --data, no $FASTBP_DATA, no cache
    err = capsys.readouterr().err
    error = [ln for ln in err.splitlines() if ln.startswith("fastbp: error:")]
    assert len(error) == 1 and len(error[0]) < 600, err
    assert "Downloading data from" not in err
    assert "--data DIR" in error[0] and "FASTBP_DATA" in error[0] and "path=" not in error[0]
    assert "[Errno -3] Temporary failure in name resolution" in error[0]
    assert "0x7f00" not in error[0]
    assert not (tmp_path / "cache").exists()  # no empty cache folder left behind


@pytest.mark.parametrize("command", ["train", "evaluate", "baselines", "bench"])
def test_help_names_the_real_default_device(command, capsys):
    """The default device is ``auto`` (a GPU that works, else cpu-jit), and --help says so."""
    from fastbp.devices.registry import DEFAULT_DEVICE

    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert DEFAULT_DEVICE == "auto" and "else auto: a GPU that works, else cpu-jit" in text
    assert "else cpu)" not in text and "else cpu;" not in text
