"""Winograd (native/winograd.c) against oneDNN's direct convolution, per layer shape, as the tuner sees it.

    python benchmarks/winograd_layers.py [--repeat 9] [--threads N] [--batch 8]

For the 3x3 stride-1 shapes of yolov3-tiny and yolov3 at 416 (and 608), builds a
[convolutional] layer as the network does (exact mode: Darknet's batch norm after the
convolution, leaky) and times its inference paths (direct, and each Winograd variant: tile groups sized for L2 or
wide), interleaved, in one process (the fastest
of ``--repeat`` runs, as the tuner takes it). Prints direct's time and the best variant's, the ratio, what the
tuner's rule (``tuner.decide``) picks from these times, the time that choice saves against
direct, and what this host's tuning cache holds for the shape, if anything (provisional: timed
while other processes or noise disturbed it, to be timed again).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darknet_py import native, tuner  # noqa: E402
from darknet_py.layers.conv import Convolutional  # noqa: E402
from darknet_py.registry import Shape  # noqa: E402

SHAPES = [  # side, in channels, out channels: yolov3-tiny and yolov3 at 416, then yolov3 at 608
    (416, 3, 16), (208, 16, 32), (104, 32, 64), (52, 64, 128), (26, 128, 256), (13, 256, 512),
    (13, 512, 1024), (416, 3, 32), (208, 32, 64), (104, 64, 128), (52, 128, 256), (26, 256, 512),
    (608, 3, 32), (304, 32, 64), (152, 64, 128), (76, 128, 256), (38, 256, 512), (19, 512, 1024),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", choices=("exact", "fast"), default="exact",
                        help="fast: batch norm folded, bfloat16 where the CPU has it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["DARKNET_PY_WINOGRAD"] = "force"  # build both paths; the choice below is from these times
    fast = args.precision == "fast"
    dtype = torch.bfloat16 if fast and torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    cache = tuner.Tuner(tuner.cache_file())
    print(f"CPU {native.cpu_model()}; kernel flags {' '.join(native.flags())}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.precision} ({str(dtype)[6:]}), batch {args.batch}; "
          f"milliseconds, fastest of {args.repeat} interleaved")
    print(f"{'shape':22s} {'oneDNN':>8s} {'Winograd':>9s} {'ratio':>6s}  {'picks':13s} {'saves':>7s}  cached")
    total_direct = total_chosen = 0.0
    generator = torch.Generator().manual_seed(0)
    for side, c, k in SHAPES:
        layer = Convolutional(c, k, 3, 1, 1, 1, 1, "leaky").eval()
        layer.reset_parameters()
        shape = Shape(c, side, side)
        layer.prepare_inference(dtype, fast, shape)
        x = torch.rand(args.batch, c, side, side, generator=generator).to(dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        def winograd(variant):
            def run():
                layer.winograd.variant = variant
                return layer._winograd(x)
            return run
        paths = {tuner.DIRECT: lambda: layer._direct(x)}
        for variant in layer.winograd.variants(args.batch, side, side, args.threads):
            paths[variant] = winograd(variant)
        with torch.inference_mode():
            decision = tuner.decide(tuner.measure(paths, repeats=args.repeat, budget_s=float("inf")))
        times = dict(decision.fastest)
        direct = times.pop(tuner.DIRECT)
        best = min(times, key=times.get)
        wino = times[best]
        pick = decision.choice + f" (provisional: others {decision.others:.2f}, spread {decision.spread:.2f})" * decision.provisional
        chosen = decision.fastest[decision.choice]
        total_direct, total_chosen = total_direct + direct, total_chosen + chosen
        entry = cache.choices.get(layer.tuning_key(shape, dtype), {}) if args.batch == 1 else {}
        cached = entry.get("choice", "") + " (provisional)" * bool(entry.get("provisional"))
        print(f"{side:3d}x{side:<3d} {c:4d}->{k:<4d}        {direct * 1e3:8.2f} {wino * 1e3:9.2f} {wino / direct:6.2f}  "
              f"{pick:13s} {(direct - chosen) * 1e3:7.2f}  {cached or '-'}", flush=True)
    print(f"all shapes: direct {total_direct * 1e3:.1f} ms, as picked {total_chosen * 1e3:.1f} ms "
          f"({total_chosen / total_direct:.2f} x)")


if __name__ == "__main__":
    main()
