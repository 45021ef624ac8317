"""pjreddie's image.c / data.c for detection samples, one pixel at a time: place_image,
HSV distortion, flip, correct_boxes, fill_truth_detection, load_data_detection."""
from __future__ import annotations

import math

import numpy as np

F32 = np.float32
ONE = F32(1)



def c_get_pixel_extend(im, x, y, c):
    if x < 0 or x >= im.shape[2] or y < 0 or y >= im.shape[1]:
        return F32(0)
    return im[c, y, x]


def c_set_pixel(im, x, y, c, val):
    if x < 0 or y < 0 or x >= im.shape[2] or y >= im.shape[1]:
        return
    im[c, y, x] = val


def c_bilinear_interpolate(im, x, y, c):
    ix, iy = math.floor(x), math.floor(y)
    dx, dy = F32(x - F32(ix)), F32(y - F32(iy))
    return ((ONE - dy) * (ONE - dx) * c_get_pixel_extend(im, ix, iy, c)
            + dy * (ONE - dx) * c_get_pixel_extend(im, ix, iy + 1, c)
            + (ONE - dy) * dx * c_get_pixel_extend(im, ix + 1, iy, c)
            + dy * dx * c_get_pixel_extend(im, ix + 1, iy + 1, c))


def c_place_image(im, w, h, dx, dy, canvas):
    for c in range(im.shape[0]):
        for y in range(h):
            for x in range(w):
                rx = int(F32(x) / F32(w) * F32(im.shape[2]))
                ry = int(F32(y) / F32(h) * F32(im.shape[1]))
                c_set_pixel(canvas, x + dx, y + dy, c, c_bilinear_interpolate(im, F32(rx), F32(ry), c))


def three_way_max(a, b, c):
    return (a if a > c else c) if a > b else (b if b > c else c)


def three_way_min(a, b, c):
    return (a if a < c else c) if a < b else (b if b < c else c)


def c_rgb_to_hsv(im):
    out = im.copy()
    for j in range(im.shape[1]):
        for i in range(im.shape[2]):
            r, g, b = im[:, j, i]
            mx, mn = three_way_max(r, g, b), three_way_min(r, g, b)
            delta = F32(mx - mn)
            if mx == 0:
                s = h = F32(0)
            else:
                s = F32(delta / mx)
                with np.errstate(invalid="ignore", divide="ignore"):
                    if r == mx:
                        h = (g - b) / delta
                    elif g == mx:
                        h = F32(2) + (b - r) / delta
                    else:
                        h = F32(4) + (r - g) / delta
                if h < 0:
                    h = h + F32(6)
                h = F32(float(h) / 6.)  # h/6. is a double division
            out[:, j, i] = h, s, mx
    return out


def c_hsv_to_rgb(im):
    out = im.copy()
    for j in range(im.shape[1]):
        for i in range(im.shape[2]):
            h, s, v = F32(6) * im[0, j, i], im[1, j, i], im[2, j, i]
            if s == 0:
                r = g = b = v
            else:
                index = math.floor(float(h))
                f = F32(h - F32(index))
                p, q, t = v * (ONE - s), v * (ONE - s * f), v * (ONE - s * (ONE - f))
                r, g, b = {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v), 4: (t, p, v)}.get(
                    index, (v, p, q))
            out[:, j, i] = r, g, b
    return out


def c_distort_image(im, hue, sat, val):
    im = c_rgb_to_hsv(im)
    for j in range(im.shape[1]):
        for i in range(im.shape[2]):
            im[1, j, i] = im[1, j, i] * F32(sat)
            im[2, j, i] = im[2, j, i] * F32(val)
            h = im[0, j, i] + F32(hue)
            if h > 1:
                h = h - ONE
            if h < 0:
                h = h + ONE
            im[0, j, i] = h
    im = c_hsv_to_rgb(im)
    return np.array([[[min(max(v, F32(0)), ONE) for v in row] for row in ch] for ch in im], dtype=F32)


def c_flip_image(im):
    im = im.copy()
    w = im.shape[2]
    for k in range(im.shape[0]):
        for i in range(im.shape[1]):
            for j in range(w // 2):
                im[k, i, j], im[k, i, w - j - 1] = im[k, i, w - j - 1], im[k, i, j]
    return im


def c_constrain(lo, hi, a):
    return F32(lo) if a < lo else F32(hi) if a > hi else a


def c_read_boxes(rows):
    boxes = []
    for cls, x, y, w, h in rows:
        x, y, w, h = F32(x), F32(y), F32(w), F32(h)
        boxes.append(dict(id=int(cls), x=x, y=y, w=w, h=h, left=x - w / F32(2), right=x + w / F32(2),
                          top=y - h / F32(2), bottom=y + h / F32(2)))
    return boxes


def c_randomize_boxes(b, indices):
    for i, index in enumerate(indices):
        b[i], b[index] = b[index], b[i]


def c_correct_boxes(boxes, dx, dy, sx, sy, flip):
    for b in boxes:
        b["left"] = b["left"] * sx - dx
        b["right"] = b["right"] * sx - dx
        b["top"] = b["top"] * sy - dy
        b["bottom"] = b["bottom"] * sy - dy
        if flip:
            b["left"], b["right"] = F32(1. - b["right"]), F32(1. - b["left"])
        for k in ("left", "right", "top", "bottom"):
            b[k] = c_constrain(0, 1, b[k])
        b["x"] = (b["left"] + b["right"]) / F32(2)
        b["y"] = (b["top"] + b["bottom"]) / F32(2)
        b["w"] = c_constrain(0, 1, b["right"] - b["left"])
        b["h"] = c_constrain(0, 1, b["bottom"] - b["top"])


def c_fill_truth_detection(rows, indices, num_boxes, flip, dx, dy, sx, sy):
    """The filled rows of Darknet's truth, [x, y, w, h, id], in order."""
    boxes = c_read_boxes(rows)
    c_randomize_boxes(boxes, indices)
    c_correct_boxes(boxes, dx, dy, sx, sy, flip)
    filled = []
    for b in boxes[:num_boxes]:
        if b["w"] < .001 or b["h"] < .001:
            continue
        filled.append((b["x"], b["y"], b["w"], b["h"], F32(b["id"])))
    return np.array(filled, dtype=F32).reshape(-1, 5)


def c_load_data_detection(orig, rows, w, h, max_boxes, nw, nh, dx, dy, hue, sat, exp, flip, indices):
    sized = np.full((3, h, w), 0.5, dtype=F32)
    c_place_image(orig, int(nw), int(nh), int(dx), int(dy), sized)
    sized = c_distort_image(sized, hue, sat, exp)
    if flip:
        sized = c_flip_image(sized)
    truth = c_fill_truth_detection(rows, indices, max_boxes, flip, F32(-F32(dx) / F32(w)),
                                   F32(-F32(dy) / F32(h)), F32(F32(nw) / F32(w)), F32(F32(nh) / F32(h)))
    return sized, truth


def order_of(indices):
    order = list(range(len(indices)))
    c_randomize_boxes(order, indices)
    return np.array(order)
