"""Darknet's detection augmentation (``load_data_detection`` in pjreddie's ``data.c``) on numpy.

A sample is made in two steps so that tests can inject the random draws: ``draw_detection``
takes every draw from a numpy Generator in Darknet's order (aspect jitter, placement, hue,
saturation, exposure, flip, box shuffle) and ``apply_detection`` does the deterministic rest.
Arithmetic is float32 where Darknet's is ``float``; a C expression mixing a float with a
double literal (``h/6.``, ``1. - right``) rounds to the same float32, since double holds
more than twice float's precision.

Boxes inside the pipeline carry six columns ``[class, cx, cy, w, h, weight]`` (relative to
the image; the weight is 1 except after ``mixup``); a sample's truths come out as
``[x, y, w, h, class, weight]`` rows, zero padded to ``max_boxes``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32
MIN_BOX = F32(0.001)  # fill_truth_detection drops boxes narrower or lower than this


@dataclass
class Augment:
    """The knobs of ``load_data_detection``; ``mixup`` is the probability of a mixup sample."""
    jitter: float
    hue: float
    saturation: float
    exposure: float
    flip: bool = True
    mixup: float = 0.0

    @classmethod
    def from_net(cls, net, head, *, flip: bool = True, mixup: float = 0.0) -> "Augment":
        """Darknet reads jitter from the last detection layer and the colour knobs from [net]."""
        return cls(jitter=float(head.settings.jitter), hue=net.hue, saturation=net.saturation,
                   exposure=net.exposure, flip=flip, mixup=mixup)


@dataclass(frozen=True)
class Draws:
    """Everything random in one sample: the placed size and offset, the colour distortion,
    the flip, and ``order``, the box permutation of ``randomize_boxes``."""
    nw: float
    nh: float
    dx: float
    dy: float
    hue: float
    saturation: float
    exposure: float
    flip: bool
    order: np.ndarray


def with_weight(boxes) -> np.ndarray:
    """(n, 5) label boxes get the weight column 1; (n, 6) boxes pass through."""
    boxes = np.asarray(boxes, dtype=F32)
    if boxes.size == 0:
        return np.zeros((0, 6), dtype=F32)
    if boxes.shape[1] == 6:
        return boxes
    return np.concatenate([boxes, np.ones((len(boxes), 1), F32)], axis=1)


def rand_uniform(rng, lo, hi) -> F32:
    """``rand_uniform``: the bounds may come in either order; float arithmetic."""
    lo, hi = F32(lo), F32(hi)
    if hi < lo:
        lo, hi = hi, lo
    return F32(F32(rng.random()) * (hi - lo) + lo)


def rand_scale(rng, s) -> F32:
    """``rand_scale``: U(1, s), inverted half the time."""
    scale = rand_uniform(rng, 1, s)
    return scale if rng.integers(2) else F32(1.0 / scale)


def randomize_boxes(rng, n: int) -> np.ndarray:
    """The permutation ``randomize_boxes`` applies: swap box i with a random box, for each i."""
    order = np.arange(n)
    for i, j in enumerate(rng.integers(n, size=n) if n else ()):
        order[i], order[j] = order[j], order[i]
    return order


def draw_detection(rng, aug: Augment, ow: int, oh: int, w: int, h: int, n_boxes: int) -> Draws:
    """The draws of one ``load_data_detection`` sample, in Darknet's order."""
    dw, dh = F32(aug.jitter) * F32(ow), F32(aug.jitter) * F32(oh)
    new_ar = F32(F32(ow) + rand_uniform(rng, -dw, dw)) / F32(F32(oh) + rand_uniform(rng, -dh, dh))
    if new_ar < 1:  # scale is 1: the longer side fills the canvas
        nh = F32(h)
        nw = F32(nh * new_ar)
    else:
        nw = F32(w)
        nh = F32(nw / new_ar)
    dx = rand_uniform(rng, 0, F32(w) - nw)
    dy = rand_uniform(rng, 0, F32(h) - nh)
    hue = rand_uniform(rng, -aug.hue, aug.hue)
    saturation = rand_scale(rng, aug.saturation)
    exposure = rand_scale(rng, aug.exposure)
    flip = bool(aug.flip and rng.integers(2))
    return Draws(float(nw), float(nh), float(dx), float(dy), float(hue), float(saturation),
                 float(exposure), flip, randomize_boxes(rng, n_boxes))


def apply_detection(image, boxes, w: int, h: int, draws: Draws, max_boxes: int):
    """``load_data_detection`` after its draws: place on a .5 canvas, distort, flip, truths."""
    sized = np.full((image.shape[0], h, w), 0.5, dtype=F32)
    # C passes the float size and offset to place_image's int parameters: truncation toward 0.
    place_image(image, int(draws.nw), int(draws.nh), int(draws.dx), int(draws.dy), sized)
    sized = distort_image(sized, draws.hue, draws.saturation, draws.exposure)
    if draws.flip:
        sized = np.ascontiguousarray(sized[:, :, ::-1])
    dx, dy = F32(-F32(draws.dx) / F32(w)), F32(-F32(draws.dy) / F32(h))
    sx, sy = F32(F32(draws.nw) / F32(w)), F32(F32(draws.nh) / F32(h))
    truths = fill_truth_detection(with_weight(boxes), draws.order, dx, dy, sx, sy, draws.flip, max_boxes)
    return sized, truths


def detection_sample(image, boxes, w: int, h: int, aug: Augment, rng, max_boxes: int):
    """One training sample: (image (3, h, w) float32, truths (max_boxes, 6))."""
    _, oh, ow = image.shape
    draws = draw_detection(rng, aug, ow, oh, w, h, len(boxes))
    return apply_detection(image, boxes, w, h, draws, max_boxes)


def get_pixel_extend(padded, ix, iy):
    """``get_pixel_extend`` on the grid ``iy`` x ``ix`` of an image with a zero border of one
    pixel: any coordinate outside the image lands on the border and reads 0."""
    _, ph, pw = padded.shape
    rows = np.take(padded, np.clip(iy + 1, 0, ph - 1), axis=1)
    return np.take(rows, np.clip(ix + 1, 0, pw - 1), axis=2)


def bilinear_interpolate(im, x, y):
    """``bilinear_interpolate`` at every point of the grid ``y`` x ``x`` (float32 coordinates)."""
    padded = np.pad(im, ((0, 0), (1, 1), (1, 1)))
    ix, iy = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    dx, dy = (x - ix.astype(F32))[None, :], (y - iy.astype(F32))[:, None]
    one = F32(1)
    return ((one - dy) * (one - dx) * get_pixel_extend(padded, ix, iy)
            + dy * (one - dx) * get_pixel_extend(padded, ix, iy + 1)
            + (one - dy) * dx * get_pixel_extend(padded, ix + 1, iy)
            + dy * dx * get_pixel_extend(padded, ix + 1, iy + 1))


def place_image(im, w: int, h: int, dx: int, dy: int, canvas) -> None:
    """``place_image``: ``im`` scaled to w x h with its top-left at (dx, dy); what falls
    outside the canvas is dropped (``set_pixel``). Darknet truncates the source coordinate
    to an int before interpolating, so this samples the nearest pixel up-left."""
    _, ch, cw = canvas.shape
    _, ih, iw = im.shape
    x0, x1 = max(0, -dx), min(w, cw - dx)
    y0, y1 = max(0, -dy), min(h, ch - dy)
    if x0 >= x1 or y0 >= y1:
        return
    xs, ys = np.arange(x0, x1), np.arange(y0, y1)
    rx = (xs.astype(F32) / F32(w) * F32(iw)).astype(np.int64).astype(F32)
    ry = (ys.astype(F32) / F32(h) * F32(ih)).astype(np.int64).astype(F32)
    canvas[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx] = bilinear_interpolate(im, rx, ry)


def rgb_to_hsv(im):
    """Darknet's ``rgb_to_hsv`` on (3, h, w) float32; hue in [0, 1]. Where r = g = b > 0 the
    C divides 0 by 0 and keeps a NaN hue, harmless because the saturation there is 0;
    this returns hue 0 instead."""
    r, g, b = im
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    delta = mx - mn
    with np.errstate(divide="ignore", invalid="ignore"):  # grey and black: replaced below
        hue = np.where(r == mx, (g - b) / delta,
                       np.where(g == mx, F32(2) + (b - r) / delta, F32(4) + (r - g) / delta))
        sat = delta / mx
    hue = (hue + F32(6) * (hue < 0)) / F32(6)  # adding 0 leaves hue as it is
    hue = np.where((mx == 0) | (delta == 0), F32(0), hue)
    sat = np.where(mx == 0, F32(0), sat)
    return np.stack([hue, sat, mx])


def hsv_to_rgb(im):
    """Darknet's ``hsv_to_rgb``; a hue of exactly 1 (6 * h = 6) takes the C's ``else``,
    the formula of sector 5, and comes out magenta-ish instead of red."""
    h, s, v = im
    h = F32(6) * h
    index = np.floor(h)
    f = h - index
    one = F32(1)
    p, q, t = v * (one - s), v * (one - s * f), v * (one - s * (one - f))
    cases = [s == 0] + [index == k for k in range(5)]  # grey, then the sectors; else sector 5
    return np.stack([np.select(cases, [v, v, q, p, p, t], v),
                     np.select(cases, [v, t, v, v, q, p], p),
                     np.select(cases, [v, p, p, t, v, v], q)])


def distort_image(im, hue: float, sat: float, val: float):
    """``distort_image``: scale saturation and value, shift hue with one wrap, clip to [0, 1]."""
    h, s, v = rgb_to_hsv(im)
    s, v = s * F32(sat), v * F32(val)
    h = h + F32(hue)
    h = h - (h > 1)  # subtracting or adding 0 leaves h as it is
    h = h + (h < 0)
    return np.clip(hsv_to_rgb(np.stack([h, s, v])), F32(0), F32(1))


def correct_boxes(boxes, dx, dy, sx, sy, flip: bool):
    """``correct_boxes`` on [class, cx, cy, w, h, weight] rows: shift, scale, mirror, clip.

    A box centred at exactly (0, 0) is Darknet's "no box" marker: pjreddie turns it into a
    999999 box that slips through, AlexeyAB drops it; here it gets size 0 and is dropped."""
    x, y, w, h = boxes[:, 1:5].T
    half = F32(2)
    left, right = (x - w / half) * sx - dx, (x + w / half) * sx - dx
    top, bottom = (y - h / half) * sy - dy, (y + h / half) * sy - dy
    if flip:
        left, right = F32(1) - right, F32(1) - left
    left, right, top, bottom = (np.clip(a, F32(0), F32(1)) for a in (left, right, top, bottom))
    marker = (x == 0) & (y == 0)
    out = boxes.copy()
    out[:, 1], out[:, 2] = (left + right) / half, (top + bottom) / half
    out[:, 3] = np.where(marker, F32(0), np.clip(right - left, F32(0), F32(1)))
    out[:, 4] = np.where(marker, F32(0), np.clip(bottom - top, F32(0), F32(1)))
    return out


def fill_truth_detection(boxes, order, dx, dy, sx, sy, flip: bool, max_boxes: int):
    """``fill_truth_detection``: shuffle, correct, keep the first ``max_boxes``, drop tiny
    ones. Darknet leaves a dropped box's row zero and its [yolo] layer stops reading at the
    first zero row, ignoring the boxes after it; here the kept rows are packed instead."""
    kept = correct_boxes(boxes[order], dx, dy, sx, sy, flip)[:max_boxes]
    kept = kept[(kept[:, 3] >= MIN_BOX) & (kept[:, 4] >= MIN_BOX)]
    truths = np.zeros((max_boxes, 6), dtype=F32)
    truths[:len(kept)] = kept[:, [1, 2, 3, 4, 0, 5]]
    return truths


def mixup(image_a, boxes_a, image_b, boxes_b, ratio: float):
    """Geometry-preserving mixup (Bag of Freebies for Training Object Detection Neural
    Networks): both images at the top-left of a zero canvas of their largest height and
    width, blended ``ratio`` : ``1 - ratio``; boxes re-expressed on the canvas and weighted
    by their image's share."""
    (_, ha, wa), (_, hb, wb) = image_a.shape, image_b.shape
    height, width = max(ha, hb), max(wa, wb)
    canvas = np.zeros((image_a.shape[0], height, width), dtype=F32)
    share_a, share_b = F32(ratio), F32(1 - ratio)
    canvas[:, :ha, :wa] += image_a * share_a
    canvas[:, :hb, :wb] += image_b * share_b
    return canvas, np.concatenate([_on_canvas(boxes_a, wa, ha, width, height, share_a),
                                   _on_canvas(boxes_b, wb, hb, width, height, share_b)])


def _on_canvas(boxes, w, h, width, height, share):
    boxes = with_weight(boxes).copy()
    boxes[:, [1, 3]] *= F32(w) / F32(width)
    boxes[:, [2, 4]] *= F32(h) / F32(height)
    boxes[:, 5] *= share
    return boxes
