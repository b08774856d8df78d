"""``fastbp evaluate MODEL [MODEL ...]``: accuracy, error rate, confusion matrix and the
misclassified samples of saved models on the MNIST test set; ``--plot DIR`` draws them."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_data_arg, add_device_arg, load_data


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="a model saved by fastbp (.npz) or by the book's network2.py (.json)")
    p.add_argument("--split", default="test", choices=["test", "validation"],
                   help="the MNIST images to score on (default: test)")
    p.add_argument("--plot", metavar="DIR", default=None,
                   help="write confusion.png, misclassified.png and (from the models' history) "
                   "learning_curve.png to DIR; with several models, one line each and "
                   "MODEL-confusion.png, MODEL-misclassified.png")
    p.add_argument("--show", type=int, default=20, metavar="N",
                   help="list the first N misclassified samples (default: 20)")
    add_data_arg(p)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..core.validate import check_count
    from ..model.evaluation import evaluate
    from ..model.persist import load_checkpoint

    check_count("--show", args.show, low=0)
    if args.plot is not None:
        from ..io.plots import PICTURES, _figure
        from ..io.targets import check_folder

        check_folder(args.plot, f"--plot {args.plot}", PICTURES)  # writable, before any work
        _figure((1, 1))  # matplotlib missing: say so before any work
    # Every model first: a bad file fails before MNIST is read.
    loaded = [(Path(m), load_checkpoint(m, device=args.device).network) for m in args.models]
    split = getattr(load_data(args.data)[0], args.split)
    several = len(loaded) > 1
    runs, costs, pictures = {}, {}, []
    for path, net in loaded:
        result = evaluate(net, split.X, split.labels)
        print(f"{path}: {net}, {trained(path, net)}")
        print(f"  {args.split} set: {result.summary()}")
        for line in result.format_confusion().splitlines():
            print("  " + line)
        pairs = ", ".join(f"{a} read as {g} ({c})" for a, g, c in result.most_confused(5))
        if pairs:
            print(f"  most confused: {pairs}")
        if args.show > 0 and len(result.misclassified):
            shown = ", ".join(f"#{i} ({result.guesses[i]} / {result.labels[i]})"
                              for i in result.misclassified[:args.show])
            print(f"  misclassified (guess / answer): {shown}"
                  + (", ..." if len(result.misclassified) > args.show else ""))
        if args.plot:
            from ..io.plots import evaluation_pictures

            prefix = f"{path.stem}-" if several else ""
            pictures += evaluation_pictures(split.X, result, args.plot, prefix=prefix)
        if len(net.history):
            runs[path.stem] = net.history
            costs[path.stem] = net.cost.name
    if args.plot and runs:
        from ..io.plots import learning_curves

        named = runs if several else next(iter(runs.values()))
        pictures.insert(0, learning_curves(named, Path(args.plot) / "learning_curve.png",
                                           costs=costs if several else next(iter(costs.values()))))
    if pictures:
        print("pictures: " + ", ".join(str(p) for p in pictures))
    return 0


def trained(path: object, net: object) -> str:
    """How much training the file records: ``30 epochs trained``, or for a file that keeps no
    history (network2's JSON) that it does not say."""
    history = getattr(net, "history", None)
    if history:
        return f"{len(history)} epochs trained"
    if str(path).lower().endswith(".json"):
        return "epochs trained: not recorded (network2's JSON format keeps no history)"
    return "0 epochs trained (an untrained network)"
