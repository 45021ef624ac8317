"""Inference keeps activations channels-last from layer to layer on the CPU: the prepacked
oneDNN and Winograd paths take that layout only, so a layer that hands the next convolution
(b, c, h, w) order costs a copy, or a slower convolution. Upsample once did, and with it the
route after it: yolov3-tiny's 26x26 384->256 layer ran F.conv2d at twice Winograd's time."""
import pytest
import torch

import darknet_py
from darknet_py.layers.conv import Convolutional

from conftest import CFG


@pytest.mark.parametrize("name", ["yolov3-tiny.cfg", "yolov3.cfg"])
def test_every_convolution_receives_channels_last(name):
    net = darknet_py.load(CFG / name, None, width=96, height=96, device="cpu").eval()
    seen = {}

    def record(i):
        def hook(module, inputs):
            seen[i] = inputs[0].is_contiguous(memory_format=torch.channels_last)
        return hook
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Convolutional):
            layer.register_forward_pre_hook(record(i))
    with torch.inference_mode():
        net(torch.rand(1, 3, 96, 96))
    assert len(seen) == sum(isinstance(layer, Convolutional) for layer in net.layers)
    assert [i for i, ok in seen.items() if not ok] == []


def test_upsample_and_route_keep_the_layout_and_the_values():
    from darknet_py.layers.merge import Route
    from darknet_py.layers.resample import Upsample
    x = torch.rand(1, 5, 3, 4)
    up = Upsample(2, 1, False)
    nchw, nhwc = up(x), up(x.contiguous(memory_format=torch.channels_last))
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(nchw, nhwc)
    assert torch.equal(nchw, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    other = torch.rand(1, 3, 6, 8).contiguous(memory_format=torch.channels_last)
    assert Route(groups=1, group_id=0)(nhwc, other).is_contiguous(memory_format=torch.channels_last)
