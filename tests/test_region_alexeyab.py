"""[region] detection under fork=alexeyab against a literal transcription of AlexeyAB's C:
forward_region_layer (flatten, logistic on objectness, softmax over classes or raw classes),
get_region_boxes (cell-major list, get_region_box with its own logistic, classfix=-1),
custom_get_region_detections (objectness 1) and its correct_yolo_boxes (letter or not).
pjreddie's [region] keeps its own path (tests/test_detect.py, tests/test_darknet_oracle.py)."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from darknet_py.detect import detect, network_boxes
from darknet_py.errors import CfgError
from darknet_py.model import Darknet

from reference.yolo_layer_alexeyab import c_correct_yolo_boxes

F32 = np.float32
ANCHORS = [0.57273, 0.677385, 1.87446, 2.06253]
CLASSES, N = 3, 2


def write_cfg(tmp_path, fork="alexeyab", region_extra=""):
    """A 40 x 24 network whose [region] sees a 20 x 12 grid (grid and network sizes differ)."""
    path = tmp_path / f"region-{fork}.cfg"
    path.write_text(f"[net]\nwidth=40\nheight=24\nchannels=3\nfork={fork}\n\n"
                    f"[maxpool]\nsize=2\nstride=2\n\n[convolutional]\nfilters={N * (5 + CLASSES)}\nsize=1\n"
                    f"activation=linear\n\n[region]\nanchors={','.join(map(str, ANCHORS))}\n"
                    f"classes={CLASSES}\nnum={N}\n{region_extra}")
    return path


# --- AlexeyAB's C, transcribed --------------------------------------------------------------
def logistic_activate(x):
    return F32(1) / (F32(1) + np.exp(-F32(x)))  # 1.f/(1.f + expf(-x))


def c_softmax(buf, start, n):
    """blas.c softmax(input, n, temp=1, output, stride=1), in place."""
    largest = -np.finfo(F32).max
    for i in range(n):
        if buf[start + i] > largest:
            largest = buf[start + i]
    total = F32(0)
    for i in range(n):
        e = F32(math.exp(float(F32(buf[start + i] / F32(1)) - F32(largest / F32(1)))))
        total = F32(total + e)
        buf[start + i] = e
    for i in range(n):
        buf[start + i] = F32(buf[start + i] / total)


def c_forward_region(raw, softmax):
    """forward_region_layer, batch 1, not training: memcpy, flatten(.., forward=1), activations."""
    size = CLASSES + 5
    h, w = raw.shape[1:]
    x = raw.reshape(-1).astype(F32)
    layers = size * N
    out = np.empty_like(x)
    for c in range(layers):           # flatten: swap[i*layers + c] = x[c*size + i]
        for i in range(w * h):
            out[i * layers + c] = x[c * w * h + i]
    for i in range(h * w * N):
        out[size * i + 4] = logistic_activate(out[size * i + 4])
    if softmax:
        for i in range(h * w * N):
            c_softmax(out, size * i + 5, CLASSES)
    return out


def c_get_region_box(x, biases, n, index, i, j, w, h):
    bx = F32(F32(i + logistic_activate(x[index + 0])) / F32(w))
    by = F32(F32(j + logistic_activate(x[index + 1])) / F32(h))
    bw = F32(math.exp(float(x[index + 2])) * float(biases[2 * n]) / w)   # DOABS
    bh = F32(math.exp(float(x[index + 3])) * float(biases[2 * n + 1]) / h)
    return [bx, by, bw, bh]


def c_get_region_boxes(pred, w, h, thresh, classfix, biases):
    """get_region_boxes(l, 1, 1, thresh, probs, boxes, only_objectness=0, map=0)."""
    boxes, probs = [], []
    for i in range(w * h):
        row, col = i // w, i % w
        for n in range(N):
            index = i * N + n
            scale = pred[index * (CLASSES + 5) + 4]
            if classfix == -1 and scale < .5:
                scale = F32(0)
            boxes.append(c_get_region_box(pred, biases, n, index * (CLASSES + 5), col, row, w, h))
            row_probs = []
            for j in range(CLASSES):
                prob = F32(scale * pred[index * (CLASSES + 5) + 5 + j])
                row_probs.append(prob if prob > thresh else F32(0))
            probs.append(row_probs)
    return boxes, probs


def c_custom_get_region_detections(raw, im_w, im_h, netw, neth, thresh, softmax, classfix, letter):
    pred = c_forward_region(raw, softmax)
    h, w = raw.shape[1:]
    boxes, probs = c_get_region_boxes(pred, w, h, F32(thresh), classfix, np.array(ANCHORS, F32))
    boxes = c_correct_yolo_boxes(boxes, im_w, im_h, netw, neth, letter)
    return np.array(boxes, F32), np.ones(len(boxes), F32), np.array(probs, F32)  # objectness = 1


# --- the tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("softmax", [0, 1])
@pytest.mark.parametrize("classfix", [0, -1])
@pytest.mark.parametrize("letter", [True, False])
@pytest.mark.parametrize("image", [(50, 30), (17, 40)])
def test_detections_match_the_c(tmp_path, softmax, classfix, letter, image):
    net = Darknet(write_cfg(tmp_path, region_extra=f"softmax={softmax}\nclassfix={classfix}\n")).eval()
    region = net.layers[-1]
    assert region.settings.alexeyab
    raw = torch.from_numpy(np.random.default_rng(softmax * 4 + classfix + 2).normal(0, 2, (1, 16, 12, 20))
                           .astype(F32))
    with torch.no_grad():
        out = region(raw)
    thresh = 0.2
    ours = network_boxes(net, [out], 0, image[0], image[1], thresh, letter)
    boxes, objectness, probs = c_custom_get_region_detections(raw[0].numpy(), *image, 40, 24, thresh, softmax,
                                                              classfix, letter)
    assert len(ours) == 12 * 20 * N
    np.testing.assert_array_equal(ours.objectness, objectness)
    # a few ulps: torch's logistic and softmax, and anchors held as double here, float in C
    np.testing.assert_allclose(ours.boxes, boxes, rtol=4e-7, atol=2.5e-7)
    np.testing.assert_array_equal(ours.probs > 0, probs > 0)
    np.testing.assert_allclose(ours.probs, probs, rtol=4e-7, atol=0)
    assert (probs > 0).any() and (probs == 0).any()
    if not softmax:  # AlexeyAB leaves the classes raw: some products exceed 1
        assert (probs > 1).any()


def test_pjreddie_region_lists_anchor_major_with_objectness(tmp_path):
    """The same input under fork=pjreddie: another order, objectness below thresh is 0 and the
    class scores go through the logistic."""
    raw = torch.from_numpy(np.random.default_rng(0).normal(0, 2, (1, 16, 12, 20)).astype(F32))
    results = {}
    for fork in ("alexeyab", "pjreddie"):
        net = Darknet(write_cfg(tmp_path, fork)).eval()
        with torch.no_grad():
            results[fork] = network_boxes(net, [net.layers[-1](raw)], 0, 40, 24, 0.2, True)
    ab, pj = results["alexeyab"], results["pjreddie"]
    assert (ab.objectness == 1).all() and (pj.objectness == 0).any()
    assert not np.allclose(ab.boxes, pj.boxes)
    # box (cell i, anchor n) is AlexeyAB's i*N + n and pjreddie's n*w*h + i; the centres agree
    cell, n = np.divmod(np.arange(12 * 20 * N), N)
    np.testing.assert_allclose(ab.boxes[:, :2], pj.boxes[n * 240 + cell, :2], rtol=1e-6)


def test_detect_runs_end_to_end(tmp_path):
    net = Darknet(write_cfg(tmp_path, region_extra="softmax=1\n")).eval()
    image = np.random.default_rng(1).random((3, 30, 50), dtype=F32)
    det = detect(net, image, thresh=0.2)
    assert len(det) == 12 * 20 * N and (det.objectness == 1).all()


def test_alexeyab_region_needs_four_coords(tmp_path):
    path = tmp_path / "coords.cfg"
    path.write_text("[net]\nwidth=8\nheight=8\nchannels=3\nfork=alexeyab\n[convolutional]\nfilters=9\nsize=1\n"
                    "[region]\ncoords=5\nclasses=3\nnum=1\n")
    with pytest.raises(CfgError, match="coords=4") as e:
        Darknet(path)
    assert e.value.line == 10 and e.value.option == "coords"
    Darknet(path, overrides=["fork=pjreddie"])  # pjreddie reads mask coordinates


def test_background_is_not_read_by_alexeyab(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        net = Darknet(write_cfg(tmp_path, region_extra="background=1\n"))
    assert "background" in caplog.text and "not read by AlexeyAB" in caplog.text
    assert not net.layers[-1].background
