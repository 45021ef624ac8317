"""What every head's deltas share: reading Darknet's truth rows, best-IoU search, the order
of truth writes, and the figures Darknet prints per head."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import DarknetError
from .boxes import box_iou

IOU_CHUNK = 1 << 24  # cell x truth pairs per IoU block, bounding loop 1's memory


@dataclass
class HeadStats:
    """The figures Darknet prints for one head after one forward, averaged as Darknet does."""

    avg_iou: float
    cls: float
    obj: float
    no_obj: float
    recall50: float
    recall75: float
    count: int
    cost: float


def first_best(iou, valid):
    """Darknet's ``if (iou > best_iou)`` scan from 0: the first maximum, index 0 when none beats 0."""
    return torch.where(valid & (iou > 0), iou, 0).max(-1)


def read_truths(truths, limit, classes, x):
    """The rows Darknet reads: at most ``limit``, ended by the first x == 0, trimmed to the longest list."""
    t = truths[:, :limit].to(device=x.device, dtype=x.dtype)
    if t.shape[1] == 0:
        t = t.new_zeros(t.shape[0], 1, t.shape[2])
    valid = (t[..., 0] != 0).int().cumprod(1).bool()
    cls = t[..., 4].long()  # C's (int) cast truncates
    bad = valid & ((cls < 0) | (cls >= classes))
    longest, nbad = torch.stack([valid.sum(1).max(), bad.sum()]).tolist()
    if nbad:  # pjreddie would write outside the class entries
        raise DarknetError(f"{nbad} truth box(es) have a class id outside 0..{classes - 1}")
    keep = max(longest, 1)
    return t[:, :keep], valid[:, :keep], torch.where(valid, cls, 0)[:, :keep]


def best_truth(px, py, pw, ph, t, valid):
    """Best IoU (and first truth reaching it) of every predicted box against its image's truths.

    Boxes are ``(batch, n, h, w)``; the IoU table is built a block of images at a time.
    """
    shape = px.shape
    px, py, pw, ph = (v.reshape(shape[0], -1, 1) for v in (px, py, pw, ph))
    step = max(1, IOU_CHUNK // (px.shape[1] * t.shape[1]))
    best, index = [], []
    for s in range(0, shape[0], step):
        tt = t[s:s + step, None]
        iou = box_iou(px[s:s + step], py[s:s + step], pw[s:s + step], ph[s:s + step],
                      tt[..., 0], tt[..., 1], tt[..., 2], tt[..., 3])
        v, i = first_best(iou, valid[s:s + step, None])
        best.append(v)
        index.append(i)
    return torch.cat(best).view(shape), torch.cat(index).view(shape)


def grid(x):
    """Cell column and row indices, broadcastable against (batch, n, h, w)."""
    _, _, _, lh, lw = x.shape
    return (torch.arange(lw, device=x.device).view(1, 1, 1, lw),
            torch.arange(lh, device=x.device).view(1, 1, lh, 1))


def _rank_in_cell(key):
    """For each truth, how many earlier truths (in Darknet's order) land on the same cell."""
    order = torch.sort(key, stable=True).indices
    sorted_key = key[order]
    pos = torch.arange(key.numel(), device=key.device)
    start = torch.ones_like(sorted_key, dtype=torch.bool)
    start[1:] = sorted_key[1:] != sorted_key[:-1]
    first = torch.cummax(torch.where(start, pos, 0), 0).values
    rank = torch.empty_like(pos)
    rank[order] = pos - first
    return rank


def write_rounds(cells, shape):
    """The writes to ``cells`` (b, n, j, i indices into a delta of ``shape``) in rounds of at
    most one write per cell, each as (its write indices, its cells), in Darknet's order:
    applying round after round leaves each cell as Darknet's sequential loop leaves it."""
    b, n, j, i = cells
    _, cell_n, _, lh, lw = shape
    rank = _rank_in_cell(((b * cell_n + n) * lh + j) * lw + i)
    for r in range(int(rank.max()) + 1 if rank.numel() else 0):
        s = (rank == r).nonzero().squeeze(1)
        yield s, (b[s], n[s], j[s], i[s])
