"""Winograd (native/winograd.c) against oneDNN's direct convolution, per layer shape, in one process.

    python benchmarks/winograd_layers.py [--repeat 9] [--threads N]

For the 3x3 stride-1 shapes of yolov3 at 416 and 608 (batch 1 and 8) and a few off-block ones,
prints the median time of oneDNN (prepacked, as darknet_py's direct path runs it) and of the
Winograd kernel, in float32 and with bfloat16 input/output against oneDNN's bfloat16, the
ratio, and what ``use_winograd`` picks. The ``MIN_SIDE`` thresholds in layers/winograd.py
come from this table; rerun it on a new CPU before changing them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darknet_py.layers.winograd import Winograd, use_winograd  # noqa: E402

SHAPES = [  # batch, side, in channels, out channels
    (1, 104, 64, 128), (1, 52, 128, 256), (1, 26, 256, 512), (1, 13, 512, 1024),
    (1, 76, 128, 256), (1, 38, 256, 512), (1, 19, 512, 1024),
    (8, 52, 128, 256), (8, 26, 256, 512), (8, 13, 512, 1024),
    (1, 27, 100, 70), (1, 12, 64, 64), (1, 9, 64, 64),
]


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = [torch.float32]
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes.append(torch.bfloat16)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; milliseconds, median of {args.repeat}")
    generator = torch.Generator().manual_seed(0)
    for batch, side, c, k in SHAPES:
        x32 = torch.randn(batch, c, side, side, generator=generator)
        w32 = torch.randn(k, c, 3, 3, generator=generator) / (9 * c) ** 0.5
        row = [f"batch {batch} {side:3d}x{side:<3d} {c:4d}->{k:<4d}"]
        for dtype in dtypes:
            x = x32.to(dtype).contiguous(memory_format=torch.channels_last)
            w = w32.to(dtype).contiguous(memory_format=torch.channels_last)
            geometry = ([1, 1], [1, 1], [1, 1], 1)
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), *geometry, [batch, c, side, side])
            winograd = Winograd(w32, dtype)
            with torch.inference_mode():
                direct = median_time(lambda: torch.ops.mkldnn._convolution_pointwise(
                    x, packed, None, *geometry, "none", [], ""), args.repeat)
                wino = median_time(lambda: winograd(x, None, None, "linear"), args.repeat)
            pick = "winograd" if use_winograd(c, k, side, side, dtype) else "direct"
            row.append(f"{str(dtype)[6:]}: oneDNN {direct * 1e3:7.2f}  Winograd {wino * 1e3:7.2f} "
                       f"({wino / direct:.2f} x, uses {pick})")
        print("   ".join(row), flush=True)


if __name__ == "__main__":
    main()
