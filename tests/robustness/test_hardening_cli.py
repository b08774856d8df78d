"""Hardening, the command line: every path a run writes is checked before it trains, a save
that fails at the end keeps the network, an explicit data folder is used as given, junk options
and environment values are refused with one line (exit 2), and nothing ends in a traceback."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir

import fastbp
from fastbp import cli
from fastbp.data import mnist

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
QUICK = ["--limit", "200", "--epochs", "1", "--seed", "1", "--quiet"]


@pytest.fixture
def data_dir(monkeypatch) -> str:
    d = mnist_dir()
    if d is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    monkeypatch.setenv("FASTBP_DATA", str(d))
    return str(d)


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``fastbp ARGS``: the exit status, stdout and stderr."""
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def refused(capsys, *args: str, says: str) -> str:
    """``fastbp ARGS`` exits 2 with one line that says ``says``, before any epoch."""
    rc, out, err = run(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("fastbp: error: ") and says in err, err
    assert "Epoch" not in out and "Traceback" not in err
    return err


# -- 2. every output checked before training; a failed final save keeps the network ----------------
@pytest.mark.parametrize("option", [["--save", "/proc/m.npz"], ["--save", "/proc/version"],
                                    ["--save", "/proc/m.npz", "--checkpoint-every", "1"],
                                    ["--plot", "/proc/pictures"]])
def test_an_unwritable_output_is_refused_before_training(option, data_dir, capsys) -> None:
    refused(capsys, "train", *QUICK, *option, says="cannot write in /proc")


def test_a_resume_that_cannot_save_back_is_refused(data_dir, tmp_path, capsys, monkeypatch):
    model = fastbp.Network([784, 30, 10], seed=1).save(tmp_path / "m.npz")
    monkeypatch.setattr("fastbp.io.targets.shutil.disk_usage",
                        lambda p: type("U", (), {"free": 1000})())
    refused(capsys, "train", "--resume", str(model), "--epochs", "2",
            says=f"--resume {model}: {tmp_path} has 1,000 bytes free; the model needs about")
    monkeypatch.undo()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (10_240, hard))
    refused(capsys, "train", *QUICK, "--save", str(tmp_path / "n.npz"),
            says="the file-size limit (ulimit -f) is 10,240 bytes")


@pytest.mark.skipif(ROOT, reason="root writes into a read-only folder (the /proc cases cover it)")
def test_a_read_only_folder_is_refused_before_training(data_dir, tmp_path, capsys) -> None:
    (tmp_path / "ro").mkdir(mode=0o555)
    refused(capsys, "train", *QUICK, "--save", str(tmp_path / "ro" / "m.npz"),
            says="cannot write in")


def test_a_final_save_that_fails_keeps_the_network(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = tmp_path / "m.npz"
    real_save = fastbp.Network.save

    def disk_full(net, path, **kw):
        if Path(path) == target:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(net, path, **kw)

    monkeypatch.setattr(fastbp.Network, "save", disk_full)
    rc, out, err = run(capsys, "train", *QUICK, "--save", str(target))
    assert rc == 1 and err.count("\n") == 1, err
    rescued = list((tmp_path / "cache" / "fastbp" / "rescued").glob("m-*.npz"))
    assert len(rescued) == 1 and f"kept at {rescued[0]}" in err
    assert "No space left on device" in err
    assert len(fastbp.load(rescued[0]).history) == 1 and not target.exists()


# -- 3. empty paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["train", "--save", ""], "--save needs a path"),
    (["train", "--resume", ""], "--resume needs a model file"),
    (["train", "--plot", ""], "--plot needs a path"),
    (["train", "--data", "", "--epochs", "1"], "the MNIST folder is an empty string"),
    (["bench", "--out", ""], "--out : the path is empty"),
    (["baselines", "--model", ""], "--model needs a model file"),
])
def test_an_empty_path_is_refused(args, says, capsys) -> None:
    refused(capsys, *args, says=says)


# -- 6. an explicit data folder is used as given ------------------------------------------------
def test_an_explicit_data_folder_is_used_as_given(data_dir, tmp_path, capsys) -> None:
    """$FASTBP_DATA holds MNIST, so a fallback would train: it must not."""
    for stem in list(mnist.FILES.values())[:3]:
        (tmp_path / f"{stem}.gz").symlink_to(Path(data_dir) / f"{stem}.gz")
    refused(capsys, "train", *QUICK, "--data", str(tmp_path),
            says="MNIST is incomplete here: missing t10k-labels-idx1-ubyte")
    refused(capsys, "train", *QUICK, "--data", str(tmp_path / "nowhere"), says="no such folder")
    refused(capsys, "bench", "--data", str(tmp_path), "--out", "none",
            says="missing t10k-labels-idx1-ubyte")
    refused(capsys, "bench", "--data", str(tmp_path / "nowhere"), "--out", "none",
            says="nowhere")


# -- 10. no raw tracebacks ---------------------------------------------------------------------
def test_an_unreadable_data_folder_is_a_data_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "locked").mkdir()
    if not ROOT:
        (tmp_path / "locked").chmod(0)
    else:  # root reads anything: make the folder answer as it would to a user
        def denied(self, *a, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        monkeypatch.setattr(Path, "is_file", denied)
        monkeypatch.setattr(os, "access", lambda *a, **k: True)
    try:
        with pytest.raises(fastbp.DataError, match="cannot be read.*ermission denied"):
            mnist.load_mnist(tmp_path / "locked", download=False)
    finally:
        (tmp_path / "locked").chmod(0o755)


def saved_with_extra(tmp_path: Path, extra: dict) -> Path:
    return fastbp.Network([784, 30, 10], seed=1).save(tmp_path / "m.npz", extra=extra)


@pytest.mark.parametrize("extra, says", [
    ({"train": []}, 'extra["train"] is [], expected a JSON object'),
    ({"train": {"eta": "fast"}}, 'extra["train"]["eta"] is \'fast\', expected a finite number'),
    ({"train": {"batch_size": 2.5}}, 'extra["train"]["batch_size"] is 2.5'),
    ({"monitor": {"training_cost": 3}}, 'extra["monitor"]["training_cost"] is 3'),
    ({"early_stopping": {"stopped_epoch": "x"}}, '"stopped_epoch"] is \'x\''),
])
def test_a_resume_from_damaged_options_is_one_line(extra, says, tmp_path, capsys) -> None:
    path = saved_with_extra(tmp_path, extra)
    refused(capsys, "train", "--resume", str(path), "--data", str(tmp_path), says=says)


@pytest.mark.parametrize("args, says", [
    (["bench", "--out", "FILE"], "it is a file, not a directory"),
    (["bench", "--out", "/proc/fastbp-bench"], "cannot write in /proc"),
    (["bench", "--compare", "/etc/passwd", "x"], "not a saved fastbp bench run (not JSON)"),
    (["bench", "--compare", "LIST", "LIST"], "not a saved fastbp bench run"),
])
def test_bench_files_are_checked(args, says, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    names = {"FILE": str(tmp_path / "file"), "LIST": str(tmp_path / "list.json")}
    refused(capsys, *[names.get(a, a) for a in args], says=says)


# -- 11. bench refuses junk, and fails when nothing was timed --------------------------------------
@pytest.mark.parametrize("args, says", [
    (["--devices", "junk"], "unknown device 'junk'"),
    (["--devices", "cpu:1"], "the cpu device has no index"),
    (["--samples", "0"], "--samples must be >= 1, got 0"),
    (["--target-s", "0"], "--target-s must be a number of seconds > 0"),
    (["--target-s", "-1"], "--target-s must be a number of seconds > 0"),
    (["--wait-quiet", "nan"], "--wait-quiet must be a number of seconds >= 0, got nan"),
    (["--wait-quiet", "-1"], "--wait-quiet must be a number of seconds >= 0"),
    (["--batch-sizes", ""], "--batch-sizes needs at least one batch size"),
    (["--out", "/nonexistent-fastbp/x"], "directory /nonexistent-fastbp does not exist"),
])
def test_bench_junk_is_refused(args, says, capsys) -> None:
    refused(capsys, "bench", *args, says=says)
    assert not Path("/nonexistent-fastbp").exists()


def test_bench_fails_when_a_device_is_missing_or_nothing_is_timed(capsys, monkeypatch) -> None:
    from fastbp.devices import registry

    monkeypatch.setenv("FASTBP_DEVICE", "junk")
    refused(capsys, "bench", says="FASTBP_DEVICE='junk': unknown device")
    monkeypatch.delenv("FASTBP_DEVICE")
    monkeypatch.setattr(registry, "_entry_points", dict)  # no plugin installed
    monkeypatch.delitem(registry._registered, "cuda", raising=False)
    refused(capsys, "bench", "--devices", "cuda", says="needs its plugin, which is not installed")
    monkeypatch.undo()
    rc, out, err = run(capsys, "bench", "--sizes", "784,99999999999,10", "--out", "none",
                       "--no-loop", "--kinds", "step", "--batch-sizes", "10")
    assert rc == 1 and "nothing was timed" in err and "Traceback" not in err


# -- 12. junk environment values ---------------------------------------------------------------
@pytest.mark.parametrize("env", ["FASTBP_PREFETCH=junk", "FASTBP_PREFETCH=-1", "FASTBP_PREFETCH=2",
                                 "FASTBP_THREADED_WORK=inf", "FASTBP_THREADED_WORK=-5",
                                 "FASTBP_MPI_REDUCTION=junk", "FASTBP_CUDA_GRAPHS=junk",
                                 "FASTBP_DEVICE=junk", "FASTBP_BLAS=junk"])
def test_a_junk_environment_value_is_refused_by_every_command(env, capsys, monkeypatch) -> None:
    name, value = env.split("=")
    monkeypatch.setenv(name, value)
    for command in (["devices"], ["bench", "--out", "none"], ["train", "--epochs", "1"]):
        refused(capsys, *command, says=f"{name}={value!r}")


def test_junk_environment_values_are_refused_in_the_library_too(monkeypatch) -> None:
    from fastbp.core.validate import env_flag
    from fastbp.devices.cpu import blas_threads, prefetch

    monkeypatch.setenv("FASTBP_PREFETCH", "2")
    with pytest.raises(fastbp.ConfigError, match="FASTBP_PREFETCH='2' is not a switch"):
        prefetch.enabled()
    monkeypatch.setenv("FASTBP_THREADED_WORK", "inf")
    with pytest.raises(fastbp.ConfigError, match="must be a whole number >= 0"):
        blas_threads.threaded_work()
    monkeypatch.setenv("FASTBP_CUDA_GRAPHS", "maybe")
    with pytest.raises(fastbp.ConfigError, match="FASTBP_CUDA_GRAPHS='maybe'"):
        env_flag("FASTBP_CUDA_GRAPHS", True)
    for value, want in (("0", False), ("off", False), ("1", True), ("", True)):
        monkeypatch.setenv("FASTBP_CUDA_GRAPHS", value)
        assert env_flag("FASTBP_CUDA_GRAPHS", True) is want


def test_an_array_api_device_that_cannot_hold_the_dtype_is_a_device_error() -> None:
    xp = pytest.importorskip("array_api_strict")
    pytest.importorskip("fastbp_array_api")
    names = [str(d) for d in xp.__array_namespace_info__().devices()]
    if not any("no_float64" in n for n in names):
        pytest.skip("this array_api_strict has no device without float64")
    index = next(i for i, n in enumerate(names) if "no_float64" in n)
    with pytest.raises(fastbp.DeviceError, match=f"array-api:{index}.*cannot hold float64"):
        fastbp.Network([3, 2], dtype="float64", device=f"array-api:{index}")
    assert fastbp.Network([3, 2], device=f"array-api:{index}").feedforward(np.ones((3, 1))).shape


# -- 13 (command line part). the dangling link is named ---------------------------------------
def test_a_dangling_symlink_as_save_names_the_link(tmp_path, capsys) -> None:
    (tmp_path / "m.npz").symlink_to("/nonexistent-fastbp/m.npz")
    refused(capsys, "train", "--save", str(tmp_path / "m.npz"), "--data", str(tmp_path),
            says="(a symbolic link to /nonexistent-fastbp/m.npz): directory /nonexistent-fastbp "
                 "does not exist")
