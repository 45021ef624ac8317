"""precision="fast" against "exact" on the oracle images."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
    from darknet_py.layers import epilogue
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
        # the one-pass C epilogue of the direct path: the same numbers, activation included
        if epilogue.applies("leaky"):
            x = (torch.randn(2, 37, 5, 7, generator=gen) * 5).contiguous(memory_format=torch.channels_last)
            expected = conv._batch_norm(x, conv.biases)
            for activation, act in (("linear", lambda t: t), ("leaky", lambda t: F.leaky_relu(t, 0.1)),
                                    ("relu", F.relu)):
                got = epilogue.affine_act_(x.clone(), *(t.reshape(-1).contiguous() for t in (alpha, beta)), activation)
                assert torch.equal(got, act(expected)), activation


OFFICIAL_TINY = ORACLE.parent / "weights" / "yolov3-tiny.weights"
SAMPLES = sorted((ROOT / "data" / "images").glob("*.jpg"))  # Darknet's 7 sample images


def _iou(a, b):
    """IoU of two (x, y, w, h) centre boxes."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def official_tiny():
    return (darknet_py.load(CFG / "yolov3-tiny.cfg", OFFICIAL_TINY),
            darknet_py.load(CFG / "yolov3-tiny.cfg", OFFICIAL_TINY, precision="fast"))


@pytest.mark.shared
@pytest.mark.parametrize("image", SAMPLES, ids=[p.name for p in SAMPLES])
def test_fast_mode_agrees_on_the_official_tiny_weights(official_tiny, image):
    """On pjreddie's yolov3-tiny and Darknet's sample images, fast mode (whatever this CPU runs
    it in: bfloat16, or float32 with batch norm folded) reports the same classes at thresh 0.25
    as exact mode, each of exact's boxes matched by one of fast's of that class with IoU >= 0.95
    and probability within 0.03, and no box of fast's left unmatched (on scream.jpg exact mode
    finds nothing at 0.25: neither may fast)."""
    assert len(SAMPLES) == 7
    exact, fast = (darknet_py.detect(net, image, thresh=0.25).rows(0.25) for net in official_tiny)
    assert sorted(set(exact[:, 6])) == sorted(set(fast[:, 6]))
    for ours, theirs in ((exact, fast), (fast, exact)):
        for row in ours:
            same_class = theirs[theirs[:, 6] == row[6]]
            ious = [_iou(row[1:5], other[1:5]) for other in same_class]
            best = int(np.argmax(ious))
            assert ious[best] >= 0.95, (image.name, row, same_class[best])
            assert abs(same_class[best][7] - row[7]) <= 0.03, (image.name, row, same_class[best])
