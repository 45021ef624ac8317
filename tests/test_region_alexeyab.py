"""[region] detection under fork=alexeyab against a literal transcription of AlexeyAB's C
(reference/region_layer_alexeyab.py):
forward_region_layer (flatten, logistic on objectness, softmax over classes or raw classes),
get_region_boxes (cell-major list, get_region_box with its own logistic, classfix=-1),
custom_get_region_detections (objectness 1) and its correct_yolo_boxes (letter or not).
pjreddie's [region] keeps its own path (tests/test_detect.py, tests/test_darknet_oracle.py)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from darknet_py.detect import detect, network_boxes
from darknet_py.errors import CfgError
from darknet_py.model import Darknet

from reference.region_layer_alexeyab import c_custom_get_region_detections

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
                                                              classfix, letter, ANCHORS, CLASSES)
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
