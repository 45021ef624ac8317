"""OpenCV's DNN module as a second, independent oracle for darknet_py.

``cv2.dnn.readNetFromDarknet`` parses the same .cfg and .weights files with its own code (its own
cfg reader, weights layout, conv/route/shortcut/upsample/reorg/maxpool layers). For each detector
below, the output of the convolution feeding every [yolo]/[region] head must agree with
darknet_py's within ``TOL`` (absolute) on identical input, non-square so that a width/height
mix-up shows.

Two adjustments are made to the random weights of ``weights_for``, written out here with numpy
(not with darknet_py). Numbers below: yolov3, 352x288, the 11x9 head, OpenCV 4.14.

* Batch-norm epsilon. Darknet (and darknet_py) divide by ``sqrt(var) + 1e-6``; OpenCV's importer
  takes eps=1e-6 but divides by ``sqrt(var + 1e-6)``. On the undamped weights that alone puts
  OpenCV 8.3e-4 away from darknet_py run in float64. OpenCV is therefore given a copy whose
  rolling variances are ``(sqrt(var) + 1e-6)**2 - 1e-6``, so that it divides by Darknet's
  denominator (to float32 rounding, < 3e-8 relative). With the damping below the uncompensated
  gap would be ~2e-5, inside ``TOL``: this test does not pin the epsilon formula (an epsilon of
  1e-3 instead of 1e-6 does fail it, by 4e-2); the compensation keeps the budget for real errors.

* Residual growth. With the synthetic weights (weights ~ N(0, 1/fan_in), BN statistics not
  matched to the data), every [shortcut] adds a branch of comparable size; after 23 residual
  blocks yolov3's head reaches max |x| 71 (std 16). There float32 rounding alone separates two
  correct implementations by about 1e-4: darknet_py float32 vs float64 7.6e-5, OpenCV
  (compensated) vs darknet_py float64 7.6e-5, OpenCV vs darknet_py float32 1.01e-4. So the last
  conv of each residual branch (the layer just before a [shortcut]) gets its BN scales and biases
  (weights and biases, without BN) multiplied by ``RESIDUAL_DAMPING``; leaky and linear are
  positively homogeneous, so this scales the branch by that factor. Head outputs are then of
  order one (max |x| 2.4, std 0.6) and the two sides agree to 3.6e-6, a margin of about 30 under
  ``TOL``, while real errors are far above it (route inputs concatenated in reverse order:
  0.5 to 0.8; upsample output shifted by one column: 0.1). Both sides load the same damped
  weights; nets without [shortcut] (yolov2, yolov3-tiny) are unchanged.

OpenCV's Winograd convolution (4.7+) is switched off so that it runs plain direct convolution;
its effect here is small either way (within 2x).

AlexeyAB's yolov4, yolov4-tiny and yolov4-csp (route groups, mish, SPP maxpools, shortcuts) run
at a smaller non-square size with ``fork=alexeyab``, whose batch norm divides by
``sqrt(var + 1e-5)``; OpenCV gets rolling variances ``var + 1e-5 - 1e-6`` to match.
"""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest
import torch

import darknet_py

from conftest import CFG

cv2 = pytest.importorskip("cv2")
if not hasattr(getattr(cv2, "dnn", None), "readNetFromDarknet"):
    pytest.skip(f"OpenCV {cv2.__version__} has no cv2.dnn.readNetFromDarknet", allow_module_level=True)

WIDTH, HEIGHT = 352, 288  # non-square; grids 11x9, 22x18, 44x36 (odd, as 416 gives 13x13)
TOL = 1e-4
RESIDUAL_DAMPING = 0.5
DARKNET_BN_EPS = 1e-6  # pjreddie's normalize_cpu: (x - mean) / (sqrt(var) + .000001f)
OPENCV_BN_EPS = 1e-6  # darknet_io.cpp setBatchNorm: eps=1E-6, used as 1 / sqrt(var + eps)
ALEXEYAB_BN_EPS = 1e-5  # AlexeyAB's normalize_kernel / cuDNN: (x - mean) / sqrt(var + .00001f)

CASES = ["yolov3.cfg", "yolov3-spp.cfg", "yolov2.cfg", "yolov3-tiny.cfg"]
ALEXEYAB_CASES = ["alexeyab/yolov4-tiny.cfg", "alexeyab/yolov4.cfg", "alexeyab/yolov4-csp.cfg"]
ALEXEYAB_SIZE = (160, 96)  # non-square; grids 5x3, 10x6, 20x12


# --- A minimal, independent reading of the cfg and of the weights layout ------------------------

def _sections(cfg_path):
    """[(kind, {key: value})] of a Darknet cfg, [net] included, in file order."""
    sections = []
    for line in cfg_path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            sections.append((line[1:line.index("]")], {}))
        else:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    return sections


def _header_floats(path):
    """Length of the header in 4-byte units (16 or 20 bytes, as Darknet's parser.c decides)."""
    with open(path, "rb") as f:
        major, minor = struct.unpack("<ii", f.read(8))
    seen_is_int64 = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    return (20 if seen_is_int64 else 16) // 4


def _conv_blobs(layers, channels, start):
    """{layer index: (offset, filters, batch_normalize, weights)} in float units, and the end.

    Darknet's file order per [convolutional]: biases[n], then if batch_normalize scales[n],
    rolling_mean[n], rolling_variance[n], then weights[n * c/groups * size * size].
    """
    convs, out_channels, pos, c = {}, [], start, channels
    for i, (kind, opts) in enumerate(layers):
        if kind in ("convolutional", "conv"):
            n, size = int(opts.get("filters", 1)), int(opts.get("size", 1))
            groups, bn = int(opts.get("groups", 1)), int(opts.get("batch_normalize", 0))
            weights = n * (c // groups) * size * size
            convs[i] = (pos, n, bn, weights)
            pos += n * (4 if bn else 1) + weights
            c = n
        elif kind == "route":
            c = sum(out_channels[j if j >= 0 else i + j] for j in map(int, opts["layers"].split(",")))
            c //= int(opts.get("groups", 1))
        elif kind == "reorg":
            c *= int(opts.get("stride", 1)) ** 2
        elif kind not in ("shortcut", "upsample", "maxpool", "yolo", "region"):
            raise NotImplementedError(f"[{kind}] at layer {i}: extend _conv_blobs")
        out_channels.append(c)
    return convs, pos


def _derived_weights(cfg_path, weights_path, folder, fork="pjreddie"):
    """(weights both sides load, the BN-compensated copy OpenCV loads); see the module docstring."""
    sections = _sections(cfg_path)
    layers = sections[1:]
    head = _header_floats(weights_path)
    raw = np.fromfile(weights_path, dtype="<f4")
    convs, end = _conv_blobs(layers, int(sections[0][1].get("channels", 3)), head)
    assert end == raw.size, f"{weights_path.name}: {raw.size} floats, the cfg layout needs {end}"

    shared = raw[head:].copy()  # body only; offsets below are shifted by ``head``
    for i, (kind, _) in enumerate(layers):
        if kind == "shortcut":
            assert i - 1 in convs, f"layer {i - 1} before the [shortcut] at {i} is not a conv"
            pos, n, bn, weights = convs[i - 1]
            pos -= head
            shared[pos:pos + n] *= RESIDUAL_DAMPING  # biases
            if bn:
                shared[pos + n:pos + 2 * n] *= RESIDUAL_DAMPING  # scales
            else:
                shared[pos + n:pos + n + weights] *= RESIDUAL_DAMPING

    for_opencv = shared.copy()
    for pos, n, bn, _ in convs.values():
        if bn:
            var = for_opencv[pos - head + 3 * n:pos - head + 4 * n]
            if fork == "alexeyab":
                var[:] = var.astype(np.float64) + ALEXEYAB_BN_EPS - OPENCV_BN_EPS
            else:
                var[:] = (np.sqrt(var.astype(np.float64)) + DARKNET_BN_EPS) ** 2 - OPENCV_BN_EPS

    with open(weights_path, "rb") as f:
        header = f.read(4 * head)
    paths = folder / f"{cfg_path.stem}-shared.weights", folder / f"{cfg_path.stem}-opencv.weights"
    for body, path in zip((shared, for_opencv), paths):
        path.write_bytes(header + body.astype("<f4").tobytes())
    return paths


# --- The comparison ------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg_name", CASES)
def test_head_convs_agree_with_opencv(cfg_name, weights_for, tmp_path):
    _compare_head_convs(cfg_name, weights_for, tmp_path, WIDTH, HEIGHT, "pjreddie")


@pytest.mark.parametrize("cfg_name", ALEXEYAB_CASES)
def test_alexeyab_head_convs_agree_with_opencv(cfg_name, weights_for, tmp_path):
    _compare_head_convs(cfg_name, weights_for, tmp_path, *ALEXEYAB_SIZE, "alexeyab")


def _compare_head_convs(cfg_name, weights_for, tmp_path, width, height, fork):
    cfg_path = CFG / cfg_name
    shared, for_opencv = _derived_weights(cfg_path, weights_for(cfg_name), tmp_path, fork)

    layers = _sections(cfg_path)[1:]
    heads = [i for i, (kind, _) in enumerate(layers) if kind in ("yolo", "region")]
    # The conv feeding a head has no BN. Linear: OpenCV's conv_<i> is its output. Logistic
    # (yolov4-csp, new_coords=1): OpenCV's separate Sigmoid layer, named logistic_<i + 1>.
    expected = {}
    for h in heads:
        kind, opts = layers[h - 1]
        assert kind == "convolutional" and int(opts.get("batch_normalize", 0)) == 0
        activation = opts.get("activation")
        assert activation in ("linear", "logistic")
        expected[h] = (f"conv_{h - 1}", "Convolution") if activation == "linear" else (f"logistic_{h}", "Sigmoid")

    x = np.random.default_rng(20240611).random((1, 3, height, width), dtype=np.float32)

    start = time.perf_counter()
    net = darknet_py.Darknet(cfg_path, width=width, height=height, init=False, overrides=[f"fork={fork}"])
    net.load_weights(shared)
    net.eval()
    assert net.heads == heads
    with torch.no_grad():
        ours = net.run(torch.from_numpy(x.copy()), [h - 1 for h in heads])
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    ocv = cv2.dnn.readNetFromDarknet(str(cfg_path), str(for_opencv))
    ocv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    ocv.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if hasattr(ocv, "enableWinograd"):
        ocv.enableWinograd(False)
    names = [expected[h][0] for h in heads]
    all_names = set(ocv.getLayerNames())
    for name, layer_type in (expected[h] for h in heads):
        assert name in all_names, f"OpenCV has no layer {name}"
        assert ocv.getLayer(name).type == layer_type
    ocv.setInput(x)
    theirs = ocv.forward(names)
    ocv_s = time.perf_counter() - start

    print(f"\n{cfg_name} {width}x{height} ({fork}): darknet_py {ours_s:.1f}s, OpenCV {cv2.__version__} {ocv_s:.1f}s")
    failures = []
    for h, name, other in zip(heads, names, theirs):
        mine = ours[h - 1].numpy()
        assert mine.shape == other.shape, f"layer {h - 1}: {mine.shape} vs OpenCV {other.shape}"
        assert np.isfinite(mine).all() and np.isfinite(other).all()
        diff = float(np.abs(mine.astype(np.float64) - other).max())
        print(f"  head {h} <- layer {h - 1} {tuple(mine.shape)}: max|x| {np.abs(mine).max():.3f}, "
              f"max abs diff {diff:.3e}")
        if not diff <= TOL:
            failures.append(f"layer {h - 1}: max abs diff {diff:.3e} > {TOL}")
    assert not failures, "; ".join(failures)
