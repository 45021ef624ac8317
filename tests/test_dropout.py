"""[dropout]: each parser's default probability, AlexeyAB's dropblock options read for inference
(the identity) and refused for training, by name and line."""
import pytest
import torch

import darknet_py
from darknet_py.errors import CfgError
from darknet_py.shapes import generate_shapes
from darknet_py.train.trainer import Trainer, TrainingError, TrainOptions

HEAD = """[net]
width=32
height=32
channels=3
batch=2
max_batches=1

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=leaky

[dropout]
{dropout}

[convolutional]
filters=30
size=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,4,8,8,16,16
classes=5
num=3
"""


def cfg(tmp_path, dropout, name="net.cfg"):
    path = tmp_path / name
    path.write_text(HEAD.format(dropout=dropout))
    return path


def dropout_layer(net):
    return next(layer for layer in net.layers if type(layer).__name__ == "Dropout")


def test_default_probability_per_fork(tmp_path):
    plain = darknet_py.Darknet(cfg(tmp_path, ""))
    assert plain.net.fork == "pjreddie" and dropout_layer(plain).probability == 0.5
    alexeyab = darknet_py.Darknet(cfg(tmp_path, "dropblock=0"))  # an option only AlexeyAB reads
    assert alexeyab.net.fork == "alexeyab" and dropout_layer(alexeyab).probability == 0.2


def test_dropblock_runs_for_inference_as_the_identity(tmp_path):
    net = darknet_py.Darknet(cfg(tmp_path, "probability=.3\ndropblock=1\ndropblock_size_abs=7"))
    layer = dropout_layer(net).eval()
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        assert len(net.eval()(torch.rand(1, 3, 32, 32))) == 1
    layer.train()
    with pytest.raises(NotImplementedError, match=r"dropblock=1 at .*net.cfg:\d+"):
        layer(x)


@pytest.mark.parametrize("option, message", [
    ("dropblock=2", "must be 0 or 1"),
    ("dropblock=1\ndropblock_size_rel=1.5", "dropblock_size_rel"),
    ("dropblock=1\ndropblock_size_abs=-1", "dropblock_size_abs"),
])
def test_bad_dropblock_options_are_refused_by_line(tmp_path, option, message):
    with pytest.raises(CfgError, match=message) as error:
        darknet_py.Darknet(cfg(tmp_path, option))
    assert "net.cfg" in str(error.value)


def test_trainer_refuses_dropblock_at_setup(tmp_path):
    data = generate_shapes(tmp_path / "shapes", 2, seed=1, size=32)
    options = TrainOptions(backup=str(tmp_path / "backup"), workers=0, progress=False)
    with pytest.raises(TrainingError, match=r"\[dropout\] at .*net.cfg:\d+\): dropblock=1 is not supported"):
        Trainer(data, cfg(tmp_path, "dropblock=1"), options=options)
    Trainer(data, cfg(tmp_path, "dropblock=0", name="plain.cfg"), options=options)  # plain dropout trains
