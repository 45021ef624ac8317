"""The embedded default: the shipped shapes model on the shipped sample images, then its mAP on
a validation set generated on the spot. Needs nothing but this repository.

The model is ``cfg/yolov3-tiny-shapes.cfg`` with ``data/yolov3-tiny-shapes.weights`` (packaged
files, :mod:`darknet_py.resources`), trained by
this project's own ``detector train`` on ``darknet-py data shapes ... --seed 1`` (the README has
the command). The samples in ``data/shapes/`` are images 1-6 of ``--seed 3``; validation uses
``--seed 2``, so neither was seen in training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .resources import packaged

CFG = packaged("cfg/yolov3-tiny-shapes.cfg")
WEIGHTS = packaged("data/yolov3-tiny-shapes.weights")
SAMPLES = packaged("data/shapes")
NAMES = packaged("data/shapes.names")
VALID_SEED = 2


@dataclass
class DemoResult:
    images: list          # annotated copies of the samples
    valid: Path           # the generated validation set's .data file
    map: float            # mAP@0.5 on it, as Darknet's `detector map` computes it
    table: str            # Darknet's per-class table


def run_demo(out="demo", n_valid=300, thresh=0.25, progress=True) -> DemoResult:
    """Detect on ``data/shapes/*.jpg`` into ``out/``; evaluate on ``n_valid`` generated images
    in ``out/valid``."""
    from .datafile import DataConfig, load_names
    from .detect import detect
    from .draw import draw_detections
    from .evaluate import format_map_table
    from .image import read_bgr
    from .model import load
    from .outputs import check_folder, write_image
    from .datasets import open_dataset
    from .shapes import generate_shapes
    from .validate import validate_map
    out = Path(out)
    check_folder(out, "demo folder")
    net = load(CFG, WEIGHTS)
    names = load_names(NAMES)
    written = []
    for path in sorted(SAMPLES.glob("*.jpg")):
        bgr = read_bgr(path)
        found = detect(net, bgr, names=names)
        target = out / path.name
        write_image(target, draw_detections(bgr, found, thresh, names))
        written.append(target)
    data_file = generate_shapes(out / "valid", n_valid, seed=VALID_SEED)
    source = open_dataset(DataConfig.from_file(data_file), "valid")
    result = validate_map(net, source, names, progress=progress)
    return DemoResult(written, data_file, result.map, format_map_table(result))
