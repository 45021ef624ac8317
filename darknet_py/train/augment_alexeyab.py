"""AlexeyAB's detection augmentation: ``load_data_detection`` of its data.c (the OpenCV build)
with ``image_data_augmentation`` of image_opencv.cpp, ``fill_truth_detection``,
``blend_truth`` and the mosaic (mosaic.py).

Where pjreddie places a resized image on a grey canvas, AlexeyAB crops the 8-bit image at
jittered offsets (padding with the image's mean colour), resizes the crop with OpenCV to the
network size, flips, shifts hue/saturation/value in OpenCV's 8-bit HSV (a hue that leaves
0..255 saturates instead of wrapping, as in the C), blurs (the whole image, or with ``blur=1``
only the background: the boxes are pasted back sharp) and adds Gaussian noise that, drawn into
an 8-bit image, only brightens. The OpenCV calls are the C's; the random numbers come from a
numpy Generator in the C's order (see ``draw_image``), one Generator per sample.

``use_mixup`` (``[net] mixup``, set to 3 by ``mosaic=1``, 2 by ``cutmix=1``, 4 by both):
1 blends two augmented images half and half and appends the second's boxes, 3 is the mosaic;
AlexeyAB's detector drops cutmix (2 -> 0, 4 -> 3; alexeyab_options warns), and each sample
is a plain one with probability 1/2 (the C draws this once per loader thread's share of a
batch, here once per image).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DarknetError
from .augment import F32, correct_boxes, rand_scale, rand_uniform, randomize_boxes, with_weight
from .mosaic import blend_truth_mosaic, count_rows, draw_cut, paste, rand_int, shifts

MOSAIC, MIXUP = 3, 1
BLUR_BACKGROUND_KERNEL = 17


def use_mixup(net) -> int:
    """What AlexeyAB's load_data_detection does for ``[net]``: 0, MIXUP or MOSAIC."""
    mode = net.mixup
    if net.mosaic and net.cutmix:
        mode = 4
    elif net.cutmix:
        mode = 2
    elif net.mosaic:
        mode = 3
    return {2: 0, 4: MOSAIC}.get(mode, mode)


@dataclass(frozen=True)
class AlexeyabAugment:
    """The knobs of AlexeyAB's ``load_data_detection``: jitter and resize from the last
    detection layer, the rest from ``[net]``."""
    jitter: float
    hue: float
    saturation: float
    exposure: float
    resize: float = 1.0
    flip: bool = True
    blur: int = 0
    gaussian_noise: int = 0
    use_mixup: int = 0  # 0, MIXUP or MOSAIC
    letter_box: bool = False
    mosaic_bound: bool = False
    mixup: float = 0.0  # --mixup: this project's Bag-of-Freebies mixup (dataset.py), before all this

    @classmethod
    def from_net(cls, net, head, *, mixup: float = 0.0) -> "AlexeyabAugment":
        return cls(jitter=float(head.settings.jitter), hue=net.hue, saturation=net.saturation,
                   exposure=net.exposure, resize=float(head.settings.resize),
                   flip=bool(net.flip), blur=net.blur, gaussian_noise=net.gaussian_noise,
                   use_mixup=use_mixup(net), letter_box=bool(net.letter_box),
                   mosaic_bound=bool(net.mosaic_bound), mixup=mixup)

    def sample(self, image, boxes, rng, w: int, h: int, max_boxes: int, draw_other):
        """One sample from ``image`` ((3, h, w) float32) and its boxes; ``draw_other()`` loads
        another random image of the list for mixup and mosaic. Returns (image (3, h, w)
        float32, truths (max_boxes, 6))."""
        mode = self.use_mixup if self.use_mixup and rng.integers(2) else 0
        cut = draw_cut(rng, w, h) if mode == MOSAIC else None
        out_image, truths = None, np.zeros((max_boxes, 6), F32)
        for k in range(mode + 1):
            if k:
                image, boxes = draw_other()
            draws = draw_image(rng, self, mosaic=mode == MOSAIC)
            mat = to_mat(image)
            oh, ow = mat.shape[:2]
            pleft, pright, ptop, pbot = crop_offsets(draws, self, ow, oh, w, h, k if mode == MOSAIC else None)
            swidth, sheight = ow - pleft - pright, oh - ptop - pbot
            if swidth <= 0 or sheight <= 0:
                raise DarknetError(f"jitter={self.jitter} and resize={self.resize} crop a {ow} x {oh} "
                                   f"image to {swidth} x {sheight}")
            sx, sy = F32(F32(swidth) / F32(ow)), F32(F32(sheight) / F32(oh))
            dx, dy = F32(F32(F32(pleft) / F32(ow)) / sx), F32(F32(F32(ptop) / F32(oh)) / sy)
            order = randomize_boxes(rng, len(boxes))
            truth, min_w_h = fill_truth_detection(with_weight(boxes), order, dx, dy, F32(1.0 / float(sx)),
                                                  F32(1.0 / float(sy)), draws.flip, max_boxes, w, h)
            blur = draws.blur
            if min_w_h // 8 < blur and blur > 1:  # no strong blur when a box is small
                blur = min_w_h // 8
            ai = image_data_augmentation(mat, w, h, pleft, ptop, swidth, sheight, draws.flip, draws.hue,
                                         draws.saturation, draws.exposure, draws.noise, blur, truth, rng)
            if mode == 0:
                out_image, truths = ai, truth
            elif mode == MIXUP:
                if k == 0:
                    out_image, truths = ai, truth
                else:
                    out_image = ai * F32(0.5) + out_image * F32(0.5)  # blend_images_cv
                    blend_truth(truths, truth)
            else:
                if k == 0:
                    out_image = np.zeros_like(ai)
                s = shifts(pleft, pright, ptop, pbot, draws.flip, ow, oh, w, h, *cut)
                paste(out_image, ai, k, *cut, s)
                blend_truth_mosaic(truths, truth, w, h, *cut, k, s, self.mosaic_bound)
        return out_image, truths


@dataclass(frozen=True)
class ImageDraws:
    """The draws for one image of a sample, in the C's order: ``resize_r1``, ``resize_r2``,
    ``r1..r4`` (crop offsets), flip, hue, saturation, exposure, blur, noise and, in a mosaic,
    the move to the corner. (The C also draws ``r_scale``, which it does not use.)"""
    resize_r: tuple[float, float]
    r: tuple[float, float, float, float]
    flip: bool
    hue: float
    saturation: float
    exposure: float
    blur: int
    noise: int
    corner: bool


def random_float(rng) -> F32:
    return F32(rng.random())


def draw_image(rng, aug: AlexeyabAugment, mosaic: bool) -> ImageDraws:
    resize_r = (random_float(rng), random_float(rng))
    r = tuple(random_float(rng) for _ in range(4))
    flip = bool(rng.integers(2)) if aug.flip else False
    hue = rand_uniform(rng, -aug.hue, aug.hue)
    saturation = rand_scale(rng, aug.saturation)
    exposure = rand_scale(rng, aug.exposure)
    blur = 0
    if aug.blur:  # 0: none, 1: the background, 2: the whole image (blur=1 blurs the background)
        blur = (0, 1, aug.blur)[rand_int(rng, 0, 2)]
    noise = aug.gaussian_noise if aug.gaussian_noise and rand_int(rng, 0, 1) == 1 else 0
    corner = bool(mosaic and rng.integers(2) == 0)
    return ImageDraws(resize_r, r, flip, float(hue), float(saturation), float(exposure), blur, noise, corner)


def rand_precalc_random(lo, hi, part) -> F32:
    """``rand_precalc_random``: ``part`` in [0, 1) mapped onto [lo, hi] (bounds in either order)."""
    lo, hi = F32(lo), F32(hi)
    if hi < lo:
        lo, hi = hi, lo
    return F32(F32(part) * (hi - lo) + lo)


def crop_offsets(d: ImageDraws, aug: AlexeyabAugment, ow: int, oh: int, w: int, h: int, k: int | None):
    """(pleft, pright, ptop, pbot): how far the crop lies inside each edge of the image
    (negative: padding), from jitter, ``resize``, ``letter_box`` and, for mosaic image ``k``,
    the move that puts its corner facing the cut."""
    dw, dh = int(F32(ow) * F32(aug.jitter)), int(F32(oh) * F32(aug.jitter))
    pleft, pright = int(rand_precalc_random(-dw, dw, d.r[0])), int(rand_precalc_random(-dw, dw, d.r[1]))
    ptop, pbot = int(rand_precalc_random(-dh, dh, d.r[2])), int(rand_precalc_random(-dh, dh, d.r[3]))
    resize = F32(aug.resize)
    down = F32(1) / resize if resize > 1 else resize
    up = F32(1) / resize if resize < 1 else resize
    min_rdw = int(F32(ow) * F32(F32(1) - F32(1) / down) / F32(2))
    min_rdh = int(F32(oh) * F32(F32(1) - F32(1) / down) / F32(2))
    max_rdw = 0 if resize < 1 else int(F32(ow) * F32(F32(1) - F32(1) / up) / F32(2))
    max_rdh = 0 if resize < 1 else int(F32(oh) * F32(F32(1) - F32(1) / up) / F32(2))
    r1, r2 = d.resize_r
    pleft = int(F32(pleft) + rand_precalc_random(min_rdw, max_rdw, r1))
    pright = int(F32(pright) + rand_precalc_random(min_rdw, max_rdw, r2))
    ptop = int(F32(ptop) + rand_precalc_random(min_rdh, max_rdh, r1))
    pbot = int(F32(pbot) + rand_precalc_random(min_rdh, max_rdh, r2))
    if aug.letter_box:
        net_ar = F32(F32(w) / F32(h))
        if F32(F32(ow) / F32(oh)) / net_ar > 1:  # the crop gets taller
            delta = F32(F32(F32(ow) / net_ar) - F32(oh)) / F32(2)
            ptop, pbot = int(F32(ptop) - delta), int(F32(pbot) - delta)
        else:
            delta = F32(F32(F32(oh) * net_ar) - F32(ow)) / F32(2)
            pleft, pright = int(F32(pleft) - delta), int(F32(pright) - delta)
    if k is not None and d.corner:
        if (k in (1, 3)) != d.flip:
            pleft, pright = pleft + pright, 0
        else:
            pleft, pright = 0, pleft + pright
        if k in (0, 1):
            ptop, pbot = 0, ptop + pbot
        else:
            ptop, pbot = ptop + pbot, 0
    return pleft, pright, ptop, pbot


def fill_truth_detection(boxes, order, dx, dy, sx, sy, flip: bool, max_boxes: int, net_w: int, net_h: int):
    """AlexeyAB's ``fill_truth_detection``: shuffle, drop boxes wholly outside the image (or
    centred at exactly 0, 0), correct, keep the first ``max_boxes``, then drop those narrower or
    lower than one network pixel or centred on or outside the edge. Returns the packed truths
    ``[x, y, w, h, class, weight]`` and ``min_w_h``, the smallest side in network pixels (an int,
    0 without boxes)."""
    rows = boxes[order]
    x, y, w, h = rows[:, 1:5].T
    half = F32(2)
    outside = (((x == 0) & (y == 0)) | (x + w / half < 0) | (y + h / half < 0)
                | (x - w / half > 1) | (y - h / half > 1))
    fixed = correct_boxes(rows, dx, dy, sx, sy, flip)[:max_boxes]
    outside = outside[:max_boxes]
    lowest_w, lowest_h = F32(1) / F32(net_w), F32(1) / F32(net_h)
    x, y, w, h = fixed[:, 1:5].T
    keep = (~outside & (w >= lowest_w) & (h >= lowest_h) & (x > 0) & (x <= 1) & (y > 0) & (y <= 1))
    kept = fixed[keep]
    truths = np.zeros((max_boxes, 6), F32)
    truths[:len(kept)] = kept[:, [1, 2, 3, 4, 0, 5]]
    min_w_h = 0
    for bw, bh in kept[:, 3:5]:
        pw, ph = F32(bw) * F32(net_w), F32(bh) * F32(net_h)
        if min_w_h == 0:
            min_w_h = int(pw)
        if min_w_h > pw:
            min_w_h = int(pw)
        if min_w_h > ph:
            min_w_h = int(ph)
    return truths, min_w_h


def blend_truth(first, second) -> None:
    """``blend_truth``: append ``second``'s rows after ``first``'s, as many as fit."""
    count, extra = count_rows(first), count_rows(second)
    n = min(extra, len(first) - count)
    first[count:count + n] = second[:n]


def to_mat(image):
    """(3, h, w) float32 in [0, 1] -> the 8-bit RGB HWC image AlexeyAB's loader holds."""
    return np.ascontiguousarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0))


def image_data_augmentation(mat, w: int, h: int, pleft: int, ptop: int, swidth: int, sheight: int,
                            flip: bool, dhue: float, dsat: float, dexp: float, gaussian_noise: int,
                            blur: int, truths, rng):
    """``image_data_augmentation`` on an 8-bit RGB HWC image; returns (3, h, w) float32."""
    oh, ow = mat.shape[:2]
    if (pleft, ptop, swidth, sheight) == (0, 0, ow, oh):
        sized = cv2.resize(mat, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        cropped = np.empty((sheight, swidth, mat.shape[2]), np.uint8)
        cropped[:] = np.clip(np.rint(cv2.mean(mat)[:mat.shape[2]]), 0, 255)  # setTo(cv::mean(img))
        x0, y0 = max(pleft, 0), max(ptop, 0)
        x1, y1 = min(pleft + swidth, ow), min(ptop + sheight, oh)
        if x1 > x0 and y1 > y0:
            dst_x, dst_y = max(0, -pleft), max(0, -ptop)
            cropped[dst_y:dst_y + y1 - y0, dst_x:dst_x + x1 - x0] = mat[y0:y1, x0:x1]
        sized = cv2.resize(cropped, (w, h), interpolation=cv2.INTER_LINEAR)
    if flip:
        sized = cv2.flip(sized, 1)
    if dsat != 1 or dexp != 1 or dhue != 0:
        hsv = list(cv2.split(cv2.cvtColor(sized, cv2.COLOR_RGB2HSV)))
        hsv[1] = cv2.convertScaleAbs(hsv[1], alpha=dsat)  # Mat *= double: convertTo, values >= 0
        hsv[2] = cv2.convertScaleAbs(hsv[2], alpha=dexp)
        hsv[0] = cv2.add(hsv[0], (float(F32(179) * F32(dhue)), 0, 0, 0))  # saturates, no wrap
        sized = cv2.cvtColor(cv2.merge(hsv), cv2.COLOR_HSV2RGB)
    if blur:
        sized = _blur(sized, blur, truths)
    if gaussian_noise:
        sigma = min(max(gaussian_noise, 0), 127)
        noise = np.clip(np.rint(rng.standard_normal(sized.shape) * sigma), 0, 255).astype(np.uint8)
        sized = cv2.add(sized, noise)
    return (sized.transpose(2, 0, 1).astype(F32) / F32(255)).astype(F32)


def _blur(sized, blur: int, truths):
    """GaussianBlur 17 x 17 with the boxes copied back sharp (blur 1), or (blur/2)*2+1 wide."""
    ksize = BLUR_BACKGROUND_KERNEL if blur == 1 else (blur // 2) * 2 + 1
    dst = cv2.GaussianBlur(sized, (ksize, ksize), 0)
    if blur == 1:
        rows, cols = sized.shape[:2]
        for bx, by, bw, bh in truths[:count_rows(truths), :4]:
            left = int((float(bx) - float(bw) / 2.) * cols)
            top = int((float(by) - float(bh) / 2.) * rows)
            x0, y0 = max(left, 0), max(top, 0)
            x1 = min(left + int(F32(bw) * F32(cols)), cols)
            y1 = min(top + int(F32(bh) * F32(rows)), rows)
            if x1 > x0 and y1 > y0:
                dst[y0:y1, x0:x1] = sized[y0:y1, x0:x1]
    return dst
