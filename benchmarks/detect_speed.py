"""Inference speed against OpenCV DNN, onnxruntime and OpenVINO in one process, same input and weights.

    python benchmarks/detect_speed.py [--repeat 7] [--quick] [--threads N] [--isa avx2] [--models ...]

Prints the CPU (model, what PyTorch/oneDNN, OpenCV and our kernel use of its instruction set),
then per model median seconds per forward pass and the ratio to OpenCV DNN (CPU backend: the
median over rounds of each round's ratio, with its quartiles) for:
onnxruntime (CPU provider) and OpenVINO (CPU, f32) running the project's own ONNX export of the
same network (darknet_py/export.py), darknet_py exact, exact with Winograd off, and fast. All run
with the same ``--threads`` (default: the CPUs this process may use), taking turns within each
repeat so that other load on the machine falls on all of them (a pause before each run, and
the order rotated each repeat, so that no runtime always follows another's spinning threads).
Then which path each convolution took (the tuner's choice on this host), the setup cost of the first ``detect()`` in
a fresh process against a steady one, and weights loading against ``numpy.fromfile``. Weights
are random, in Darknet's layout (the official files are not needed).

``--isa avx2`` reruns itself with AVX-512 switched off where each library allows it: oneDNN
(``ONEDNN_MAX_CPU_ISA=AVX2``), ATen (``ATEN_CPU_CAPABILITY=avx2``), OpenCV
(``OPENCV_CPU_DISABLE``) and our kernel (built with ``-mno-avx512f``); onnxruntime and OpenVINO
offer no such switch and keep the CPU's full instruction set (the header line says so).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "DARKNET_PY_NATIVE_ISA": "avx2",
            "OPENCV_CPU_DISABLE": "AVX512F,AVX512-COMMON,AVX512-SKX,AVX512-KNL,AVX512-KNM,AVX512-CNL,AVX512-CLX,AVX512-ICL"}
MODELS = {"yolov3-tiny-416": ("yolov3-tiny.cfg", 416), "yolov3-416": ("yolov3.cfg", 416),
          "yolov3-608": ("yolov3.cfg", 608)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="batch 1 only")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for every runtime (default: %(default)s, this process's CPUs)")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="avx2: emulate an AVX2-only CPU on an AVX-512 one (see above)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--no-setup", action="store_true", help="skip the first-detect() setup measurement")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="first darknet_py.keep_freed_memory(), as the darknet-py command runs (every runtime)")
    return parser.parse_args()


def reexec_for_isa(args):
    """Restart with the AVX2 environment: the libraries read it when they load."""
    if args.isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})


SETTLE_S = 0.1  # pause before each timed run: the previous runtime's idle threads stop spinning


def round_times(fns, repeat):
    """Seconds of each of ``fns`` (name -> callable) per round, each round running all in turn,
    starting one further along the list each round, each run after a pause of ``SETTLE_S``:
    onnxruntime's and OpenVINO's thread pools keep spinning after a run returns, and without the
    pause whichever runtime came next lost cores to them (yolov3-tiny exact measured 0.84 x
    OpenCV right after OpenVINO, 0.65 x for the same arithmetic in fast mode after our own run)."""
    for fn in fns.values():
        fn()  # warm-up (allocations, primitive caches, our tuner on first sight of a shape)
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median_times(fns, repeat):
    """Median seconds of each of ``fns``, run in turn within each repeat."""
    return {name: statistics.median(t) for name, t in round_times(fns, repeat).items()}


def paired_ratio(times, base):
    """Median, over rounds, of one runtime's time over ``base``'s in the same round, with the
    quartiles: the machine's slow and fast phases fall on both sides of each ratio."""
    ratios = sorted(t / b for t, b in zip(times, base))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return quartiles[1], quartiles[0], quartiles[2]


def describe_cpu(threads):
    import cv2
    import torch

    from darknet_py import native
    features = cv2.getCPUFeaturesLine() if hasattr(cv2, "getCPUFeaturesLine") else "?"
    flags = set(native.cpu_flags().split())
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "avx512_vnni", "avx_vnni") if f in flags]
    print(f"CPU: {native.cpu_model()} ({', '.join(isa)}); ATen: {torch.backends.cpu.get_cpu_capability()}; "
          f"oneDNN max ISA: {os.environ.get('ONEDNN_MAX_CPU_ISA', 'all')}; bfloat16 fast path: "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    print(f"OpenCV {cv2.__version__} CPU features (* = used, ? = compiled, not available): {features}")
    print(f"our kernel: cc {' '.join(native.flags())}; onnxruntime and OpenVINO: the CPU's full ISA")
    print(f"threads: {threads} each; torch {torch.__version__}")


def peers(onnx_path, threads):
    """Callables building each installed ONNX runtime's session for ``onnx_path``."""
    made = {}
    try:
        import onnxruntime as ort

        def onnxruntime_run():
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            return lambda blob: session.run(None, {"input": blob})
        made[f"onnxruntime {ort.__version__}"] = onnxruntime_run
    except ImportError:
        pass
    try:
        import openvino as ov

        def openvino_run():
            compiled = ov.Core().compile_model(str(onnx_path), "CPU", {
                "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1})
            request = compiled.create_infer_request()
            return lambda blob: request.infer({0: blob})
        made[f"OpenVINO {ov.__version__.split('-')[0]}"] = openvino_run
    except ImportError:
        pass
    return made


def layer_paths(net) -> str:
    """Each convolution the tuner could send elsewhere, with the path it runs."""
    from darknet_py.layers.conv import Convolutional
    paths = [f"{i}:{layer.path}" for i, layer in enumerate(net.layers)
             if isinstance(layer, Convolutional) and layer.folded is not None and layer._winograd_applies(layer.folded[0].dtype)]
    return ", ".join(paths) or "none (no 3x3 stride-1 layer the kernel takes)"


def bench_model(name, batch, weights, repeat, threads, tmp):
    import cv2
    import torch

    import darknet_py
    from darknet_py import tuner
    from darknet_py.export import export_onnx
    cfg_name, size = MODELS[name]
    cfg = ROOT / "cfg" / cfg_name
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    blob = x.numpy()
    cv = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    names = cv.getUnconnectedOutLayersNames()

    def run_cv():
        cv.setInput(blob)
        cv.forward(names)

    def ours(precision, winograd=None):
        net = darknet_py.load(cfg, weights, width=size, height=size, precision=precision, device="cpu")

        def run():
            tuner.configure(winograd=winograd)
            try:
                with torch.inference_mode():
                    net(x)
            finally:
                tuner.configure(winograd=None)
        return net, run
    exact, run_exact = ours("exact")
    _, run_direct = ours("exact", winograd="0")
    _, run_fast = ours("fast")
    fns = {"OpenCV": run_cv}
    onnx_path = Path(tmp) / f"{name}.onnx"
    export_onnx(exact, onnx_path)
    for peer, make in peers(onnx_path, threads).items():
        run = make()
        fns[peer] = lambda run=run: run(blob)
    fns.update({"exact": run_exact, "exact, Winograd off": run_direct, "fast": run_fast})
    rounds = round_times(fns, repeat)
    results = {k: statistics.median(v) for k, v in rounds.items()}
    ratios = {k: paired_ratio(v, rounds["OpenCV"]) for k, v in rounds.items()}
    cells = "  ".join(f"{k} {results[k]:.3f} s ({ratios[k][0]:.2f} x, {ratios[k][1]:.2f}-{ratios[k][2]:.2f})"
                      for k in rounds if k != "OpenCV")
    print(f"{name} batch {batch}: OpenCV {results['OpenCV']:.3f} s; {cells}", flush=True)
    print(f"  exact paths (3x3 stride-1 layers; the rest direct): {layer_paths(exact)}", flush=True)
    return results


SETUP = """
import statistics, sys, time
import torch
t0 = time.perf_counter()
import darknet_py
torch.set_num_threads({threads})
imported = time.perf_counter()
net = darknet_py.load("{cfg}", "{weights}", precision="exact")
loaded = time.perf_counter()
darknet_py.detect(net, "{image}")
first = time.perf_counter()
steady = []
for _ in range(5):
    s = time.perf_counter()
    darknet_py.detect(net, "{image}")
    steady.append(time.perf_counter() - s)
forward = []
x = torch.rand(1, 3, 416, 416)
for _ in range(5):
    s = time.perf_counter()
    with torch.inference_mode():
        net(x)
    forward.append(time.perf_counter() - s)
print(imported - t0, loaded - imported, first - loaded, statistics.median(steady), statistics.median(forward))
"""


def bench_setup(weights, threads):
    """First ``detect()`` against a steady one, in a fresh process (kernel and tuning caches as
    this host has them)."""
    code = SETUP.format(threads=threads, cfg=ROOT / "cfg" / "yolov3-tiny.cfg", weights=weights,
                        image=ROOT / "data" / "images" / "dog.jpg")
    if not (ROOT / "data" / "images" / "dog.jpg").exists():
        print("setup: data/images/dog.jpg missing; skipped")
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"setup: failed: {out.stderr.strip()[-500:]}")
        return
    imported, loaded, first, steady, forward = map(float, out.stdout.split()[-5:])
    print(f"setup, yolov3-tiny 416 exact, fresh process: import {imported:.2f} s, load {loaded:.3f} s, "
          f"first detect() {first:.3f} s, steady detect() {steady:.3f} s (forward {forward:.3f} s): "
          f"the first costs {first - steady:+.3f} s more")


def bench_load(weights, repeat):
    import numpy as np

    import darknet_py
    net = darknet_py.Darknet(ROOT / "cfg" / "yolov3.cfg", init=False)
    times = median_times({"numpy": lambda: np.fromfile(weights, dtype=np.float32),
                          "ours": lambda: net.load_weights(weights)}, repeat)
    plain, ours = times["numpy"], times["ours"]
    size = Path(weights).stat().st_size / 1e6
    print(f"load {size:.0f} MB weights: numpy.fromfile {plain:.3f} s, darknet_py {ours:.3f} s "
          f"({ours / plain:.2f} x)")


def main():
    args = parse_args()
    reexec_for_isa(args)
    sys.path.insert(0, str(ROOT))
    import cv2
    import torch

    from darknet_py.synthetic import write_random_weights
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    describe_cpu(args.threads)
    if args.keep_freed_memory:
        from darknet_py.memory import keep_freed_memory
        print(f"keep_freed_memory(): {keep_freed_memory()} (for every runtime in this process)")
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = {name: Path(tmp) / f"{name}.weights" for name in ("yolov3-tiny.cfg", "yolov3.cfg")}
        for name, path in weights.items():
            write_random_weights(ROOT / "cfg" / name, path, seed=1)
        for model in args.models:
            for batch in (1,) if args.quick else (1, 8):
                bench_model(model, batch, weights[MODELS[model][0]], args.repeat, args.threads, tmp)
        if not args.no_setup:
            bench_setup(weights["yolov3-tiny.cfg"], args.threads)
        if "yolov3-416" in args.models:
            bench_load(weights["yolov3.cfg"], args.repeat)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
