"""Against outputs the original Darknet C code computed (../shared/darknet/oracle)."""
import json

import numpy as np
import pytest
import torch

import darknet_py

from conftest import CFG, ORACLE

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def tiny_dog():
    data = np.load(ORACLE / "tiny_dog.npz")
    meta = json.loads(str(data["meta"]))
    net = darknet_py.load(CFG / meta["cfg"], ORACLE / "tiny_dog.weights")
    return net, data


def test_letterbox_reproduces_darknets_input():
    data = np.load(ORACLE / "tiny_dogpng.npz")
    image = darknet_py.load_image(ORACLE / "dog.png")
    assert image.shape == (3, 576, 768) and image.dtype == np.float32
    boxed = darknet_py.letterbox(image, 416, 416)
    assert np.abs(boxed - data["input"]).max() <= 1e-6
    as_tensor = darknet_py.letterbox(torch.from_numpy(image), 416, 416)
    assert torch.equal(as_tensor, torch.from_numpy(boxed))


@pytest.mark.parametrize("case", ["tiny_dog.npz", "tiny_dogpng.npz"])
def test_head_outputs_equal_darknets(tiny_dog, case):
    net, _ = tiny_dog
    data = np.load(ORACLE / case)
    with torch.no_grad():
        outs = net(torch.from_numpy(data["input"])[None])
    assert len(outs) == 2
    for out, key in zip(outs, ["out0", "out1"]):
        assert out.shape[1:3] == (3, 85)  # (batch, anchors, 5 + classes, h, w) as l.output
        diff = np.abs(out.numpy().ravel() - data[key]).max()
        print(f"{case} {key}: max |diff| = {diff:.2e}")
        assert diff <= 1e-4


def test_every_layer_matches_darknets_statistics(tiny_dog):
    """Per layer: shape, sum and mean |x| as Darknet logged them (finds the first divergence)."""
    net, data = tiny_dog
    x = torch.from_numpy(data["input"])[None]
    with torch.no_grad():
        outs = net.run(x, range(len(net.layers)))
    assert len(data["layers"]) == len(net.layers)
    for row in data["layers"]:
        i = int(row[0])
        out = outs[i]
        if net.specs[i].is_head:  # Darknet logs l.output of heads with the activations applied
            out = out.reshape(1, -1, *out.shape[-2:])
        c, h, w = (int(v) for v in row[2:5])
        assert tuple(out.shape[1:]) == (c, h, w), i
        flat = out.double().flatten()
        assert flat.sum().item() == pytest.approx(row[5], rel=1e-4, abs=1e-2), i
        assert flat.abs().mean().item() == pytest.approx(row[6], rel=1e-5), i
        assert np.allclose(flat[:4].numpy(), row[7:11], atol=1e-5), i
