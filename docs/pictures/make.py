"""The README's pictures and figures, from the README's own commands.

    python docs/pictures/make.py --out DIR   # run the commands; the PNGs and pictures.json in DIR
    python docs/pictures/make.py --update    # the same, rewriting the tracked ones here
    python docs/pictures/make.py --check     # run them again; compare the data with pictures.json

Without ``--out`` the pictures go to ``fastbp-pictures/`` in the current folder; the tracked
pictures in ``docs/pictures/`` change only with ``--update``.

The commands are those of the README's "See and keep" section: two 10-epoch runs on MNIST (the
quadratic cost, and cross-entropy with λ = 5), the two-run learning curve, the cross-entropy
run's confusion matrix and mistakes, and the baselines table. ``pictures.json`` holds the data
behind every picture (and the table's figures), the commands, the machine they ran on, and the
SHA-256 of each PNG as written with that data.

``--check`` compares data, never pixels: on the machine named in ``pictures.json`` (same CPU model
and GEMM library) the numbers must match exactly; elsewhere rounding in another BLAS moves a
float32 run a little, so they must match within :data:`TOLERANCE`. It also checks that each
committed PNG is the one written with the committed data, and that the README quotes the table's
figures as recorded. MNIST comes from ``$FASTBP_DATA`` (or the cache), as for ``fastbp train``.
The commands run with ``FASTBP_PLAN=off`` (the device's fixed plan), so that a measured plan
choosing another GEMM library cannot change the last bits of a run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "pictures.json"
PICTURES = ("learning_curve.png", "confusion.png", "misclassified.png")
DEFAULT_OUT = "fastbp-pictures"
SHOWN_MISTAKES = 40  # what misclassified.png shows (fastbp.io.plots.misclassified_grid)

COMMANDS = [
    "fastbp train --epochs 10 --seed 1 --save quadratic.npz",
    "fastbp train --epochs 10 --seed 1 --cost cross-entropy --init scaled --eta 0.5 --lmbda 5 "
    "--save cross-entropy.npz --plot pictures/",
    "fastbp evaluate quadratic.npz cross-entropy.npz --plot both/",
    "fastbp baselines --model cross-entropy.npz --seed 1",
]
"""The README's commands, in order; the pictures are both/learning_curve.png and
pictures/confusion.png, pictures/misclassified.png."""

TOLERANCE = {"accuracy_points": 1.0, "cost_relative": 0.05, "confusion_cell": 40,
             "mistakes_shared": 0.5}
"""Off the recording machine: test accuracy within 1 percentage point per epoch, cost within
5 %, each confusion cell within 40 samples, and half of the mistakes shown still among them."""


@contextlib.contextmanager
def inside(directory: Path) -> Iterator[None]:
    """Run a block with ``directory`` as the working directory."""
    before = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def run(command: str, cwd: Path, plot: bool = True) -> str:
    """One ``fastbp`` command line in ``cwd`` (quiet, ``--plot`` left out unless ``plot``);
    returns what it printed."""
    from fastbp import cli

    argv = command.split()[1:]
    if not plot and "--plot" in argv:
        i = argv.index("--plot")
        del argv[i:i + 2]
    if argv[0] == "train":
        argv.append("--quiet")
    out = io.StringIO()
    # the fixed plan: a plan measured now could pick another GEMM library than the recorded run
    os.environ["FASTBP_PLAN"] = "off"
    with inside(cwd), contextlib.redirect_stdout(out):
        status = cli.main(argv)
    if status:
        raise SystemExit(f"{command} failed with status {status}")
    return out.getvalue()


def machine() -> dict[str, str]:
    """What the figures depend on: the CPU model and the GEMM library training called."""
    from fastbp.devices.cpu import cblas
    from fastbp.devices.cpu.backend import cpu_model

    return {"cpu": cpu_model(), "gemm": cblas.description()}


def compute(work: Path, plot: bool) -> dict[str, Any]:
    """Run the commands in ``work`` and collect the data behind each picture."""
    import fastbp
    from fastbp.data.mnist import load_mnist
    from fastbp.model.baselines import table

    for command in COMMANDS[:2]:
        run(command, work, plot)
    if plot:  # the pictures, and the table as the README shows it
        run(COMMANDS[2], work)
        print(run(COMMANDS[3], work), end="")
    nets = {name: fastbp.load(work / f"{name}.npz") for name in ("quadratic", "cross-entropy")}
    data = load_mnist()
    result = fastbp.evaluate(nets["cross-entropy"], data.test.X, data.test.labels)
    rows = table(data, nets["cross-entropy"], seed=1)
    return {
        "commands": COMMANDS,
        "fastbp": fastbp.__version__,
        "machine": machine(),
        "learning_curve": {name: {"epoch": [r.epoch for r in net.history],
                                  "cost": [round(r.cost, 6) for r in net.history],
                                  "correct": [r.correct for r in net.history]}
                           for name, net in nets.items()},
        "confusion": result.confusion.tolist(),
        "misclassified": [int(i) for i in result.misclassified[:SHOWN_MISTAKES]],
        "baselines": {r.method: r.evaluation.correct for r in rows[:2]}
        | {"network": rows[2].evaluation.correct},
    }


def dump(value: Any, depth: int = 0) -> str:
    """JSON with one line per key and per matrix row, lists of numbers kept on one line."""
    pad = " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {dump(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if isinstance(value, list) and value and all(isinstance(v, (list, str)) for v in value):
        return "[\n" + ",\n".join(pad + json.dumps(v) for v in value) + "\n" + " " * depth + "]"
    return json.dumps(value)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make(out: Path) -> None:
    """Run the commands, copy their pictures to ``out`` and write ``pictures.json`` there."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = compute(work, plot=True)
        sources = {"learning_curve.png": work / "both" / "learning_curve.png",
                   "confusion.png": work / "pictures" / "confusion.png",
                   "misclassified.png": work / "pictures" / "misclassified.png"}
        for name, source in sources.items():
            shutil.copyfile(source, out / name)
    data["png_sha256"] = {name: sha256(out / name) for name in PICTURES}
    (out / DATA.name).write_text(dump(data) + "\n")
    print(f"wrote {', '.join(PICTURES)} and {DATA.name} in {out}")


def differences(old: dict[str, Any], new: dict[str, Any], exact: bool) -> list[str]:
    """How ``new`` differs from ``old`` beyond what the machine explains."""
    out = []
    if old.get("commands") != new["commands"]:
        out.append("the commands changed since the pictures were made")
    if exact:
        for key in ("learning_curve", "confusion", "misclassified", "baselines"):
            if old.get(key) != new[key]:
                out.append(f"{key} differs on the recording machine")
        return out
    tol = TOLERANCE
    for name, curve in new["learning_curve"].items():
        recorded = old.get("learning_curve", {}).get(name, {})
        if recorded.get("epoch") != curve["epoch"]:
            out.append(f"{name}: epochs {recorded.get('epoch')} recorded, {curve['epoch']} now")
            continue
        for epoch, a, b in zip(curve["epoch"], recorded["correct"], curve["correct"]):
            if abs(a - b) > tol["accuracy_points"] * 100:  # 10,000 test images: 100 a point
                out.append(f"{name} epoch {epoch}: {a} correct recorded, {b} now")
        for epoch, a, b in zip(curve["epoch"], recorded["cost"], curve["cost"]):
            if abs(a - b) > tol["cost_relative"] * abs(a):
                out.append(f"{name} epoch {epoch}: cost {a} recorded, {b} now")
    cells = [abs(x - y) for ra, rb in zip(old.get("confusion", []), new["confusion"])
             for x, y in zip(ra, rb)]
    if len(cells) != 100 or max(cells) > tol["confusion_cell"]:
        out.append("confusion matrix: a cell moved by more than "
                   f"{tol['confusion_cell']} samples")
    shared = len(set(old.get("misclassified", [])) & set(new["misclassified"]))
    if shared < tol["mistakes_shared"] * len(new["misclassified"]):
        out.append(f"misclassified: only {shared} of the {len(new['misclassified'])} shown "
                   "are still shown")
    for method, correct in new["baselines"].items():
        was = old.get("baselines", {}).get(method)
        slack = tol["accuracy_points"] * 100 if method == "network" else 0
        if was is None or abs(was - correct) > slack:
            out.append(f"baselines {method}: {was} correct recorded, {correct} now")
    return out


def readme_figures(data: dict[str, Any]) -> list[str]:
    """The README's table must quote the recorded figures."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []
    for correct in data["baselines"].values():
        figure = f"{correct:,} ({correct / 100:.2f} %)"
        if figure not in text:
            missing.append(f"README.md does not quote {figure}")
    return missing


def check() -> int:
    """Recompute the data and compare; 0 when the committed pictures are current."""
    if not DATA.is_file():
        print(f"{DATA} is missing: run python docs/pictures/make.py", file=sys.stderr)
        return 1
    old = json.loads(DATA.read_text())
    problems = [f"{name} is not the picture written with {DATA.name} (regenerate it)"
                for name in PICTURES
                if not (HERE / name).is_file()
                or sha256(HERE / name) != old.get("png_sha256", {}).get(name)]
    problems += readme_figures(old)
    with tempfile.TemporaryDirectory() as tmp:
        new = compute(Path(tmp), plot=False)
    exact = new["machine"] == old.get("machine")
    problems += differences(old, new, exact)
    where = "the recording machine: exact" if exact else "another machine: within tolerance"
    if problems:
        print(f"pictures are stale ({where}):\n  " + "\n  ".join(problems)
              + "\nregenerate them: python docs/pictures/make.py", file=sys.stderr)
        return 1
    print(f"pictures are current ({where})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR",
                      help=f"the folder for the pictures and pictures.json (default: "
                           f"./{DEFAULT_OUT})")
    what.add_argument("--update", action="store_true",
                      help="rewrite the tracked pictures and pictures.json beside this "
                           "script (docs/pictures/)")
    what.add_argument("--check", action="store_true",
                      help="recompute the data and compare it with pictures.json")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if not args.update and args.out.resolve() == HERE:
        parser.error(f"--out {args.out} is the folder of the tracked pictures: "
                     "use --update to rewrite them, or name another folder")
    make(HERE if args.update else args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
