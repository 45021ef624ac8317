"""[asff]: the fusion against a literal transcription, its weights layout, cfg errors, and
cfg/yolov3-asff.cfg built, round-tripped and trained."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import darknet_py
from darknet_py.errors import CfgError
from darknet_py.model import Darknet
from darknet_py.shapes import generate_shapes
from darknet_py.summary import layer_table
from darknet_py.synthetic import fill_random, write_random_weights
from darknet_py.train.trainer import Trainer, TrainOptions
from darknet_py.weights import expected_size

from conftest import CFG

# Three levels of a 40 x 24 input: 20 x 12 x 4, 10 x 6 x 4, 5 x 3 x 6 (odd sizes, and one
# level whose channels equal the next one's, so one upward path has no 1x1 convolution).
LEVELS = """[net]
width=40
height=24
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=6
size=3
stride=2
pad=1
activation=leaky
"""


def asff_net(tmp_path, options, seed=0):
    cfg = tmp_path / "asff.cfg"
    cfg.write_text(LEVELS + "\n[asff]\n" + options)
    net = Darknet(cfg, init=False)
    fill_random(net, seed)
    return net.eval()


# -- a literal transcription of the paper's ASFF, reading parameters in the documented file order

class FileOrder:
    """Takes each convolution's tensors off the layer's blob list, as a weights file stores them."""

    def __init__(self, blobs):
        self.blobs = list(blobs)

    def conv(self, bn):
        names = ["biases", "scales", "rolling_mean", "rolling_variance", "weights"] if bn else ["biases", "weights"]
        taken, self.blobs = self.blobs[:len(names)], self.blobs[len(names):]
        assert [b.name for b in taken] == names
        return {b.name: b.tensor.detach() for b in taken}


def conv_bn_leaky(x, p, stride=1):
    size = p["weights"].shape[-1]
    y = F.conv2d(x, p["weights"], None, stride, size // 2)
    view = (1, -1, 1, 1)
    y = (y - p["rolling_mean"].view(view)) / (p["rolling_variance"].sqrt().view(view) + 1e-6)
    return F.leaky_relu(y * p["scales"].view(view) + p["biases"].view(view), 0.1)


def literal_asff(xs, level, blobs):
    """``xs`` coarsest first; every level brought to ``level``, weighted by a softmax, expanded."""
    order = FileOrder(blobs)
    c = xs[level].shape[1]
    resized = []
    for k, x in enumerate(xs):  # rescaling convolutions, in level order
        if k < level:
            if x.shape[1] != c:
                x = conv_bn_leaky(x, order.conv(bn=True))
            resized.append(F.interpolate(x, scale_factor=2 ** (level - k), mode="nearest"))
        elif k == level:
            resized.append(x)
        elif k == level + 1:
            resized.append(conv_bn_leaky(x, order.conv(bn=True), stride=2))
        else:
            pooled = F.max_pool2d(x, 3, stride=2, padding=1)
            resized.append(conv_bn_leaky(pooled, order.conv(bn=True), stride=2))
    compressed = [conv_bn_leaky(r, order.conv(bn=True)) for r in resized]
    p = order.conv(bn=False)
    weights = F.softmax(F.conv2d(torch.cat(compressed, 1), p["weights"], p["biases"]), dim=1)
    fused = sum(r * weights[:, k:k + 1] for k, r in enumerate(resized))
    out = conv_bn_leaky(fused, order.conv(bn=True))
    assert not order.blobs, "the layer has more blobs than the documented layout"
    return out


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
def test_matches_literal_asff(tmp_path, level, grad):
    net = asff_net(tmp_path, f"from=-1,-2,-3\nlevel={level}\nfilters=5\ncompress=3\n", seed=level)
    x = torch.rand(2, 3, 24, 40)
    with torch.set_grad_enabled(grad):
        outs = net.run(x, [0, 1, 2, 3])
    xs = [outs[i].detach().float().contiguous() for i in (2, 1, 0)]
    expected = literal_asff(xs, level, net.layers[3].blobs())
    got = outs[3].detach().float()
    assert got.shape == expected.shape == (2, 5) + xs[level].shape[2:]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_two_levels_and_fast_precision(tmp_path):
    """Two levels (softmax over two); fast mode runs its inner convolutions in its own dtype."""
    net = asff_net(tmp_path, "from=-2,-3\nlevel=1\n", seed=4)
    assert net.specs[3].out == darknet_py.registry.Shape(4, 12, 20)
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        exact = net.run(x, [3])[3].float()
        net.set_precision("fast")
        fast = net.run(x, [3])[3].float()
    torch.testing.assert_close(fast, exact, rtol=0.05, atol=0.05)


def test_sync_group_reaches_every_inner_convolution(tmp_path):
    """The trainer's --sync-bn sets ``sync_group`` on each layer that has it."""
    layer = asff_net(tmp_path, "from=-1,-2,-3\nlevel=0\n").layers[3]
    group = object()
    layer.sync_group = group
    assert layer.sync_group is group and all(conv.sync_group is group for conv in layer.convs())


def test_parameter_count_and_flops_are_the_modules(tmp_path):
    """The planner's counts (before any module exists) equal the built module's tensors, and
    its FLOPs Darknet's 2 * weights * output cells of every inner convolution."""
    net = asff_net(tmp_path, "from=-1,-2,-3\nlevel=1\nfilters=7\ncompress=2\n")
    layer, spec = net.layers[3], net.specs[3]
    assert spec.n_params == sum(b.tensor.numel() for b in layer.blobs())
    cells = {}
    hooks = [conv.register_forward_hook(lambda m, i, o: cells.__setitem__(m, o.shape[2] * o.shape[3]))
             for conv in layer.convs()]
    with torch.no_grad():
        net(torch.rand(1, 3, 24, 40))
    for hook in hooks:
        hook.remove()
    assert spec.flops == sum(2.0 * conv.weights.numel() * cells[conv] for conv in layer.convs())


def test_summary_line(tmp_path):
    net = asff_net(tmp_path, "from=-1,-2,-3\nlevel=1\nfilters=7\n")
    line = layer_table(net).splitlines()[5]  # after the fork line and the header
    # the chosen level (layer 1, 10 x 6 x 4) is the input column
    assert line.startswith("    3 asff         7 level 1 of 3      10 x   6 x   4   ->    10 x   6 x   7")
    assert line.endswith(f"{net.specs[3].flops / 1e9:5.3f} BFLOPs")


@pytest.mark.parametrize("options, key, message", [
    ("from=-1\nlevel=0\n", "from", "needs 2 or 3 layers"),
    ("from=-1,-2,-3,-3\nlevel=0\n", "from", "needs 2 or 3 layers"),
    ("from=-1,-1\nlevel=0\n", "from", "twice"),
    ("from=-3,-2,-1\nlevel=0\n", "from", "exactly twice the width and height"),
    ("from=-1,-3\nlevel=0\n", "from", "exactly twice the width and height"),
    ("from=-1,-2,-3\nlevel=3\n", "level", "0..2"),
    ("from=-1,-2,-3\n", "level", "required"),
    ("from=-1,-2,-3\nlevel=0\ncompress=0\n", "compress", ">= 1"),
    ("from=-1,-2,-3\nlevel=0\nfilters=0\n", "filters", ">= 1"),
    ("from=-1,-2,-3\nlevel=0\nactivation=nope\n", "activation", "nope"),
    ("from=-1,-2,-9\nlevel=0\n", "from", "resolves to"),
])
def test_bad_options_name_the_line(tmp_path, options, key, message):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(LEVELS + "\n[asff]\n" + options)
    with pytest.raises(CfgError, match=message) as e:
        Darknet(cfg, init=False)
    lines = cfg.read_text().splitlines()
    if key in options:
        assert lines[e.value.line - 1].startswith(f"{key}="), (e.value, key)
    else:
        assert lines[e.value.line - 1] == "[asff]"
    assert f"{cfg}:{e.value.line}" in str(e.value)


# -- cfg/yolov3-asff.cfg

ASFF_CFG = CFG / "yolov3-asff.cfg"


def bn_conv(c_in, n, size):
    return n * (c_in * size * size + 4)


def test_yolov3_asff_file_size():
    """yolov3's file less the three 3x3 convolutions [asff] replaces, plus the three [asff]
    layers counted by hand (512, 256, 128 channels at levels 0, 1, 2; compress 16)."""
    net, yolov3 = Darknet(ASFF_CFG, init=False), Darknet(CFG / "yolov3.cfg", init=False)
    weighting = 3 * (3 * 16 + 1)
    level0 = bn_conv(256, 512, 3) + bn_conv(128, 512, 3) + 3 * bn_conv(512, 16, 1) + weighting + bn_conv(512, 1024, 3)
    level1 = bn_conv(512, 256, 1) + bn_conv(128, 256, 3) + 3 * bn_conv(256, 16, 1) + weighting + bn_conv(256, 512, 3)
    level2 = bn_conv(512, 128, 1) + bn_conv(256, 128, 1) + 3 * bn_conv(128, 16, 1) + weighting + bn_conv(128, 256, 3)
    replaced = bn_conv(512, 1024, 3) + bn_conv(256, 512, 3) + bn_conv(128, 256, 3)
    size = expected_size(net)
    assert size == expected_size(yolov3) + 4 * (level0 + level1 + level2 - replaced)
    assert size == 20 + 4 * sum(spec.n_params for spec in net.specs)
    assert [net.specs[i].kind for i in (96, 99, 102)] == ["asff"] * 3
    assert [net.specs[i].sources for i in (96, 99, 102)] == [(79, 87, 95), (87, 79, 95), (95, 79, 87)]


def test_yolov3_asff_round_trips_and_runs(tmp_path):
    path, again = tmp_path / "a.weights", tmp_path / "b.weights"
    write_random_weights(ASFF_CFG, path, seed=2)
    net = darknet_py.load(ASFF_CFG, path, width=64, height=64)
    assert path.stat().st_size == expected_size(net)
    with torch.no_grad():
        outs = net(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 3, 85, 2, 2), (1, 3, 85, 4, 4), (1, 3, 85, 8, 8)]
    assert all(torch.isfinite(o).all() for o in outs)
    net.save_weights(again)
    assert again.read_bytes() == path.read_bytes()


TRAINABLE = """[net]
width=64
height=64
channels=3
batch=2
subdivisions=1
max_batches=1
burn_in=0
learning_rate=0.01
momentum=0.9
decay=0.0005
""" + "".join(f"""
[convolutional]
batch_normalize=1
filters={n}
size=3
stride=2
pad=1
activation=leaky
""" for n in (8, 8, 16, 16)) + "".join(f"""
[asff]
from=3,2,1
level={level}

[convolutional]
filters=30
size=1
activation=linear

[yolo]
mask={mask}
anchors=4,5, 8,10, 12,9, 16,20, 20,14, 24,30, 32,28, 40,44, 56,52
classes=5
num=9
""" for level, mask in ((0, "6,7,8"), (1, "3,4,5"), (2, "0,1,2")))


def asff_parameters(net):
    return {name: p.detach().clone() for name, p in net.named_parameters()
            if net.specs[int(name.split(".")[1])].kind == "asff"}


def train_once(tmp_path, cfg, overrides=()):
    """One update of the project's trainer on four generated images; the [asff] parameters
    before it, and the network after it."""
    data = generate_shapes(tmp_path / "shapes", 4, seed=1, size=64)
    trainer = Trainer(data, cfg, overrides=overrides,
                      options=TrainOptions(backup=str(tmp_path / "backup"), workers=0, progress=False))
    before = asff_parameters(trainer.net)
    trainer.run()
    return before, trainer.net


def test_training_updates_every_asff_parameter(tmp_path):
    cfg = tmp_path / "trainable.cfg"
    cfg.write_text(TRAINABLE)
    before, net = train_once(tmp_path, cfg)
    # levels of 16, 16, 8 channels; each [asff] has three compressing and one expanding
    # batch-normalized convolution (weights, biases, scales) and the weighting one (weights,
    # biases); rescaling ones: two at level 0, one at level 1 (16 -> 16 upward needs none), two
    # at level 2
    assert len(before) == 3 * (4 * 3 + 2) + (2 + 1 + 2) * 3
    after = asff_parameters(net)
    assert [name for name, p in before.items() if torch.equal(p, after[name])] == []


@pytest.mark.slow
def test_yolov3_asff_trains(tmp_path):
    """One update of cfg/yolov3-asff.cfg at 64 x 64 changes every [asff] parameter."""
    before, net = train_once(tmp_path, ASFF_CFG, ["width=64", "height=64", "batch=2", "subdivisions=1",
                                                   "max_batches=1", "burn_in=0", "learning_rate=0.01"])
    # per [asff]: six batch-normalized convolutions (weights, biases, scales) and the weighting one
    assert len(before) == 3 * (6 * 3 + 2)
    after = asff_parameters(net)
    assert [name for name, p in before.items() if torch.equal(p, after[name])] == []
