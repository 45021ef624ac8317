"""Inference speed against OpenCV DNN (CPU backend) in one process, on the same input and weights.

    python benchmarks/detect_speed.py [--repeat 5] [--quick] [--threads N]

Prints median seconds per forward pass and the ratio to OpenCV for darknet_py exact and fast,
for yolov3-tiny at 416 and yolov3 at 416 and 608, batch 1 and 8; then the load time of a
yolov3-sized (248 MB) weights file against a plain numpy.fromfile of it. Weights are random,
in Darknet's layout (the official files are not needed). Ratios, not seconds, are the result:
both sides run in the same process on the same machine with the same number of threads
(``--threads``, default: the CPUs this process may use; OMP_NUM_THREADS would otherwise limit
PyTorch alone), taking turns within each repeat so that other load on the machine falls on both.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import darknet_py  # noqa: E402
from darknet_py.synthetic import write_random_weights  # noqa: E402


def median_times(fns, repeat):
    """Median seconds of each of ``fns`` (name -> callable), run in turn within each repeat."""
    for fn in fns.values():
        fn()  # warm-up (allocations, oneDNN primitive caches)
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def opencv_net(cfg, weights):
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net, net.getUnconnectedOutLayersNames()


def bench_model(cfg_name, size, batch, weights, repeat):
    cfg = ROOT / "cfg" / cfg_name
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    cv, names = opencv_net(cfg, weights)
    blob = x.numpy()

    def run_cv():
        cv.setInput(blob)
        cv.forward(names)

    def runner(precision):
        net = darknet_py.load(cfg, weights, width=size, height=size, precision=precision, device="cpu")

        def run_ours():
            with torch.inference_mode():
                net(x)
        return run_ours

    results = median_times({"opencv": run_cv, "exact": runner("exact"), "fast": runner("fast")}, repeat)
    base = results["opencv"]
    print(f"{cfg_name:16s} {size:4d}  batch {batch}:  opencv {base:7.3f} s   "
          f"exact {results['exact']:7.3f} s ({results['exact'] / base:.2f} x)   "
          f"fast {results['fast']:7.3f} s ({results['fast'] / base:.2f} x)", flush=True)


def bench_load(weights, repeat):
    cfg = ROOT / "cfg" / "yolov3.cfg"
    net = darknet_py.Darknet(cfg, init=False)
    times = median_times({"numpy": lambda: np.fromfile(weights, dtype=np.float32),
                          "ours": lambda: net.load_weights(weights)}, repeat)
    plain, ours = times["numpy"], times["ours"]
    size = Path(weights).stat().st_size / 1e6
    print(f"load {size:.0f} MB weights: numpy.fromfile {plain:.3f} s, darknet_py {ours:.3f} s "
          f"({ours / plain:.2f} x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="batch 1 only")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for PyTorch and for OpenCV (default: %(default)s, this process's CPUs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), OpenCV {cv2.__version__} "
          f"({cv2.getNumThreads()} threads), bf16 fast path: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = {name: Path(tmp) / f"{name}.weights" for name in ("yolov3-tiny.cfg", "yolov3.cfg")}
        for name, path in weights.items():
            write_random_weights(ROOT / "cfg" / name, path, seed=1)
        batches = (1,) if args.quick else (1, 8)
        for cfg_name, size in (("yolov3-tiny.cfg", 416), ("yolov3.cfg", 416), ("yolov3.cfg", 608)):
            for batch in batches:
                bench_model(cfg_name, size, batch, weights[cfg_name], args.repeat)
        bench_load(weights["yolov3.cfg"], args.repeat)


if __name__ == "__main__":
    main()
