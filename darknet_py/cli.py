"""``darknet-py``: command-line verbs in the forms Darknet users type."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .cli_args import device, non_negative_int, positive_int, probability, seed
from .cli_darknet import LETTERBOX
from .errors import DarknetError
from .memory import keep_freed_memory


def cmd_summary(args):
    from .model import Darknet
    from .summary import layer_table
    net = Darknet(args.cfg, width=args.width, height=args.height, init=False)
    print(layer_table(net))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def _load_net(args):
    from .cli_darknet import device_of
    from .model import load
    return load(args.cfg, args.weights, precision=getattr(args, "precision", "exact"), device=device_of(args))


def cmd_detector_test(args):
    """Darknet's ``detector test``: labels with percentages, then predictions.jpg (cli_darknet)."""
    from .cli_darknet import run_detector_test
    run_detector_test(args, _load_net)


def cmd_detector_demo(args):
    """Darknet's ``detector demo`` on a video file (cli_darknet)."""
    from .cli_darknet import run_detector_demo
    run_detector_demo(args, _load_net)


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


def cmd_detect(args):
    """Images, folders and videos -> annotated copies in --out, optional COCO-results JSON (one
    record per box and class, naming its file, and its frame for a video; image ids by the rule
    of darknet_py.coco). pjreddie's ``detect CFG WEIGHTS [IMAGE]`` runs ``detector test``."""
    import json

    from tqdm import tqdm

    from .atomic import atomic_write
    from .cli_darknet import check_classes
    from .coco import category_ids, numbered_ids
    from .datafile import load_names
    from .detect import detect
    from .draw import draw_detections
    from .image import read_bgr
    from .outputs import check_folder, check_output, write_image
    from .video import frames as video_frames
    if args.cfg is None and args.paths[0].lower().endswith(".cfg"):
        from .cli_darknet import pjreddie_detect_args, run_detector_test
        pjreddie_detect_args(args)
        return run_detector_test(args, _load_net)
    if args.cfg is None or args.weights is None or args.names is None:
        raise DarknetError("detect needs --cfg, --weights and --names (or pjreddie's form: detect CFG WEIGHTS IMAGE)")
    from pathlib import Path
    if args.json and Path(args.json).parent.resolve() != Path(args.out or "detections").resolve():
        check_output(args.json, "JSON file")  # (one inside --out is checked once that exists)
    items = list(_inputs(args.paths))
    out_dir = check_folder(args.out or "detections", "output folder")
    if args.json:
        check_output(args.json, "JSON file")
    names = load_names(args.names)
    net = _load_net(args)
    check_classes(net, args.cfg, names, args.names)
    categories = category_ids(len(names), coco_eval=True)  # COCO's ids for an 80-class network
    numbered = numbered_ids([path for _, path in items]) if all(kind == "image" for kind, _ in items) else None
    next_id = iter(numbered or range(1, 1 << 62))
    records, found = [], 0
    detect_args = dict(thresh=args.thresh, nms=args.nms, letterbox=LETTERBOX[args.letterbox], names=names)
    for kind, path in tqdm(items, desc="detect", unit="file"):
        if kind == "image":
            bgr = read_bgr(path)
            det = detect(net, bgr, **detect_args)
            records += det.to_coco(next(next_id), categories, {"file_name": str(path)})
            write_image(out_dir / f"{path.stem}.jpg", draw_detections(bgr, det, args.thresh, names))
            found += int((det.probs > args.thresh).any(1).sum())
            continue
        writer = None
        for frame, (bgr, fps) in enumerate(tqdm(video_frames(path), desc=path.name, unit="frame", leave=False)):
            det = detect(net, bgr, **detect_args)
            records += det.to_coco(next(next_id), categories, {"file_name": str(path), "frame": frame})
            found += int((det.probs > args.thresh).any(1).sum())
            if writer is None:
                import cv2
                writer = cv2.VideoWriter(str(out_dir / f"{path.stem}.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                         fps, (bgr.shape[1], bgr.shape[0]))
            writer.write(draw_detections(bgr, det, args.thresh, names))
        if writer is not None:
            writer.release()
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(records).encode()))
    print(f"{len(items)} file(s), {found} box(es); annotated output in {out_dir}"
          + (f"; COCO results ({len(records)} records) in {args.json}" if args.json else ""))


def cmd_detector_train(args):
    """``darknet detector train DATA CFG [WEIGHTS]`` with [net] overrides and the BoF switches."""
    from .train.interrupt import TrainingInterrupted
    from .train.trainer import TrainOptions, train
    options = TrainOptions(backup=args.backup, seed=args.seed, workers=args.workers, clear=args.clear,
                           mixup=args.mixup, label_smoothing=args.label_smoothing,
                           multi_scale=args.multi_scale, amp=args.amp, sync_bn=args.sync_bn,
                           last_every=args.last_every, valid_every=args.valid_every, calc_map=args.map,
                           progress=not args.no_progress, verbose=args.verbose, tensorboard=args.tensorboard,
                           device=_train_device(args))
    try:
        result = train(args.data, args.cfg, args.weights, overrides=args.set, options=options)
    except TrainingInterrupted as e:
        if e.speaks:
            _report_interrupt(e, args)
        raise
    if result.final is not None and _rank() == 0:
        best = f", best mAP@0.5 {result.best_map:.4f}" if result.best_map is not None else ""
        print(f"iteration {result.iteration}, seen {result.seen}: saved {result.final}{best}")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _report_interrupt(e, args) -> None:
    """What was kept and the command that goes on from it (on stderr)."""
    from pathlib import Path
    name = __import__("signal").Signals(e.signum).name
    if e.saved:
        print(f"darknet-py: {name}: the unfinished update was dropped; saved {e.last} "
              f"(iteration {e.iteration})", file=sys.stderr)
    else:
        print(f"darknet-py: {name} again during the save: it was given up; {e.last} is as it was before",
              file=sys.stderr)
    if Path(e.last).is_file():
        print(f"darknet-py: to resume: {resume_command(args, e.last)}", file=sys.stderr)


def resume_command(args, last) -> str:
    """The command line that continues this ``detector train`` from ``last``: the same
    options, ``last`` as the weights, without -clear (under torchrun, torchrun's line)."""
    import shlex
    parser = args.train_parser
    words = [args.data, args.cfg, str(last)]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "clear", "weights"):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        elif isinstance(value, list):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    head = (["torchrun", f"--nproc_per_node={world}", "-m", "darknet_py"] if world > 1 else ["darknet-py"])
    return shlex.join(head + (["-v"] if args.verbose else []) + ["detector", "train"] + [str(w) for w in words])


def _train_device(args):
    """--device, -i N, or -gpus N for one device; several GPUs train under torchrun."""
    from .cli_darknet import device_of
    if args.gpus is not None and "," in args.gpus:
        raise DarknetError(f"-gpus {args.gpus}: several GPUs train as one process each: "
                           "torchrun --nproc_per_node=N -m darknet_py detector train ...")
    return device_of(args)


def cmd_data_shapes(args):
    from .shapes import generate_shapes
    n_valid = max(1, args.n // 10) if args.valid is None else args.valid
    data = generate_shapes(args.out, args.n, args.seed, size=args.size, n_valid=n_valid)
    print(f"wrote {args.n} training and {n_valid} validation images; data file {data}")


def _validation(args):
    from .cli_darknet import check_classes
    from .datafile import DataConfig
    from .datasets import open_dataset
    from .validate import validation_detections
    data = DataConfig.from_file(args.data)
    source = open_dataset(data, "valid")
    if args.coco_gt:  # a missing, malformed or foreign ground truth fails now, not after the pass
        from .coco import image_ids
        image_ids(source.paths, args.coco_gt)
    net = _load_net(args)
    check_classes(net, args.cfg, data.names, data.names_file, data)
    detections, truths, sizes = validation_detections(net, source, args.batch, thresh=args.low_thresh,
                                                      nms=args.nms, progress=not args.no_progress,
                                                      letterbox=LETTERBOX[args.letterbox])
    return data, source, detections, truths, sizes


def cmd_detector_map(args):
    """Darknet's ``detector map`` table; optionally a threshold sweep, a PR chart (only when
    --chart names a file), COCO's 12 numbers."""
    from .coco import category_ids, image_ids
    from .evaluate import format_map_table, mean_average_precision
    from .outputs import check_output
    from .validate import SWEEP, coco_results, coco_summary, threshold_sweep
    if args.chart:
        check_output(args.chart, "chart")
    low = args.low_thresh
    if args.thresh_sweep:
        args.low_thresh = min(low, *SWEEP)  # one pass at the lowest; higher ones are subsets
    data, source, all_detections, truths, sizes = _validation(args)
    detections = [d[d[:, 1] > low] for d in all_detections]
    result = mean_average_precision(detections, truths, data.names[:data.classes], iou_thresh=args.iou_thresh,
                                    points=args.points, thresh=args.thresh)
    print(format_map_table(result))
    if args.thresh_sweep:
        print("\n  conf_thresh   AP50     boxes")
        for t, value, boxes in threshold_sweep(all_detections, truths, data.names[:data.classes],
                                               iou_thresh=args.iou_thresh, points=args.points):
            print(f"  {t:<11g} {value * 100:6.2f} %  {boxes}")
    if args.coco_gt:
        records = coco_results(detections, sizes, image_ids(source.paths, args.coco_gt),
                               category_ids(data.classes, args.coco_gt))
        print()
        for name, value in coco_summary(args.coco_gt, records).items():
            print(f"  {name:<10} {value:.3f}")
    if args.chart:
        from .plots import pr_chart, save_png
        save_png(pr_chart(result), args.chart)
        print(f"wrote the precision-recall chart {args.chart}")


def cmd_detector_valid(args):
    """COCO-results JSON of the validation set (Darknet's ``detector valid`` writes one per class
    for VOC, one JSON for COCO; this writes the JSON)."""
    import json

    from .atomic import atomic_write
    from .coco import category_ids, image_ids
    from .outputs import check_output
    from .validate import coco_results
    check_output(args.out, "results file")
    data, source, detections, _, sizes = _validation(args)
    records = coco_results(detections, sizes, image_ids(source.paths, args.coco_gt),
                           category_ids(data.classes, args.coco_gt, data.eval == "coco"))
    atomic_write(args.out, lambda f: f.write(json.dumps(records).encode()))
    print(f"{len(records)} detections of {len(detections)} images: wrote {args.out}")


def cmd_partial(args):
    from .convert import partial
    from .outputs import check_output
    check_output(args.out, "weights file")
    partial(args.cfg, args.weights, args.out, args.n)
    print(f"wrote layers 0..{args.n - 1} to {args.out}")


def cmd_convert(args):
    """Direction from the suffixes: .weights -> .pt or .pt -> .weights."""
    from pathlib import Path

    from .convert import load_state_dict, save_state_dict
    from .model import Darknet
    from .outputs import check_output
    src, dst = Path(args.input), check_output(args.output, "output file")
    net = Darknet(args.cfg, init=False)
    if src.suffix == ".pt" and dst.suffix != ".pt":
        load_state_dict(net, src)
        net.save_weights(dst)
    elif src.suffix != ".pt" and dst.suffix == ".pt":
        net.load_weights(src)
        save_state_dict(net, dst)
    else:
        raise DarknetError(f"convert goes between .weights and .pt; got {src.name} -> {dst.name}")
    print(f"wrote {dst}")


def cmd_demo(args):
    """The embedded default: shipped model, shipped samples, mAP on freshly generated images."""
    from .demo import run_demo
    result = run_demo(args.out, n_valid=args.n_valid, progress=not args.no_progress)
    print(result.table)
    print(f"\nannotated samples: {', '.join(str(p) for p in result.images)}")
    print(f"validation set ({args.n_valid} images, seed 2): {result.valid}")
    print(f"mAP@0.5 = {result.map:.4f}")


def cmd_calc_anchors(args):
    """AlexeyAB's ``detector calc_anchors``: k-means (1 - IoU) anchors of the train= labels."""
    from pathlib import Path

    from .anchors import calc_anchors, cluster_picture
    from .datafile import DataConfig
    from .datasets import open_dataset
    from .outputs import check_output, write_image
    check_output(args.out, "anchors file")
    if args.show:
        check_output(args.show_out, "cluster picture")
    print(f"num_of_clusters = {args.num_of_clusters}, width = {args.width}, height = {args.height}")
    source = open_dataset(DataConfig.from_file(args.data), "train")
    result = calc_anchors(source, args.num_of_clusters, args.width, args.height, seed=args.seed)
    print(f"read labels from {len(source)} images: {result.boxes} boxes")
    print(f"k-means iterations = {result.rounds}")
    print(f"avg IoU = {result.avg_iou:2.2f} %")
    print(result.line(args.width))
    Path(args.out).write_text(result.values(args.width))
    print(f"saved anchors to {args.out}")
    if args.show:
        write_image(args.show_out, cluster_picture(result, args.width, args.height))
        print(f"wrote the clusters to {args.show_out}")


def cmd_export_onnx(args):
    from .export import export_onnx
    from .model import load
    from .outputs import check_output
    check_output(args.output, "ONNX file")
    net = load(args.cfg, args.weights, width=args.width, height=args.height, device="cpu")
    names = export_onnx(net, args.output, opset=args.opset, decode=args.decode or args.nms is not None,
                        letterbox=LETTERBOX[args.letterbox], thresh=args.thresh, nms=args.nms)
    c, h, w = net.net_input_shape.c, net.net_input_shape.h, net.net_input_shape.w
    print(f"wrote {args.output}: input (batch, {c}, {h}, {w}), outputs {', '.join(names)}, opset {args.opset}")


def _write_png(path, image) -> None:
    import cv2
    if not cv2.imwrite(str(path), image):
        raise DarknetError(f"{path}: cannot write the PNG")


def cmd_show_batch(args):
    """A grid of the augmented samples ``detector train`` would start with, boxes drawn."""
    from .draw import batch_grid
    from .outputs import check_output
    from .train.preview import training_batch
    check_output(args.out, "PNG")
    images, truths, trainer = training_batch(args.data, args.cfg, overrides=args.set, seed=args.seed,
                                             mixup=args.mixup, count=args.images)
    _write_png(args.out, batch_grid(images.numpy(), truths.numpy(), trainer.data.names, trainer.data.classes))
    boxes = int((truths[..., 2] > 0).sum())
    print(f"wrote {args.out}: {len(images)} images of {images.shape[3]} x {images.shape[2]}, {boxes} boxes")


def cmd_plot_lr(args):
    """The learning rate of every update 1..max_batches under the cfg's policy."""
    from .model import Darknet
    from .outputs import check_output
    from .plots import lr_chart, save_png
    from .train.schedule import rate_curve
    check_output(args.out, "PNG")
    net = Darknet(args.cfg, overrides=args.set, init=False).net
    if net.max_batches <= 0:
        raise DarknetError(f"{args.cfg}: max_batches must be set (e.g. --set max_batches=500)")
    rates = rate_curve(net, args.seed)
    title = (f"learning rate: policy={net.policy}, learning_rate={net.learning_rate:g}, burn_in={net.burn_in}, "
             f"max_batches={net.max_batches}")
    save_png(lr_chart(rates, title, log=args.log), args.out)
    print(f"wrote {args.out}: rate from {rates.min():g} to {rates.max():g} over {len(rates)} updates")


def _add_device(p) -> None:
    """--device, and Darknet's -i N / -gpus N (CUDA device N)."""
    p.add_argument("--device", type=device, help="cpu, cuda, cuda:1 (default: CUDA when present)")
    p.add_argument("-i", dest="gpu_index", type=non_negative_int, metavar="N", help="as Darknet's -i: CUDA device N")
    p.add_argument("-gpus", dest="gpus", metavar="N[,M...]", help="as Darknet's -gpus: CUDA device N (the first)")


def _add_dont_show(p) -> None:
    p.add_argument("-dont_show", action="store_true", help="accepted for Darknet's command lines: no window is ever opened")


def _add_letterbox(p) -> None:
    """AlexeyAB's ``-letter_box`` flag, and ``--letterbox`` to choose either way."""
    p.add_argument("--letterbox", choices=sorted(LETTERBOX), default="auto",
                   help="letterbox the image (on) or resize it to the network size (off); auto: as the "
                        "network's fork does (pjreddie letterboxes; AlexeyAB only with [net] letter_box=1)")
    p.add_argument("-letter_box", dest="letterbox", action="store_const", const="on",
                   help="as AlexeyAB's -letter_box: --letterbox on")


def _add_set(p) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [net] option, e.g. --set max_batches=6 --set width=128 (repeatable)")


def _add_calc_anchors(p) -> None:
    p.add_argument("data", help=".data file; its train= labels are clustered")
    p.add_argument("-num_of_clusters", "--num-of-clusters", type=positive_int, default=5, help="number of anchors (5)")
    p.add_argument("-width", "--width", type=positive_int, required=True, help="network width in pixels")
    p.add_argument("-height", "--height", type=positive_int, required=True, help="network height in pixels")
    p.add_argument("-out", "--out", default="anchors.txt", help="file for the anchors (Darknet: anchors.txt)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random initial centres")
    p.add_argument("-show", action="store_true", help="as AlexeyAB's -show: the clusters picture, written as a "
                                                      "PNG (no window)")
    p.add_argument("--show-out", default="cloud.png", help="where -show writes it (AlexeyAB: cloud.png)")
    p.add_argument("-dont_show", action="store_true", help="accepted: no window is ever opened")
    p.set_defaults(func=cmd_calc_anchors)


def add_tool_parsers(sub, detector) -> None:
    """calc_anchors (also as ``detector calc_anchors``), export onnx, show-batch, plot-lr."""
    text = "k-means anchors of the train= labels, as AlexeyAB's calc_anchors"
    _add_calc_anchors(sub.add_parser("calc_anchors", aliases=["calc-anchors"], help=text))
    _add_calc_anchors(detector.add_parser("calc_anchors", help=text))

    export = sub.add_parser("export", help="export a network to other formats").add_subparsers(
        dest="format", required=True)
    p = export.add_parser("onnx", help="ONNX (opset 17, dynamic batch axis) through torch.onnx")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--width", type=positive_int, help="override [net] width (the exported size is fixed)")
    p.add_argument("--height", type=positive_int, help="override [net] height")
    p.add_argument("--opset", type=positive_int, default=17)
    p.add_argument("--decode", action="store_true",
                   help="add Darknet's box decoding: a second input image_size (batch, 2: width, height), outputs "
                        "boxes (centre x, y, w, h relative to the image), objectness, scores")
    p.add_argument("--nms", type=probability, metavar="IOU",
                   help="with --decode: add ONNX NonMaxSuppression at this IoU (Darknet: 0.45); output selected "
                        "(batch, class, box)")
    p.add_argument("--thresh", type=probability, default=0.25, help="with --decode: Darknet's detection threshold")
    _add_letterbox(p)
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("show-batch", help="a PNG grid of one augmented training batch with its boxes")
    p.add_argument("data")
    p.add_argument("cfg")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the picture")
    _add_set(p)
    p.add_argument("--mixup", type=probability, default=0.0, metavar="P", help="as detector train --mixup")
    p.add_argument("--seed", type=seed, default=0, help="as detector train --seed")
    p.add_argument("--images", type=positive_int, help="how many samples (default: one mini-batch, batch/subdivisions)")
    p.set_defaults(func=cmd_show_batch)

    p = sub.add_parser("plot-lr", help="a PNG of the learning rate over max_batches")
    p.add_argument("cfg")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the chart")
    p.add_argument("--log", action="store_true", help="a logarithmic rate axis")
    _add_set(p)
    p.add_argument("--seed", type=seed, default=0, help="seed of policy=random's draws (as detector train)")
    p.set_defaults(func=cmd_plot_lr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darknet-py", description=__doc__ + " A cfg, .data, names or image "
                                     "argument that is not an existing path names a packaged file of that name "
                                     "(e.g. coco.data, yolov3.cfg, dog.jpg).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print Darknet's layer table and total BFLOPs of a cfg")
    p.add_argument("cfg")
    p.add_argument("--width", type=positive_int, help="override [net] width")
    p.add_argument("--height", type=positive_int, help="override [net] height")
    p.set_defaults(func=cmd_summary)

    detector = sub.add_parser("detector", help="Darknet's detector verbs").add_subparsers(dest="verb", required=True)
    p = detector.add_parser("test", help="detect on one image like `darknet detector test`")
    p.add_argument("data")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("image", nargs="?", help="image path (else paths are read from stdin, one a line)")
    p.add_argument("-thresh", "--thresh", type=probability, default=0.25)
    p.add_argument("-hier", "--hier", type=probability, default=0.5)
    p.add_argument("-nms", "--nms", type=probability, default=0.45)
    p.add_argument("-out", "--out", default="predictions",
                   help="NAME: the annotated image goes to NAME.jpg (pjreddie); FILE.json: AlexeyAB's JSON of "
                        "every image's detections goes there and the image to predictions.jpg")
    p.add_argument("-ext_output", action="store_true",
                   help="AlexeyAB's lines: boxes sorted by left edge, with left_x, top_y, width, height in pixels")
    p.add_argument("-save_labels", action="store_true",
                   help="write each image's boxes as a YOLO label .txt beside it (AlexeyAB's label path rule)")
    p.add_argument("--precision", choices=["exact", "fast"], default="exact")
    _add_letterbox(p)
    _add_device(p)
    _add_dont_show(p)
    p.set_defaults(func=cmd_detector_test)

    p = detector.add_parser("demo", help="detect on every frame of a video like `darknet detector demo`")
    p.add_argument("data")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("video", help="a video file")
    p.add_argument("-out_filename", "--out-filename", help="write the annotated video here (.avi: MJPG, .mp4: mp4v)")
    p.add_argument("-thresh", "--thresh", type=probability, default=0.25)
    p.add_argument("-hier", "--hier", type=probability, default=0.5)
    p.add_argument("-nms", "--nms", type=probability, default=0.45)
    p.add_argument("-ext_output", action="store_true", help="as detector test -ext_output, per frame")
    p.add_argument("--precision", choices=["exact", "fast"], default="exact")
    _add_letterbox(p)
    _add_device(p)
    _add_dont_show(p)
    p.set_defaults(func=cmd_detector_demo)

    p = detector.add_parser("train", help="train like `darknet detector train DATA CFG [WEIGHTS]`")
    p.add_argument("data")
    p.add_argument("cfg")
    p.add_argument("weights", nargs="?", help="initial weights: a whole file, or a cut one (darknet53.conv.74)")
    _add_set(p)
    p.add_argument("-clear", "--clear", action="store_true", help="start at seen=0 (iteration 0)")
    p.add_argument("--backup", help="checkpoint folder (default: backup= of the .data file)")
    p.add_argument("--seed", type=seed, default=0, help="seed of image order and augmentation")
    p.add_argument("--workers", type=non_negative_int, default=2, help="data-loading processes")
    p.add_argument("--mixup", type=probability, default=0.0, metavar="P",
                   help="Bag of Freebies: geometry-preserving mixup with probability P per image")
    p.add_argument("--label-smoothing", type=probability, default=0.0, metavar="EPS",
                   help="Bag of Freebies: class targets (1-EPS)*onehot + EPS/classes")
    p.add_argument("--multi-scale", action="store_true",
                   help="as random=1 in the last head: a new size every 10 iterations (pjreddie: "
                        "squares 320..608; fork=alexeyab: the cfg's size times 1/1.4..1.4 in steps of "
                        "resize_step)")
    p.add_argument("--amp", action="store_true", help="mixed precision where it pays (bfloat16 with hardware "
                   "support, float16 with a gradient scaler on older GPUs; else float32, with the reason)")
    p.add_argument("--sync-bn", action="store_true", help="synchronized batch norm under torchrun")
    p.add_argument("--last-every", type=positive_int, default=100, help="iterations between _last.weights saves")
    p.add_argument("--valid-every", type=non_negative_int, help="iterations between mAP checks (0: never; "
                   "default: every 4 epochs when the .data file has valid=)")
    p.add_argument("-map", "--map", action="store_true",
                   help="as AlexeyAB's -map: mAP@0.5 on valid= (else the training list) every 4 epochs, "
                        "printed and drawn in the chart (with valid= in the .data file it is checked anyway)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="TensorBoard event folder (default: <backup>/tensorboard/<cfg>; needs the tensorboard package)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: Darknet's line per iteration (also off a terminal, and with -v)")
    _add_device(p)
    _add_dont_show(p)
    p.set_defaults(func=cmd_detector_train, train_parser=p)

    for verb, func, text in (("map", cmd_detector_map, "Darknet's per-class AP table and mAP on valid="),
                             ("valid", cmd_detector_valid, "COCO-results JSON of the valid= images")):
        p = detector.add_parser(verb, help=text)
        p.add_argument("data")
        p.add_argument("cfg")
        p.add_argument("weights")
        p.add_argument("--batch", type=positive_int, default=8, help="images per forward pass")
        p.add_argument("-nms", "--nms", type=probability, default=0.45)
        p.add_argument("--low-thresh", type=probability, default=0.005, help="detection threshold (Darknet: .005)")
        p.add_argument("--coco-gt", help="COCO instances json of the same images: COCO ids / 12-number summary")
        p.add_argument("--precision", choices=["exact", "fast"], default="exact")
        p.add_argument("--no-progress", action="store_true")
        _add_letterbox(p)
        _add_device(p)
        _add_dont_show(p)
        p.set_defaults(func=func)
        if verb == "map":
            p.add_argument("-iou_thresh", "--iou-thresh", type=probability, default=0.5)
            p.add_argument("-points", "--points", type=int, default=0, choices=[0, 11, 101],
                           help="0: area under the curve (Darknet's default), 11: VOC2007, 101: COCO")
            p.add_argument("-thresh", "--thresh", type=probability, default=0.25, help="for TP/FP/FN, F1, IoU")
            p.add_argument("--thresh-sweep", action="store_true",
                           help="AP50 and box count at conf_thresh 0.1, 0.01, 0.001, 0.0001")
            p.add_argument("--chart", metavar="PNG", help="write the precision-recall chart there (none otherwise)")
        else:
            p.add_argument("--out", default="results.json")

    add_tool_parsers(sub, detector)

    p = sub.add_parser("partial", help="the first N layers of a weights file, as Darknet's partial")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("n", type=non_negative_int, help="number of layers to keep (darknet53.conv.74: 74)")
    p.set_defaults(func=cmd_partial)

    p = sub.add_parser("convert", help="between .weights and a PyTorch state_dict (.pt), both ways")
    p.add_argument("cfg")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_convert)

    data = sub.add_parser("data", help="generate datasets").add_subparsers(dest="kind", required=True)
    p = data.add_parser("shapes", help="a seeded Darknet-layout dataset of coloured shapes (+ COCO json)")
    p.add_argument("out")
    p.add_argument("--n", type=positive_int, default=2000)
    p.add_argument("--seed", type=seed, default=1)
    p.add_argument("--size", type=positive_int, default=256, help="image side in pixels")
    p.add_argument("--valid", type=non_negative_int, metavar="N", help="validation images, generated after the training "
                   "ones into their own list valid.txt (default: a tenth of --n; 0: valid= is the training list)")
    p.set_defaults(func=cmd_data_shapes)

    p = sub.add_parser("demo", help="the shipped shapes model on the shipped samples, and its mAP "
                                    "on a freshly generated validation set")
    p.add_argument("--out", default="demo", help="folder for annotated samples and the validation set")
    p.add_argument("--n-valid", type=positive_int, default=300, help="validation images to generate")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("detect", help="detect on images, folders and videos (or pjreddie's detect CFG WEIGHTS IMAGE)")
    p.add_argument("paths", nargs="+", help="images, folders, videos; or CFG WEIGHTS [IMAGE] without --cfg "
                                            "(pjreddie's form: detector test with coco.data)")
    p.add_argument("--cfg")
    p.add_argument("--weights")
    p.add_argument("--names")
    p.add_argument("--out", "-out", default=None, help="folder for annotated copies (created; default "
                   "detections); in pjreddie's form the image name without .jpg (default predictions)")
    p.add_argument("--json", help="write COCO results here: one record per box and class with file_name "
                                  "(and frame for videos); image ids by darknet_py.coco's rule")
    p.add_argument("-thresh", "--thresh", type=probability, default=0.25)
    p.add_argument("-nms", "--nms", type=probability, default=0.45)
    p.add_argument("--precision", choices=["exact", "fast"], default="exact")
    _add_letterbox(p)
    _add_device(p)
    p.set_defaults(func=cmd_detect)
    return parser


# Arguments read as input files; one not found names a packaged file (darknet_py.resources).
PACKAGED_INPUTS = {"cfg": "cfg", "data": ".data file", "names": "names file", "image": "image"}


def _packaged_inputs(args) -> None:
    from .resources import input_path
    for key, what in PACKAGED_INPUTS.items():
        if isinstance(getattr(args, key, None), str):
            setattr(args, key, input_path(getattr(args, key), what))
    if getattr(args, "command", None) == "detect":
        args.paths = [input_path(path, "input") for path in args.paths]


EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 3, 130  # argparse exits 2 on bad arguments


def main(argv=None) -> int:
    """Run a command; every failure ends as one line on stderr and an exit status, never a
    traceback (``-v`` adds the traceback of an unexpected one)."""
    from .darknet_flags import unrecognized
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        explained = unrecognized(extra)
        if not explained:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        for line in explained:
            print(f"darknet-py: {line}", file=sys.stderr)
        return 2
    level = logging.INFO if args.verbose else logging.WARNING
    if _rank() != 0:  # under torchrun the first process speaks for all; the others report errors only
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    if os.environ.get("DARKNET_PY_KEEP_MEMORY", "1") != "0":
        keep_freed_memory()  # this process is ours: reuse freed buffers, as Darknet does (memory.py)
    try:
        _packaged_inputs(args)
        args.func(args)
    except DarknetError as e:
        return _fail(f"error: {e}", EXIT_ERROR)
    except BrokenPipeError:  # `darknet-py ... | head`: the reader left
        sys.stdout = open(os.devnull, "w")
        return EXIT_ERROR
    except OSError as e:  # a full disk, a read-only folder, a vanished file
        where = f" ({e.filename})" if e.filename else ""
        return _fail(f"error: {e.strerror or e}{where}", EXIT_ERROR)
    except MemoryError:
        return _fail("error: out of memory (lower the batch or the image size, or raise DARKNET_PY_MAX_BYTES "
                     "only if the machine has the memory)", EXIT_ERROR)
    except KeyboardInterrupt as e:  # Ctrl-C; a training run has said what it kept (cmd_detector_train)
        from .train.interrupt import TrainingInterrupted
        if isinstance(e, TrainingInterrupted) or _rank() != 0:
            return EXIT_INTERRUPTED
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as e:  # a bug of ours: say so in one line, the traceback under -v
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        return _fail(f"internal error: {type(e).__name__}: {e} (please report it; -v shows the traceback)",
                     EXIT_INTERNAL)
    return 0


def _fail(message: str, status: int) -> int:
    print(f"darknet-py: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
