"""``darknet-py``: command-line verbs in the forms Darknet users type."""
from __future__ import annotations

import argparse
import logging
import sys

from .errors import DarknetError


def cmd_summary(args):
    from .model import Darknet
    from .summary import layer_table
    net = Darknet(args.cfg, width=args.width, height=args.height, init=False)
    print(layer_table(net))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def _load_net(args):
    from .model import load
    return load(args.cfg, args.weights, precision=getattr(args, "precision", "exact"))


def cmd_detector_test(args):
    """Darknet's ``detector test``: labels with percentages, then predictions.jpg."""
    import time

    import cv2

    from .datafile import DataConfig
    from .detect import detect
    from .draw import draw_detections, labels
    from .image import from_bgr, read_bgr
    data = DataConfig.from_file(args.data)
    net = _load_net(args)
    images = [args.image] if args.image else []
    if not images:
        images = [line.strip() for line in sys.stdin if line.strip()]
    for path in images:
        bgr = read_bgr(path)
        start = time.time()
        det = detect(net, from_bgr(bgr), thresh=args.thresh, hier_thresh=args.hier, nms=args.nms)
        print(f"{path}: Predicted in {time.time() - start:f} seconds.")
        for _, hits in labels(det, args.thresh):
            for j, prob in hits:
                print(f"{data.names[j]}: {prob * 100:.0f}%")
        out = f"{args.out}.jpg"
        cv2.imwrite(out, draw_detections(bgr, det, args.thresh, data.names))
        print(f"wrote {out}")


def _inputs(paths):
    """Expand folders; yield (kind, path) for images and videos, refusing anything else."""
    from pathlib import Path
    for raw in paths:
        path = Path(raw)
        items = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for item in items:
            suffix = item.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                yield "image", item
            elif suffix in VIDEO_SUFFIXES:
                yield "video", item
            elif not path.is_dir():
                raise DarknetError(f"{item}: not an image or video file ({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")


def _image_id(path, fallback):
    digits = "".join(ch for ch in path.stem.split("_")[-1] if ch.isdigit())
    return int(digits) if digits and digits == path.stem.split("_")[-1] else fallback


def _frames(path):
    import cv2

    from .image import from_bgr
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DarknetError(f"{path}: cannot open the video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield bgr, from_bgr(bgr), fps
    finally:
        capture.release()


def cmd_detect(args):
    """Images, folders and videos -> annotated copies in --out, optional COCO-results JSON."""
    import json
    from pathlib import Path

    import cv2
    from tqdm import tqdm

    from .datafile import load_names
    from .detect import detect
    from .draw import coco_records, draw_detections
    from .image import from_bgr, read_bgr
    net = _load_net(args)
    names = load_names(args.names)
    coco = len(names) == 80
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = list(_inputs(args.paths))
    records, found = [], 0
    for number, (kind, path) in enumerate(tqdm(items, desc="detect", unit="file")):
        if kind == "image":
            bgr = read_bgr(path)
            det = detect(net, from_bgr(bgr), thresh=args.thresh, nms=args.nms)
            h, w = bgr.shape[:2]
            records += coco_records(det, _image_id(path, number), w, h, coco, args.thresh)
            cv2.imwrite(str(out_dir / f"{path.stem}.jpg"), draw_detections(bgr, det, args.thresh, names))
            found += int((det.probs > args.thresh).any(1).sum())
            continue
        writer = None
        for bgr, rgb, fps in tqdm(_frames(path), desc=path.name, unit="frame", leave=False):
            det = detect(net, rgb, thresh=args.thresh, nms=args.nms)
            found += int((det.probs > args.thresh).any(1).sum())
            if writer is None:
                writer = cv2.VideoWriter(str(out_dir / f"{path.stem}.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                         fps, (bgr.shape[1], bgr.shape[0]))
            writer.write(draw_detections(bgr, det, args.thresh, names))
        if writer is not None:
            writer.release()
    if args.json:
        Path(args.json).write_text(json.dumps(records))
    print(f"{len(items)} file(s), {found} box(es); annotated output in {out_dir}"
          + (f"; COCO results in {args.json}" if args.json else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darknet-py", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print Darknet's layer table and total BFLOPs of a cfg")
    p.add_argument("cfg")
    p.add_argument("--width", type=int, help="override [net] width")
    p.add_argument("--height", type=int, help="override [net] height")
    p.set_defaults(func=cmd_summary)

    detector = sub.add_parser("detector", help="Darknet's detector verbs").add_subparsers(dest="verb", required=True)
    p = detector.add_parser("test", help="detect on one image like `darknet detector test`")
    p.add_argument("data")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("image", nargs="?", help="image path (else paths are read from stdin)")
    p.add_argument("-thresh", "--thresh", type=float, default=0.25)
    p.add_argument("-hier", "--hier", type=float, default=0.5)
    p.add_argument("-nms", "--nms", type=float, default=0.45)
    p.add_argument("-out", "--out", default="predictions", help="output name without .jpg")
    p.add_argument("--precision", choices=["exact", "fast"], default="exact")
    p.set_defaults(func=cmd_detector_test)

    p = sub.add_parser("detect", help="detect on images, folders and videos")
    p.add_argument("paths", nargs="+")
    p.add_argument("--cfg", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--names", required=True)
    p.add_argument("--out", default="detections", help="folder for annotated copies")
    p.add_argument("--json", help="write COCO-format results here")
    p.add_argument("--thresh", type=float, default=0.25)
    p.add_argument("--nms", type=float, default=0.45)
    p.add_argument("--precision", choices=["exact", "fast"], default="exact")
    p.set_defaults(func=cmd_detect)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    try:
        args.func(args)
    except DarknetError as e:
        print(f"darknet-py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
