"""Darknet's own command forms: ``detector test`` with its outputs (-ext_output lines, -out JSON,
-save_labels files), ``detector demo`` on a video, pjreddie's ``detect CFG WEIGHTS IMAGE``, the
device flags (-i, -gpus, --device), and the checks made before any image is read."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import DarknetError

LETTERBOX = {"auto": None, "on": True, "off": False}  # --letterbox -> detect(..., letterbox=)

# AlexeyAB's replace_image_to_label: dataset folders whose labels live in a sibling folder ...
LABEL_FOLDERS = (("/images/train2017/", "/labels/train2017/"), ("/images/val2017/", "/labels/val2017/"),
                 ("/JPEGImages/", "/labels/"), ("/images/train2014/", "/labels/train2014/"),
                 ("/images/val2014/", "/labels/val2014/"))
# ... and the image extensions it replaces by .txt (only at the end of the name).
LABEL_EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".ppm", ".PPM",
                    ".tiff", ".TIFF")


def device_of(args) -> str | None:
    """The torch device the flags ask for: ``--device``, else Darknet's ``-i N`` or ``-gpus N``
    (the first of a list) as ``cuda:N``; None for the default (CUDA when present). A CUDA
    device this torch cannot use is an error that says why."""
    import torch
    device = getattr(args, "device", None)
    gpus = getattr(args, "gpus", None)
    index = getattr(args, "gpu_index", None)
    if device is None and gpus is not None:
        first = gpus.split(",")[0].strip()
        if not first.isdigit():
            raise DarknetError(f"-gpus {gpus}: expected GPU numbers such as 0 or 0,1")
        index = int(first)
    if device is None and index is not None:
        device = f"cuda:{index}"
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise DarknetError(f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"a CUDA {torch.version.cuda} build that finds no GPU"
            raise DarknetError(f"{device} was asked for, but this torch {torch.__version__} is {build}; "
                               "run on the CPU (--device cpu) or install a CUDA build of torch (README: Installing)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DarknetError(f"{device} was asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def head_classes(net) -> list[int]:
    """The number of classes each detection head of ``net`` predicts."""
    return [net.layers[i].classes for i in net.outputs if hasattr(net.layers[i], "classes")]


def check_classes(net, cfg, names, names_file, data=None) -> None:
    """The .data file's ``classes``, the names file and the network's heads must agree; else an
    error naming the files and the three counts (Darknet prints a warning and then indexes past
    the names)."""
    heads = head_classes(net)
    if not heads:
        raise DarknetError(f"{cfg}: no [yolo], [region] or [detection] layer: not a detector")
    counts = {len(names), *heads} | ({data.classes} if data is not None else set())
    if len(counts) == 1:
        return
    parts = [f"{data.path} says classes={data.classes}"] if data is not None else []
    parts.append(f"{names_file} lists {len(names)} names")
    parts.append(f"{cfg}'s {'head predicts' if len(set(heads)) == 1 else 'heads predict'} "
                 f"{', '.join(str(h) for h in sorted(set(heads)))} classes")
    raise DarknetError("the class counts disagree: " + "; ".join(parts))


def label_path(image) -> Path:
    """AlexeyAB's ``replace_image_to_label`` for ``-save_labels``: the dataset folder swapped
    for its labels folder, the image extension for ``.txt`` (so a plain image gets its
    ``.txt`` beside it); an extension it does not know is an error."""
    text = str(image)
    for old, new in LABEL_FOLDERS:
        text = text.replace(old, new, 1)
    for ext in LABEL_EXTENSIONS:
        if text.endswith(ext):
            return Path(text[:-len(ext)] + ".txt")
    raise DarknetError(f"{image}: cannot name its label file (-save_labels knows the extensions "
                       f"{', '.join(LABEL_EXTENSIONS[::2])})")


def label_lines(det, thresh) -> str:
    """``-save_labels``: per box its most probable class above ``thresh`` (the first of equals)
    and the relative box, ``%d %2.4f %2.4f %2.4f %2.4f``."""
    lines = []
    for i in range(len(det)):
        above = np.flatnonzero(det.probs[i] > thresh)
        if len(above):
            j = above[np.argmax(det.probs[i, above])]
            x, y, w, h = (float(v) for v in det.boxes[i])
            lines.append(f"{j} {x:2.4f} {y:2.4f} {w:2.4f} {h:2.4f}\n")
    return "".join(lines)


def label_text(det, names, thresh) -> list[str]:
    """pjreddie's console lines: per box in Darknet's order, each class above ``thresh``."""
    from .draw import labels
    return [f"{names[j]}: {prob * 100:.0f}%" for _, hits in labels(det, thresh) for j, prob in hits]


def ext_output_text(det, names, thresh) -> list[str]:
    """AlexeyAB's ``draw_detections_v3`` console lines: boxes with a class above ``thresh``
    sorted by their left edge (a stable sort), the best class with ``left_x top_y width
    height`` in pixels, then the box's other classes above ``thresh``."""
    w, h = det.image_size
    chosen = []
    for i in range(len(det)):
        best, best_prob = -1, np.float32(thresh)
        for j in range(det.probs.shape[1]):
            if det.probs[i, j] > best_prob and not names[j].startswith("dont_show"):
                best, best_prob = j, det.probs[i, j]
        if best >= 0:
            chosen.append((i, best))
    boxes = det.boxes
    chosen.sort(key=lambda c: float(boxes[c[0], 0] - boxes[c[0], 2] / np.float32(2)))
    lines = []
    for i, best in chosen:
        x, y, bw, bh = (float(v) for v in boxes[i])
        lines.append(f"{names[best]}: {det.probs[i, best] * 100:.0f}%\t(left_x: {round((x - bw / 2) * w):4.0f}   "
                     f"top_y: {round((y - bh / 2) * h):4.0f}   width: {round(bw * w):4.0f}   "
                     f"height: {round(bh * h):4.0f})")
        lines += [f"{names[j]}: {det.probs[i, j] * 100:.0f}%" for j in range(det.probs.shape[1])
                  if det.probs[i, j] > thresh and j != best]
    return lines


def _images(args) -> list[str]:
    if args.image:
        return [args.image]
    return [line.strip() for line in sys.stdin if line.strip()]


def run_detector_test(args, load_net) -> None:
    """``detector test DATA CFG WEIGHTS [IMAGE]`` (else image paths from stdin): Darknet's label
    lines (``-ext_output``: AlexeyAB's), the annotated image (``-out NAME`` -> NAME.jpg, as
    pjreddie; ``-out FILE.json``: AlexeyAB's JSON there and the image in predictions.jpg),
    ``-save_labels`` .txt files. Everything is checked before the first image is read."""
    from dataclasses import replace

    from .atomic import atomic_write
    from .datafile import DataConfig
    from .detect import detect
    from .draw import draw_detections
    from .image import read_bgr
    from .outputs import check_output, write_image
    json_out = args.out if str(args.out).lower().endswith(".json") else None
    image_out = check_output("predictions.jpg" if json_out else f"{args.out}.jpg", "annotated image")
    if json_out:
        check_output(json_out, "JSON file")
    data = DataConfig.from_file(args.data)
    images = _images(args)
    for path in images:
        if not Path(path).is_file():
            raise DarknetError(f"{path}: no such image file")
        if args.save_labels:
            from .resources import is_packaged
            if is_packaged(path):
                raise DarknetError(f"{path} is a packaged sample: -save_labels writes beside the image, "
                                   "so copy it to a folder of yours first")
            check_output(label_path(path), "label file")
    net = load_net(args)
    check_classes(net, args.cfg, data.names, data.names_file, data)
    frames = []
    for frame_id, path in enumerate(images, start=1):
        bgr = read_bgr(path)
        start = time.time()
        det = detect(net, bgr, thresh=args.thresh, hier_thresh=args.hier, nms=args.nms,
                     letterbox=LETTERBOX[args.letterbox], names=data.names)
        det = replace(det, image_path=path)
        print(f"{path}: Predicted in {time.time() - start:f} seconds.")
        lines = ext_output_text if args.ext_output else label_text
        for line in lines(det, data.names, args.thresh):
            print(line)
        write_image(image_out, draw_detections(bgr, det, args.thresh, data.names))
        if json_out:
            frames.append(det.to_dict(frame_id))
        if args.save_labels:
            text = label_lines(det, args.thresh)
            atomic_write(label_path(path), lambda f, text=text: f.write(text.encode()))
            print(f"wrote {label_path(path)}")
    if json_out:
        atomic_write(json_out, lambda f: f.write(json.dumps(frames, indent=1).encode()))
        print(f"wrote {json_out}: {len(frames)} frame(s)")
    if images:
        print(f"wrote {image_out}")


def _fourcc(path: Path) -> str:
    return {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v"}.get(path.suffix.lower(), "MJPG")


def run_detector_demo(args, load_net) -> None:
    """``detector demo DATA CFG WEIGHTS VIDEO [-out_filename OUT]``: every frame detected, its
    objects printed as AlexeyAB's demo prints them, the annotated frames written to OUT at the
    video's frame rate, the speed (FPS) at the end. No window is opened (``-dont_show``)."""
    import cv2

    from .datafile import DataConfig
    from .detect import detect
    from .draw import draw_detections
    from .outputs import check_output
    from .video import frames as video_frames
    out = check_output(args.out_filename, "output video") if args.out_filename else None
    data = DataConfig.from_file(args.data)
    if not Path(args.video).is_file():
        raise DarknetError(f"{args.video}: no such video file (a camera index is not read here)")
    net = load_net(args)
    check_classes(net, args.cfg, data.names, data.names_file, data)
    writer, count, start = None, 0, time.time()
    lines = ext_output_text if args.ext_output else label_text
    try:
        for bgr, fps in video_frames(args.video):  # refuses FIFOs and oversized frames; reports a cut
            if out is not None and writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*_fourcc(out)), fps,
                                         (bgr.shape[1], bgr.shape[0]))
                if not writer.isOpened():
                    raise DarknetError(f"{out}: OpenCV cannot write a video with the extension '{out.suffix}'")
            det = detect(net, bgr, thresh=args.thresh, hier_thresh=args.hier, nms=args.nms,
                         letterbox=LETTERBOX[args.letterbox], names=data.names)
            count += 1
            print(f"Objects (frame {count}):")
            for line in lines(det, data.names, args.thresh):
                print(line)
            if writer is not None:
                writer.write(draw_detections(bgr, det, args.thresh, data.names))
    finally:
        if writer is not None:
            writer.release()
    elapsed = max(time.time() - start, 1e-9)
    print(f"{count} frames in {elapsed:.2f} s: FPS {count / elapsed:.1f}")
    if out is not None and count:
        print(f"wrote {out}")


def pjreddie_detect_args(args) -> None:
    """pjreddie's ``detect CFG WEIGHTS [IMAGE]``: ``detector test cfg/coco.data CFG WEIGHTS IMAGE``."""
    from .resources import input_path
    if len(args.paths) not in (2, 3):
        raise DarknetError("detect CFG WEIGHTS [IMAGE] (pjreddie's form) takes a cfg, a weights file and "
                           "at most one image; or: detect PATHS --cfg CFG --weights WEIGHTS --names NAMES")
    args.cfg, args.weights = args.paths[0], args.paths[1]
    args.image = input_path(args.paths[2], "image") if len(args.paths) == 3 else None
    args.data = input_path("cfg/coco.data", ".data file")
    args.hier, args.out = 0.5, args.out or "predictions"
    args.ext_output = args.save_labels = False
