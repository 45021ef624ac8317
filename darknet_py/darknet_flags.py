"""Darknet's command-line flags that a verb here does not take: what each does in Darknet and
what to use instead. ``darknet-py`` answers them with this text rather than argparse's bare
"unrecognized arguments"."""
from __future__ import annotations

# flag -> (what it does in Darknet, what to use here)
FLAGS = {
    "-map": ("detector train: computes mAP@0.5 on the .data file's valid= set every 4 epochs (AlexeyAB) "
             "and draws it in the loss chart",
             "detector train ... -map; detector map DATA CFG WEIGHTS for one table"),
    "-dont_show": ("does not open a window", "accepted by detector test, demo and train; this verb opens none"),
    "-ext_output": ("prints each box's left_x, top_y, width, height after its label (AlexeyAB)",
                    "detector test ... -ext_output, detector demo ... -ext_output"),
    "-save_labels": ("writes the boxes as YOLO .txt labels beside each image (AlexeyAB)",
                     "detector test ... -save_labels"),
    "-out": ("where the verb writes: detector test's image name (pjreddie) or JSON file (AlexeyAB), detector "
             "valid's results prefix", "detector test ... -out NAME or -out FILE.json; detect CFG WEIGHTS IMAGE -out "
             "NAME; --out on detect, detector valid, show-batch, plot-lr"),
    "-out_filename": ("detector demo: writes the annotated video to this file", "detector demo ... -out_filename OUT"),
    "-json_port": ("serves the detections as JSON over HTTP on this port (AlexeyAB)",
                   "detector test ... -out result.json, or detect --json results.json"),
    "-mjpeg_port": ("serves the annotated video as MJPEG over HTTP on this port (AlexeyAB)",
                    "detector demo ... -out_filename out.avi"),
    "-http_port": ("serves the training chart over HTTP (AlexeyAB)", "the chart PNG in the backup folder"),
    "-prefix": ("detector demo: saves every frame as PREFIX_%08d.jpg (pjreddie)",
                "detector demo ... -out_filename out.avi, or detect --out FOLDER VIDEO"),
    "-c": ("detector demo: the camera index to read (a webcam)", "give a video file to detector demo"),
    "-avgframes": ("detector demo: averages the network output over N frames", "not implemented: each frame alone"),
    "-fullscreen": ("shows the window full screen", "no window is ever opened"),
    "-benchmark": ("times the network without drawing (AlexeyAB)", "benchmarks/detect_speed.py"),
    "-benchmark_layers": ("times every layer (AlexeyAB)", "benchmarks/detect_speed.py, benchmarks/winograd_layers.py"),
    "-show_imgs": ("detector train: shows the augmented images in a window (AlexeyAB)",
                   "darknet-py show-batch DATA CFG --out batch.png"),
    "-show": ("detector calc_anchors: shows the clusters (and saves cloud.png)",
              "darknet-py calc_anchors ... -show (writes cloud.png)"),
    "-nogpu": ("runs on the CPU", "--device cpu"),
    "-i": ("the CUDA device index", "-i N or --device cuda:N on detector test, demo, map, valid and detect"),
    "-gpus": ("the CUDA devices (train: one process per GPU)",
              "-gpus N on one device; for several: torchrun --nproc_per_node=N -m darknet_py detector train ..."),
    "-clear": ("detector train: starts counting iterations at 0", "detector train ... -clear"),
    "-letter_box": ("letterboxes the image instead of stretching it (AlexeyAB)",
                    "-letter_box (or --letterbox on) on detector test, demo, map, valid and detect"),
    "-thresh": ("the detection threshold", "-thresh on detector test, demo and map; --thresh on detect"),
    "-iou_thresh": ("detector map: IoU for a hit", "detector map ... -iou_thresh 0.5"),
    "-points": ("detector map: 0 (area), 11 (VOC2007) or 101 (COCO) points", "detector map ... -points N"),
    "-dontdraw_bbox": ("draws no boxes in the output", "detect --json, or detector test -out FILE.json"),
    "-time_limit_sec": ("detector demo: stops after so many seconds", "not implemented: the whole video is read"),
    "-delay": ("detector demo: waits so many ms between frames", "no window is opened: nothing to wait for"),
    "-check_mistakes": ("detector train: stops at labels with mistakes (AlexeyAB)",
                        "every label is checked before training; bad entries are reported and skipped"),
    "-chart": ("detector train: the name of the chart image (AlexeyAB)", "the chart is <cfg>_chart.png in the backup folder"),
    "-mAP_epochs": ("detector train: epochs between mAP checks (AlexeyAB)", "detector train ... --valid-every ITERATIONS"),
}


def explain(flag: str) -> str | None:
    """One line for a Darknet flag this verb did not take, or None when it is not Darknet's."""
    name = flag.split("=", 1)[0]
    if name not in FLAGS:
        return None
    darknet, here = FLAGS[name]
    return f"{name}: in Darknet, {darknet}; here: {here}"


def unrecognized(tokens) -> list[str]:
    """The explanations of the Darknet flags among argparse's leftover ``tokens`` (the others
    are left to argparse's own message)."""
    return [line for line in (explain(t) for t in tokens if t.startswith("-")) if line]
