"""Whole updates through Trainer.update against transcriptions of Darknet's C: a [region] head
(yolov2-tiny-voc's) whose deltas feed the head convolution's update, and ``stopbackward``
(backward_network stops there; update_network still decays the frozen weights)."""
from __future__ import annotations

import numpy as np
import torch

from darknet_py.train.trainer import Trainer

from conftest import CFG
from reference.pjreddie_heads import c_forward_region
from reference.update import update_convolutional_layer

F32 = np.float32


def conv_state(layer):
    state = {name: getattr(layer, name).detach().numpy().astype(F32).copy() for name in ("weights", "biases")}
    if layer.batch_normalize:
        state["scales"] = layer.scales.detach().numpy().astype(F32).copy()
    return state


def random_truths(gen, batch, per_image, classes):
    truths = torch.zeros(batch, 8, 5)
    for b in range(batch):
        for t in range(per_image):
            w, h = 0.1 + 0.5 * torch.rand(2, generator=gen)
            x, y = w / 2 + (1 - w) * torch.rand(1, generator=gen), h / 2 + (1 - h) * torch.rand(1, generator=gen)
            truths[b, t] = torch.tensor([x.item(), y.item(), w.item(), h.item(),
                                         float(torch.randint(classes, (1,), generator=gen))])
    return truths


def test_region_update_is_darknets():
    """yolov2-tiny-voc at 96 x 96 (3 x 3 cells), 2 images in one mini-batch, seen 2 (< 12800: the
    prior toward each anchor is on): the head convolution's update is update_convolutional_layer
    of forward_region_layer's deltas (transcribed) times its input, with decay."""
    trainer = Trainer.from_cfg(CFG / "yolov2-tiny-voc.cfg", seed=3, overrides=[
        "width=96", "height=96", "batch=2", "subdivisions=1", "burn_in=0", "max_batches=10"])
    net = trainer.net
    head, region = net.layers[-2], net.layers[-1]
    seen = {}
    head.register_forward_hook(lambda m, inputs, out: seen.__setitem__("input", inputs[0].detach().clone()))
    region.register_forward_hook(lambda m, inputs, out: seen.__setitem__("x", out.detach().clone()))
    gen = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 96, 96, generator=gen)
    truths = random_truths(gen, 2, 3, region.classes)
    before = conv_state(head)
    loss = trainer.update(images, truths)

    s = region.settings
    x = seen["x"]
    delta, stats, _ = c_forward_region(x, torch.cat([truths, torch.ones(2, 8, 1)], 2),
                                       [v for a in region.anchors for v in a], region.classes, region.softmax,
                                       region.background, s.thresh, s.rescore, s.bias_match, 2, s.max_boxes,
                                       s.coord_scale, s.object_scale, s.noobject_scale, s.class_scale)
    assert abs(loss - stats.cost / 2) <= 1e-5 * loss  # one cost layer, 2 images
    delta = delta.view(2, -1, 3, 3)  # (batch, filters, h, w) as the head convolution's output
    inputs = seen["input"].double()
    expected = {name: value.copy() for name, value in before.items()}
    expected["bias_updates"] = delta.sum((0, 2, 3)).numpy().astype(F32)
    # backward_convolutional_layer: weight_updates += delta * im2col(input) (a 1x1 convolution here)
    expected["weight_updates"] = torch.einsum("bfyx,bcyx->fc", delta, inputs).numpy().astype(F32).reshape(
        before["weights"].shape)
    update_convolutional_layer(expected, trainer.last_record.rate, trainer.cfg.momentum, trainer.cfg.decay,
                               trainer.batch)
    for name in ("biases", "weights"):
        got, want, start = getattr(head, name).detach().numpy(), expected[name], before[name]
        change = np.abs(want - start).max()
        assert change > 0
        assert np.abs(got - want).max() <= 1e-4 * change, (name, np.abs(got - want).max() / change)


def stopbackward_cfg(tmp_path):
    cfg = tmp_path / "frozen.cfg"
    cfg.write_text("""[net]
batch=4
subdivisions=2
width=32
height=32
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.01
burn_in=0
max_batches=10

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky
stopbackward=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 8,9, 14,12
classes=2
num=3
""")
    return cfg


def test_stopbackward_is_backward_network_then_update_network(tmp_path):
    """Layers 0 and 1 (stopbackward=1) get no gradient: over two updates their weights follow
    update_convolutional_layer with zero gradient sums (decay, then momentum of the decay), their
    biases and scales stay, and their rolling statistics still move; layer 2 trains."""
    trainer = Trainer.from_cfg(stopbackward_cfg(tmp_path), seed=1)
    net = trainer.net
    gen = torch.Generator().manual_seed(2)
    frozen = {i: conv_state(net.layers[i]) for i in (0, 1)}
    for state in frozen.values():
        state.update(weight_updates=np.zeros_like(state["weights"]), bias_updates=np.zeros_like(state["biases"]),
                     scale_updates=np.zeros_like(state["scales"]))
    rolling = net.layers[0].rolling_mean.clone()
    start_weights = frozen[0]["weights"].copy()
    trained = net.layers[2].weights.detach().clone()
    for _ in range(2):
        trainer.update(torch.rand(4, 3, 32, 32, generator=gen), random_truths(gen, 4, 2, 2))
        for state in frozen.values():
            update_convolutional_layer(state, trainer.last_record.rate, trainer.cfg.momentum, trainer.cfg.decay,
                                       trainer.batch)
    for i, want in frozen.items():
        layer = net.layers[i]
        assert np.array_equal(layer.biases.detach().numpy(), want["biases"])
        assert np.array_equal(layer.scales.detach().numpy(), want["scales"])
        np.testing.assert_allclose(layer.weights.detach().numpy(), want["weights"], rtol=1e-6, atol=1e-9)
    assert not np.array_equal(frozen[0]["weights"], start_weights)  # decay did move them
    assert not torch.equal(net.layers[0].rolling_mean, rolling)
    assert not torch.equal(net.layers[2].weights, trained)
