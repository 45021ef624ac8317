"""AlexeyAB's 4-image mosaic (``load_data_detection`` with ``use_mixup == 3`` and
``blend_truth_mosaic`` in AlexeyAB's data.c).

The canvas is cut at (cut_x, cut_y); image k (0 top-left, 1 top-right, 2 bottom-left,
3 bottom-right) is augmented to the full network size first, and the part of it that shows
in its quadrant is taken from the side facing the cut, moved by the ``*_shift`` amounts that
keep padding (a negative crop offset) out of view. Truth rows are ``[x, y, w, h, class,
weight]``, packed, zero after the last; C ``(int)`` conversions truncate toward zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32
MIN_OFFSET = F32(0.2)  # cut points stay in the middle 60% of each side


def rand_int(rng, lo: int, hi: int) -> int:
    """``rand_int``: uniform in [lo, hi], the bounds in either order."""
    lo, hi = min(lo, hi), max(lo, hi)
    return int(rng.integers(lo, hi + 1))


def draw_cut(rng, w: int, h: int) -> tuple[int, int]:
    """``cut_x``, ``cut_y``: the C passes ``w*0.2f`` and ``w*(1-0.2f)`` to int parameters."""
    low = F32(1) - MIN_OFFSET
    cut_x = rand_int(rng, int(F32(w) * MIN_OFFSET), int(F32(w) * low))
    cut_y = rand_int(rng, int(F32(h) * MIN_OFFSET), int(F32(h) * low))
    return cut_x, cut_y


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


@dataclass(frozen=True)
class Shifts:
    left: int
    right: int
    top: int
    bot: int


def shifts(pleft: int, pright: int, ptop: int, pbot: int, flip: bool, ow: int, oh: int,
           w: int, h: int, cut_x: int, cut_y: int) -> Shifts:
    """How far padding reaches into the augmented image on each side, in network pixels,
    capped by the quadrant; after a flip the left and right offsets trade places."""
    if flip:
        pleft, pright = pright, pleft
    return Shifts(left=min(cut_x, max(0, _cdiv(-pleft * w, ow))),
                  right=min(w - cut_x, max(0, _cdiv(-pright * w, ow))),
                  top=min(cut_y, max(0, _cdiv(-ptop * h, oh))),
                  bot=min(h - cut_y, max(0, _cdiv(-pbot * h, oh))))


def paste(canvas, image, k: int, cut_x: int, cut_y: int, s: Shifts) -> None:
    """Copy image ``k``'s visible part into its quadrant of ``canvas`` (both (c, h, w))."""
    _, h, w = canvas.shape
    src_x = (w - cut_x - s.right) if k in (0, 2) else s.left
    dst_x, width = (0, cut_x) if k in (0, 2) else (cut_x, w - cut_x)
    src_y = (h - cut_y - s.bot) if k in (0, 1) else s.top
    dst_y, height = (0, cut_y) if k in (0, 1) else (cut_y, h - cut_y)
    canvas[:, dst_y:dst_y + height, dst_x:dst_x + width] = image[:, src_y:src_y + height, src_x:src_x + width]


def count_rows(truths) -> int:
    """Rows before the first with x == 0 (``if (!x) break;``)."""
    zero = np.flatnonzero(truths[:, 0] == 0)
    return int(zero[0]) if len(zero) else len(truths)


def blend_truth_mosaic(new, old, w: int, h: int, cut_x: int, cut_y: int, k: int, s: Shifts,
                       mosaic_bound: bool) -> None:
    """``blend_truth_mosaic``: append image ``k``'s truths ``old`` to ``new`` in place, moved to
    its quadrant, clipped to the canvas (or with ``mosaic_bound`` to the quadrant), and kept
    only when inside and wider and higher than one network pixel."""
    boxes = len(new)
    fw, fh, cx, cy = F32(w), F32(h), F32(cut_x), F32(cut_y)
    lowest_w, lowest_h = F32(1) / fw, F32(1) / fh
    two = F32(2)
    count = count_rows(new)
    new_t = count
    for t in range(count, boxes):
        row = old[t - count]
        if row[0] == 0:
            break
        xb, yb, wb, hb = (F32(v) for v in row[:4])
        if k in (0, 2):
            xb = F32(xb - F32(F32(fw - cx) - F32(s.right)) / fw)
        else:
            xb = F32(xb + F32(cx - F32(s.left)) / fw)
        if k in (0, 1):
            yb = F32(yb - F32(F32(fh - cy) - F32(s.bot)) / fh)
        else:
            yb = F32(yb + F32(cy - F32(s.top)) / fh)
        left, right = int(F32(xb - wb / two) * fw), int(F32(xb + wb / two) * fw)
        top, bot = int(F32(yb - hb / two) * fh), int(F32(yb + hb / two) * fh)
        if mosaic_bound:
            x_lo, x_hi = (0, cut_x) if k in (0, 2) else (cut_x, w)
            y_lo, y_hi = (0, cut_y) if k in (0, 1) else (cut_y, h)
            left, right = max(left, x_lo), min(right, x_hi)
            top, bot = max(top, y_lo), min(bot, y_hi)
            xb = F32(F32(F32(right + left) / two) / fw)
            wb = F32(F32(right - left) / fw)
            yb = F32(F32(F32(bot + top) / two) / fh)
            hb = F32(F32(bot - top) / fh)
        else:
            if left < 0:
                diff = F32(F32(left) / fw)
                xb, wb = F32(xb - diff / two), F32(wb + diff)
            if right > w:
                diff = F32(F32(right - w) / fw)
                xb, wb = F32(xb - diff / two), F32(wb - diff)
            if top < 0:
                diff = F32(F32(top) / fh)
                yb, hb = F32(yb - diff / two), F32(hb + diff)
            if bot > h:
                diff = F32(F32(bot - h) / fh)
                yb, hb = F32(yb - diff / two), F32(hb - diff)
            left, right = int(F32(xb - wb / two) * fw), int(F32(xb + wb / two) * fw)
            top, bot = int(F32(yb - hb / two) * fh), int(F32(yb + hb / two) * fh)
        if (left >= 0 and right <= w and top >= 0 and bot <= h and 0 < wb < 1 and 0 < hb < 1
                and 0 < xb < 1 and 0 < yb < 1 and wb > lowest_w and hb > lowest_h):
            new[new_t] = (xb, yb, wb, hb, row[4], row[5])
            new_t += 1
