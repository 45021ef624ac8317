"""Tool verbs: partial, convert, calc_anchors, export onnx, show-batch, plot-lr."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from darknet_py.anchors import calc_anchors, initial_centers, kmeans
from darknet_py.cfg import parse_cfg_text
from darknet_py.cli import main
from darknet_py.datafile import DataConfig
from darknet_py.errors import WeightsError
from darknet_py.export import ExportError, export_onnx
from darknet_py.draw import class_colour, pixel_box
from darknet_py.model import Darknet, load
from darknet_py.train.preview import training_batch
from darknet_py.datasets import open_dataset
from darknet_py.weights import Header, expected_size

from conftest import CFG
from reference.matrix_alexeyab import darknet_kmeans


def test_partial_equals_a_cut_with_darknets_header(weights_for, tmp_path):
    full = weights_for("yolov3-tiny.cfg", seed=4)
    out = tmp_path / "tiny.conv.15"
    assert main(["partial", str(CFG / "yolov3-tiny.cfg"), str(full), str(out), "15"]) == 0
    net = Darknet(CFG / "yolov3-tiny.cfg", init=False)
    net.load_weights(full)
    net.seen = 123456  # Darknet's partial loads with clear=1: seen is written as 0
    cut = tmp_path / "cut.weights"
    net.save_weights(cut, cutoff=15, header=Header())
    assert out.read_bytes() != b"" and out.read_bytes() == cut.read_bytes()
    assert struct.unpack("<iiiQ", out.read_bytes()[:20]) == (0, 2, 0, 0)
    assert out.stat().st_size == expected_size(net, cutoff=15)


def test_convert_round_trips_byte_exactly(weights_for, tmp_path):
    src = weights_for("yolov3-tiny.cfg", seed=5)
    data = bytearray(src.read_bytes())
    data[12:20] = struct.pack("<Q", 987654321)  # a nonzero seen must survive the trip
    src = tmp_path / "seen.weights"
    src.write_bytes(bytes(data))
    pt, back = tmp_path / "tiny.pt", tmp_path / "back.weights"
    cfg = str(CFG / "yolov3-tiny.cfg")
    assert main(["convert", cfg, str(src), str(pt)]) == 0
    assert main(["convert", cfg, str(pt), str(back)]) == 0
    assert back.read_bytes() == src.read_bytes()
    state = torch.load(pt, weights_only=True)
    assert state["darknet.header"].tolist() == [0, 2, 0, 987654321]


def test_convert_refuses_a_state_dict_of_another_cfg(weights_for, tmp_path):
    net = Darknet(CFG / "yolov3-tiny.cfg")
    state = net.state_dict()
    state["layers.0.weights"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="layers.0.weights: shape"):
        from darknet_py.convert import load_state_dict
        load_state_dict(Darknet(CFG / "yolov3-tiny.cfg", init=False), tmp_path / "bad.pt")
    assert main(["convert", str(CFG / "yolov3.cfg"), str(tmp_path / "bad.pt"), str(tmp_path / "x.weights")]) == 1
    assert not (tmp_path / "x.weights").exists()


# -- calc_anchors --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [1, 4, 9])
def test_kmeans_equals_darknets_loop(seed, k):
    rng = np.random.default_rng(100 + seed)
    points = (rng.random((80, 2)) * [300, 200] + 4).astype(np.float32)
    centers, _, rounds = kmeans(points, k, seed)
    expected, expected_rounds = darknet_kmeans(points, initial_centers(len(points), k, seed))
    assert rounds == expected_rounds
    np.testing.assert_array_equal(centers, expected)


CLUSTERS = [(16, 24), (64, 48), (160, 200)]  # pixels at 256 x 256; exact in float32
SPREAD = [(-2, 0), (2, 0), (0, -2), (0, 2), (-1, -1), (1, 1), (-1, 1), (1, -1)]  # mean 0


def _dataset(root: Path, boxes_per_image, classes=2, size=(160, 120), grey=128, names=None):
    """A Darknet-layout dataset: grey images in images/, labels in labels/, train.txt, .data."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    lines = []
    for n, boxes in enumerate(boxes_per_image):
        image = root / "images" / f"{n:03d}.png"
        cv2.imwrite(str(image), np.full((size[1], size[0], 3), grey, np.uint8))
        (root / "labels" / f"{n:03d}.txt").write_text("".join(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in boxes))
        lines.append(str(image))
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "names.txt").write_text("".join(f"{name}\n" for name in names or [f"c{i}" for i in range(classes)]))
    data = root / "set.data"
    data.write_text(f"classes={classes}\ntrain={root / 'train.txt'}\nnames={root / 'names.txt'}\n"
                    f"backup={root / 'backup'}\n")
    return data


def _expected_avg_iou(sizes, centers):
    total = 0.0
    for w, h in sizes:
        total += max(min(w, cw) * min(h, ch) / (w * h + cw * ch - min(w, cw) * min(h, ch)) for cw, ch in centers)
    return 100 * total / len(sizes)


def test_calc_anchors_finds_the_cluster_centres(tmp_path, capsys):
    sizes = [(cw + dw, ch + dh) for cw, ch in CLUSTERS for dw, dh in SPREAD]
    boxes = [[(i % 2, 0.5, 0.5, w / 256, h / 256)] for i, (w, h) in enumerate(sizes)]
    boxes[0].append((1, 0.25, 0.25, CLUSTERS[0][0] / 256, CLUSTERS[0][1] / 256))  # two boxes in a file
    sizes.insert(1, CLUSTERS[0])
    data = _dataset(tmp_path / "set", boxes)
    # Darknet starts from k random boxes; with one box of each cluster among them k-means must
    # end at the cluster means. The first seed whose start has that, by the same rule:
    cluster = [min(range(3), key=lambda c: abs(256 * w - CLUSTERS[c][0]))  # of each box, file order
               for image in boxes for _, _, _, w, _ in image]
    seed = next(s for s in range(100) if len({cluster[i] for i in initial_centers(len(sizes), 3, s)}) == 3)
    out = tmp_path / "anchors.txt"
    assert main(["calc_anchors", str(data), "-num_of_clusters", "3", "-width", "256", "-height", "256",
                 "-out", str(out), "--seed", str(seed)]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("anchors ="))
    section = parse_cfg_text(f"[yolo]\n{line}\n")[0]
    assert section.floats("anchors") == [v for c in CLUSTERS for v in c]  # sorted by area
    assert f"avg IoU = {_expected_avg_iou(sizes, CLUSTERS):.2f} %" in text
    assert f"{len(sizes)} boxes" in text
    found = calc_anchors(open_dataset(DataConfig.from_file(data)), 3, 256, 256, seed=seed)
    np.testing.assert_array_equal(found.centers, np.array(CLUSTERS, np.float32))  # exact, not just printed
    assert parse_cfg_text(f"[yolo]\nanchors={out.read_text()}\n")[0].floats("anchors") == section.floats("anchors")
    # seeded: the same run prints the same
    assert main(["calc-anchors", str(data), "--num-of-clusters", "3", "--width", "256", "--height", "256",
                 "--out", str(out), "--seed", str(seed)]) == 0
    assert capsys.readouterr().out == text


def test_calc_anchors_scales_by_width_and_height(tmp_path):
    boxes = [[(0, 0.5, 0.5, 0.25, 0.5)], [(0, 0.5, 0.5, 0.25, 0.5)]]
    source = open_dataset(DataConfig.from_file(_dataset(tmp_path / "s", boxes)), "train")
    result = calc_anchors(source, 1, 416, 320)
    np.testing.assert_array_equal(result.centers, [[104, 160]])
    assert result.avg_iou == 100.0 and result.line(416) == "anchors = 104,160"
    assert result.values(32) == "104.0000,160.0000"  # Darknet's %2.4f for width <= 32


def test_calc_anchors_needs_as_many_boxes_as_clusters(tmp_path, capsys):
    data = _dataset(tmp_path / "s", [[(0, 0.5, 0.5, 0.2, 0.2)]] * 2)
    assert main(["calc_anchors", str(data), "-num_of_clusters", "3", "-width", "416", "-height", "416",
                 "-out", str(tmp_path / "a.txt")]) == 1
    assert "3 clusters need at least 3 boxes; the labels hold 2" in capsys.readouterr().err


# -- export onnx ---------------------------------------------------------------------------------

def test_onnx_export_matches_pytorch_with_a_dynamic_batch(weights_for, tmp_path, capsys):
    import onnx
    import onnxruntime
    weights = weights_for("yolov3-tiny.cfg", seed=6)
    out = tmp_path / "tiny.onnx"
    cfg = str(CFG / "yolov3-tiny.cfg")
    assert main(["export", "onnx", cfg, str(weights), str(out), "--width", "96", "--height", "96"]) == 0
    assert "input (batch, 3, 96, 96), outputs output0, output1, opset 17" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 17
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 96, 96]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    net = load(cfg, weights, width=96, height=96, device="cpu")
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 2):
        x = torch.rand(batch, 3, 96, 96, generator=generator)
        with torch.no_grad():
            expected = net(x)
        got = session.run(None, {"input": x.numpy()})
        assert [g.shape for g in got] == [(batch, 3, 85, 3, 3), (batch, 3, 85, 6, 6)]
        for g, e in zip(got, expected):
            assert np.abs(g - e.numpy()).max() < 1e-4
            assert np.ptp(e.numpy()) > 0.05  # outputs that vary: the comparison means something


class _NoOnnxForm(torch.nn.Module):
    """A layer computed with an operator ONNX opset 17 lacks (cumulative maximum)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return torch.cummax(self.layer(x), 1)[0]


def test_onnx_export_names_the_layer_it_cannot_express(tmp_path):
    net = Darknet(CFG / "yolov3-tiny.cfg", width=64, height=64)
    net.layers[2] = _NoOnnxForm(net.layers[2])
    out = tmp_path / "x.onnx"
    with pytest.raises(ExportError, match=r"layer 2 \(\[convolutional\] at .*yolov3-tiny.cfg:\d+\) cannot be "
                                          r"exported to ONNX opset 17: UnsupportedOperatorError: .*aten::cummax"):
        export_onnx(net, out)
    assert not out.exists()


# -- show-batch (plot-lr: test_plots.py) -------------------------------------------------------------------------

SHAPES_CFG = str(CFG / "yolov3-tiny-shapes.cfg")


def test_show_batch_puts_boxes_where_the_labels_are(tmp_path):
    boxes = [[(0, 0.3, 0.3, 0.3, 0.35), (1, 0.72, 0.7, 0.3, 0.3)]] * 3
    data = _dataset(tmp_path / "s", boxes, names=["a", "b"])
    out = tmp_path / "batch.png"
    sets = ["--set", "width=96", "--set", "height=96", "--set", "batch=4"]
    assert main(["show-batch", str(data), SHAPES_CFG, "--out", str(out), "--seed", "5", *sets]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (2 * 96 + 2, 2 * 96 + 2, 3)  # four tiles of 96 x 96, 2 pixels apart
    images, truths, _ = training_batch(data, SHAPES_CFG, overrides=["width=96", "height=96", "batch=4"], seed=5)
    assert images.shape == (4, 3, 96, 96)
    drawn = 0
    for k in range(4):
        x0, y0 = (k % 2) * 98, (k // 2) * 98
        tile_img = img[y0:y0 + 96, x0:x0 + 96]
        near = np.zeros((96, 96), np.uint8)
        for x, y, w, h, cls, _ in truths[k].tolist():
            if w <= 0:
                continue
            left, top, right, bot = pixel_box((x, y, w, h), 96, 96)
            edge = np.zeros((96, 96), np.uint8)
            cv2.rectangle(edge, (left, top), (right, bot), 1, 1)
            hits = (tile_img[edge > 0] == class_colour(int(cls), 2)).all(1).mean()
            assert hits > 0.8, (k, hits)
            cv2.rectangle(near, (left - 3, top - 3), (right + 3, bot + 3), 1, -1)
            drawn += 1
        grey = (tile_img[..., 0] == tile_img[..., 1]) & (tile_img[..., 1] == tile_img[..., 2])
        assert grey[near == 0].all()  # nothing drawn away from the boxes
    assert drawn >= 6


def test_show_batch_with_mixup_shows_both_images_boxes(tmp_path, capsys):
    data = _dataset(tmp_path / "s", [[(0, 0.5, 0.5, 0.4, 0.4)]] * 4)
    sets = ["--set", "width=64", "--set", "height=64", "--set", "batch=4"]
    for mixup in ("0", "1"):
        assert main(["show-batch", str(data), SHAPES_CFG, "--out", str(tmp_path / f"{mixup}.png"),
                     "--mixup", mixup, *sets]) == 0
    plain, mixed = capsys.readouterr().out.splitlines()
    assert plain.endswith("4 images of 64 x 64, 4 boxes") and mixed.endswith("4 images of 64 x 64, 8 boxes")


def test_onnx_export_of_reorg_layers_keeps_the_batch_dynamic(tmp_path):
    import onnxruntime
    cfg = tmp_path / "reorg.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n"
                   "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
                   "[reorg]\nstride=2\n"
                   "[reorg3d]\nstride=2\n"
                   "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n")
    net = Darknet(cfg)
    export_onnx(net, tmp_path / "reorg.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "reorg.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net.eval()(x)[0].numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    assert got.shape == expected.shape == (2, 4, 8, 8)
    assert np.abs(got - expected).max() < 1e-4
