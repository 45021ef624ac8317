"""precision="fast" against "exact" on the oracle images."""
import numpy as np
import pytest
import torch

import darknet_py

from conftest import CFG, ORACLE, ROOT

IMAGES = [ORACLE / "dog.png", ROOT / "data" / "images" / "eagle.jpg", ROOT / "data" / "images" / "person.jpg"]


@pytest.fixture(scope="module")
def nets():
    weights = ORACLE / "tiny_dog.weights"
    return (darknet_py.load(CFG / "yolov3-tiny.cfg", weights),
            darknet_py.load(CFG / "yolov3-tiny.cfg", weights, precision="fast"))


@pytest.mark.shared
@pytest.mark.parametrize("image", IMAGES, ids=[p.name for p in IMAGES])
def test_fast_finds_the_same_boxes(nets, image):
    """Every box exact mode finds above thresh 0.25 is found by fast mode within 1% of the box's
    size, and no box appears that exact mode scores below 0.24. Compared before NMS (every
    box keeps its cell and anchor), since NMS between boxes whose probabilities differ in the
    third digit may pick another winner (this fixture's random weights make many such ties)."""
    exact, fast = (darknet_py.detect(net, image, thresh=0.0, nms=0) for net in nets)
    assert len(exact) == len(fast)
    p_exact, p_fast = exact.probs.max(1), fast.probs.max(1)
    found = p_exact > 0.25
    assert found.sum() > 10
    size = exact.boxes[found, 2:].max(1, keepdims=True)
    error = np.abs(fast.boxes[found] - exact.boxes[found]) / size
    print(f"{image.name}: {found.sum()} boxes, worst error {error.max():.4f} of box size")
    assert error.max() <= 0.01
    assert (p_fast[found] > 0.24).all() and (p_exact[p_fast > 0.25] > 0.24).all()


def test_fast_mode_keeps_the_weights_file(tmp_path, weights_for):
    path = weights_for("yolov3-tiny.cfg", seed=9)
    net = darknet_py.load(CFG / "yolov3-tiny.cfg", path, precision="fast")
    net.save_weights(tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == path.read_bytes()
    with torch.no_grad():
        assert all(o.dtype == torch.float32 for o in net(torch.rand(1, 3, 64, 64)))


@pytest.mark.parametrize("fork", ["pjreddie", "alexeyab"])
def test_exact_inference_batch_norm_is_the_same_numbers(fork):
    """Exact mode's inference pass applies batch norm in place as one multiply-add per value;
    it must give the training code's eval-mode batch norm bit for bit, for either fork's
    denominator, in both memory layouts and with channel counts off the vector width."""
    from darknet_py.layers.conv import Convolutional

    gen = torch.Generator().manual_seed(3)
    conv = Convolutional(3, 37, 3, 1, 1, 1, True, "leaky").eval()
    conv.fork = fork
    with torch.no_grad():
        for t in (conv.scales, conv.biases, conv.rolling_mean):
            t.copy_(torch.randn(t.shape, generator=gen))
        conv.rolling_variance.copy_(torch.rand(37, generator=gen) * 4)
        conv.rolling_variance[0] = 0.0  # the denominator's epsilon alone
        conv.prepare_inference(torch.float32, fold=False)
        alpha, beta = conv.bn_affine
        for layout in (torch.contiguous_format, torch.channels_last):
            x = (torch.randn(2, 37, 5, 7, generator=gen) * 5).contiguous(memory_format=layout)
            expected = conv._batch_norm(x, conv.biases)
            assert torch.equal(torch.addcmul(beta, x, alpha), expected)
