"""Training speed against a plain PyTorch port of yolov3-tiny, in one process, on the same batch.

    python benchmarks/train_speed.py [--repeat 5] [--quick] [--profile]

Times one full update (forward, loss, backward, SGD step) of yolov3-tiny at 416x416, batch 16
(subdivisions 1), 80 classes: darknet_py's ``Trainer.step`` in exact float32 and with bfloat16
autocast (``TrainOptions(amp=True)``), and a hand-written port in idiomatic PyTorch
(nn.Conv2d + nn.BatchNorm2d + nn.LeakyReLU, a vectorised eriklindernoren-style YOLO loss,
torch.optim.SGD). Data loading is not timed: one batch of 16 augmented samples from a generated
shapes dataset is made once and fed to every update on both sides. Prints median seconds per
update, images/s and the time ratio ours/plain (< 1: darknet_py is faster). Ratios, not seconds,
are the result: both sides run in the same process on the same machine, interleaved.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darknet_py.shapes import generate_shapes  # noqa: E402
from darknet_py.train.samples import collate  # noqa: E402
from darknet_py.train.trainer import Trainer, TrainOptions  # noqa: E402

SIZE, BATCH, CLASSES = 416, 16, 80
ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
MASKS = ((3, 4, 5), (0, 1, 2))  # 13x13 head, 26x26 head
IGNORE_THRESH = 0.7


# -- the plain port ------------------------------------------------------------------------------
def conv_bn(c_in, c_out, size):
    return nn.Sequential(nn.Conv2d(c_in, c_out, size, 1, size // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.1))


class YoloV3Tiny(nn.Module):
    """yolov3-tiny as PyTorch ports write it: returns the two raw 255-channel head maps."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        out = 3 * (5 + classes)
        self.backbone = nn.Sequential(
            conv_bn(3, 16, 3), nn.MaxPool2d(2, 2),
            conv_bn(16, 32, 3), nn.MaxPool2d(2, 2),
            conv_bn(32, 64, 3), nn.MaxPool2d(2, 2),
            conv_bn(64, 128, 3), nn.MaxPool2d(2, 2),
            conv_bn(128, 256, 3))  # layer 8: the route to the second head
        self.tail = nn.Sequential(
            nn.MaxPool2d(2, 2),
            conv_bn(256, 512, 3), nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2, 1),
            conv_bn(512, 1024, 3),
            conv_bn(1024, 256, 1))  # layer 13
        self.head1 = nn.Sequential(conv_bn(256, 512, 3), nn.Conv2d(512, out, 1))
        self.lateral = nn.Sequential(conv_bn(256, 128, 1), nn.Upsample(scale_factor=2, mode="nearest"))
        self.head2 = nn.Sequential(conv_bn(384, 256, 3), nn.Conv2d(256, out, 1))

    def forward(self, x):
        route = self.backbone(x)
        x = self.tail(route)
        y1 = self.head1(x)
        y2 = self.head2(torch.cat([self.lateral(x), route], 1))
        return [y1, y2]


def box_iou_xywh(a, b):
    """IoU of centre-size boxes, broadcast over the leading dimensions (last dim: x, y, w, h)."""
    a0, a1 = a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2
    b0, b1 = b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2
    wh = (torch.minimum(a1, b1) - torch.maximum(a0, b0)).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter + 1e-9)


class YoloLoss(nn.Module):
    """A typical port's YOLOv3 loss for one head: each truth goes to the best (by shape IoU) of the
    head's 3 anchors at its cell; objectness is BCE over all cells except those whose predicted
    box overlaps a truth by more than ``ignore``; classes (BCE) and x/y (sigmoid, MSE), w/h
    (log space, MSE) at assigned cells; sums over the batch, divided by the batch size."""

    def __init__(self, anchors, classes=CLASSES, img_size=SIZE, ignore=IGNORE_THRESH):
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # pixels
        self.classes, self.img_size, self.ignore = classes, img_size, ignore
        self.bce = nn.BCEWithLogitsLoss(reduction="sum")
        self.mse = nn.MSELoss(reduction="sum")

    def forward(self, p, truths):
        b, _, g, _ = p.shape
        na = self.anchors.shape[0]
        p = p.view(b, na, 5 + self.classes, g, g).permute(0, 1, 3, 4, 2)  # (b, a, gy, gx, 85)
        sx, sy = torch.sigmoid(p[..., 0]), torch.sigmoid(p[..., 1])

        # ignore mask: predicted boxes (detached) against every truth of their image
        valid = truths[..., 2] > 0  # (b, T): padding rows are zero
        with torch.no_grad():
            grid = torch.arange(g, device=p.device, dtype=p.dtype)
            anchor_wh = (self.anchors / self.img_size).view(1, na, 1, 1, 2)
            pred = torch.stack([(sx + grid.view(1, 1, 1, g)) / g, (sy + grid.view(1, 1, g, 1)) / g,
                                *(torch.exp(p[..., 2:4]) * anchor_wh).unbind(-1)], -1)
            iou = box_iou_xywh(pred.view(b, -1, 1, 4), truths[:, None, :, :4])  # (b, a*g*g, T)
            best = iou.masked_fill(~valid[:, None], 0).amax(2).view(b, na, g, g)

        # target assignment: best of this head's anchors by shape, at the truth's cell
        bi, ti = valid.nonzero(as_tuple=True)
        t = truths[bi, ti]
        gxy, gwh = t[:, :2] * g, t[:, 2:4] * self.img_size
        inter = torch.minimum(gwh[:, None], self.anchors[None]).prod(2)
        shape_iou = inter / (gwh.prod(1)[:, None] + self.anchors.prod(1)[None] - inter)
        ai = shape_iou.argmax(1)
        gi, gj = gxy.long().clamp(0, g - 1).unbind(1)
        obj_mask = torch.zeros(b, na, g, g, dtype=torch.bool, device=p.device)
        obj_mask[bi, ai, gj, gi] = True
        noobj_mask = (best <= self.ignore) & ~obj_mask

        cells = p[bi, ai, gj, gi]  # (n, 85)
        loss_xy = self.mse(torch.sigmoid(cells[:, :2]), gxy - gxy.floor())
        loss_wh = self.mse(cells[:, 2:4], torch.log(gwh / self.anchors[ai] + 1e-16))
        conf = p[..., 4]
        loss_obj = self.bce(conf[obj_mask], torch.ones_like(conf[obj_mask])) + \
            self.bce(conf[noobj_mask], torch.zeros_like(conf[noobj_mask]))
        loss_cls = self.bce(cells[:, 5:], F.one_hot(t[:, 4].long(), self.classes).to(p.dtype))
        return (loss_xy + loss_wh + loss_obj + loss_cls) / b


class PlainPort:
    def __init__(self, seed=0):
        torch.manual_seed(seed)
        self.model = YoloV3Tiny().train()
        self.losses = [YoloLoss([ANCHORS[i] for i in mask]) for mask in MASKS]
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step(self, images, truths) -> float:
        outputs = self.model(images)
        loss = sum(fn(out, truths) for fn, out in zip(self.losses, outputs))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


# -- the benchmark -------------------------------------------------------------------------------
def make_data(tmp: Path) -> Path:
    """32 shapes images and an 80-class .data file over them (labels use classes 0..4)."""
    generate_shapes(tmp / "shapes", 32, seed=1, size=SIZE)
    names = tmp / "coco80.names"
    names.write_text("".join(f"class{i}\n" for i in range(CLASSES)))
    data = tmp / "train80.data"
    data.write_text(f"classes={CLASSES}\ntrain={tmp / 'shapes' / 'train.txt'}\nnames={names}\n"
                    f"backup={tmp / 'backup'}\n")
    return data


def make_trainer(data, tmp, amp):
    cfg = ROOT / "cfg" / "yolov3-tiny.cfg"
    return Trainer(data, cfg, overrides=[f"batch={BATCH}", "subdivisions=1"],
                   options=TrainOptions(workers=0, progress=False, backup=str(tmp / "backup"), amp=amp))


def fixed_batch(trainer):
    w, h = trainer.cfg.width, trainer.cfg.height
    return collate([trainer.samples[(n, n % len(trainer.samples), w, h)] for n in range(BATCH)])


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def profile_ours(trainer, batch, rows=10):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.step([batch])
    print(f"\ntorch.profiler, one Trainer.step ({'amp' if trainer.options.amp else 'exact'}), "
          f"top {rows} ops by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=None, help="timed updates per side (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 2 timed updates per side")
    parser.add_argument("--profile", action="store_true", help="also profile one update of ours (exact and amp)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="first darknet_py.keep_freed_memory(), as the darknet-py command runs (both sides)")
    args = parser.parse_args()
    if args.keep_freed_memory:
        from darknet_py.memory import keep_freed_memory
        print(f"keep_freed_memory(): {keep_freed_memory()} (for every runtime in this process)")
    warmup = 1 if args.quick else 2
    repeat = args.repeat or (2 if args.quick else 5)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"bf16 fast path: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}; "
          f"{warmup} warm-up + {repeat} timed updates per side, interleaved", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_data(tmp)
        sides = {"exact": make_trainer(data, tmp, amp=False), "amp": make_trainer(data, tmp, amp=True)}
        images, truths, problems = batch = fixed_batch(sides["exact"])
        plain = PlainPort()
        runs = {"exact": lambda: sides["exact"].step([batch]).loss, "amp": lambda: sides["amp"].step([batch]).loss,
                "plain": lambda: plain.step(images, truths)}
        times = {name: [] for name in runs}
        losses = {name: [] for name in runs}
        for i in range(warmup + repeat):
            for name, fn in runs.items():
                seconds, loss = timed(fn)
                losses[name].append(loss)
                if i >= warmup:
                    times[name].append(seconds)
        med = {name: statistics.median(ts) for name, ts in times.items()}

        print(f"\n{'model':18s} {'batch':>5s} {'exact s/it':>10s} {'amp s/it':>9s} {'plain s/it':>10s}  "
              f"{'exact img/s':>11s} {'amp img/s':>9s} {'plain img/s':>11s}  {'exact/plain':>11s} {'amp/plain':>9s}")
        print(f"{'yolov3-tiny 416':18s} {BATCH:5d} {med['exact']:10.3f} {med['amp']:9.3f} {med['plain']:10.3f}  "
              f"{BATCH / med['exact']:11.2f} {BATCH / med['amp']:9.2f} {BATCH / med['plain']:11.2f}  "
              f"{med['exact'] / med['plain']:10.2f}x {med['amp'] / med['plain']:8.2f}x")
        print("loss, first and last update: " + ", ".join(
            f"{name} {ls[0]:.1f} -> {ls[-1]:.1f}" for name, ls in losses.items()), flush=True)
        if args.profile:
            for name in ("exact", "amp"):
                profile_ours(sides[name], batch)


if __name__ == "__main__":
    main()
