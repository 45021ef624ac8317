"""Reproduce the shipped model data/yolov3-tiny-shapes.weights: generate the shapes dataset
(seed 1), train cfg/yolov3-tiny-shapes.cfg on it with this project's own `detector train`
(seed 1), copy the final weights, and print Darknet's `detector map` table on 300 unseen images
(seed 2), as `darknet-py demo` does.

    python tools/make_shapes_model.py                      # the shipped model (about 45 min, 2 cores)
    python tools/make_shapes_model.py --out /tmp/m.weights --n 16 --set max_batches=2   # a smoke run

Each step is the command the README shows; it writes into --workdir (default: shapes/).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from darknet_py.cli import main as darknet_py
from darknet_py.resources import packaged


def run(*argv) -> None:
    print("$ darknet-py " + " ".join(argv), flush=True)
    if darknet_py(list(argv)) != 0:
        sys.exit(f"darknet-py {argv[0]} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="shapes", help="folder for the dataset and the backups")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "yolov3-tiny-shapes.weights"),
                        help="where the final weights go (default: the repository's data/)")
    parser.add_argument("--n", type=int, default=2000, help="training images (the shipped model: 2000)")
    parser.add_argument("--n-valid", type=int, default=300, help="images of the evaluation set (seed 2)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="[net] overrides for a shorter run (the shipped model: none)")
    args = parser.parse_args()
    work = Path(args.workdir)
    cfg = str(packaged("cfg/yolov3-tiny-shapes.cfg"))
    run("data", "shapes", str(work), "--n", str(args.n), "--seed", "1")
    overrides = [item for pair in args.set for item in ("--set", pair)]
    run("detector", "train", str(work / "shapes.data"), cfg, "--seed", "1", "--valid-every", "0",
        "--backup", str(work / "backup"), "--no-progress", *overrides)
    shutil.copyfile(work / "backup" / "yolov3-tiny-shapes_final.weights", args.out)
    print(f"copied the final weights to {args.out}")
    run("data", "shapes", str(work / "eval"), "--n", str(args.n_valid), "--seed", "2", "--valid", "0")
    run("detector", "map", str(work / "eval" / "shapes.data"), cfg, args.out, "--no-progress")


if __name__ == "__main__":
    main()
