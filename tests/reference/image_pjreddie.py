"""pjreddie's image.c: resize_image, embed_image, letterbox_image (and its size rule), on CHW
float32 arrays, one pixel at a time as get_pixel / set_pixel / add_pixel do."""
from __future__ import annotations

import numpy as np

from .cmath import c_div

F32 = np.float32


def im_get_pixel(m, mw, mh, mc, x, y, c):
    assert x < mw and y < mh and c < mc     # get_pixel's assert (no lower bound)
    return m[c * mh * mw + y * mw + x]


def im_set_pixel(m, mw, mh, mc, x, y, c, val):
    if x < 0 or y < 0 or c < 0 or x >= mw or y >= mh or c >= mc:
        return
    m[c * mh * mw + y * mw + x] = val


def im_add_pixel(m, mw, mh, mc, x, y, c, val):
    assert x < mw and y < mh and c < mc
    m[c * mh * mw + y * mw + x] += val


def darknet_resize_image(im, w, h):
    im_c, im_h, im_w = im.shape
    data = im.reshape(-1)
    resized = np.zeros(w * h * im_c, dtype=F32)      # make_image: calloc
    part = np.zeros(w * im_h * im_c, dtype=F32)
    with np.errstate(divide="ignore", invalid="ignore"):   # w == 1: the scale is never used
        w_scale = F32(im_w - 1) / F32(w - 1)         # (float)(im.w - 1) / (w - 1)
        h_scale = F32(im_h - 1) / F32(h - 1)
    one = F32(1)
    for k in range(im_c):
        for r in range(im_h):
            for c in range(w):
                if c == w - 1 or im_w == 1:
                    val = im_get_pixel(data, im_w, im_h, im_c, im_w - 1, r, k)
                else:
                    sx = F32(c) * w_scale
                    ix = int(sx)
                    dx = sx - F32(ix)
                    val = ((one - dx) * im_get_pixel(data, im_w, im_h, im_c, ix, r, k)
                           + dx * im_get_pixel(data, im_w, im_h, im_c, ix + 1, r, k))
                im_set_pixel(part, w, im_h, im_c, c, r, k, val)
    for k in range(im_c):
        for r in range(h):
            sy = F32(r) * h_scale
            iy = int(sy)
            dy = sy - F32(iy)
            for c in range(w):
                val = (one - dy) * im_get_pixel(part, w, im_h, im_c, c, iy, k)
                im_set_pixel(resized, w, h, im_c, c, r, k, val)
            if r == h - 1 or im_h == 1:
                continue
            for c in range(w):
                val = dy * im_get_pixel(part, w, im_h, im_c, c, iy + 1, k)
                im_add_pixel(resized, w, h, im_c, c, r, k, val)
    return resized.reshape(im_c, h, w)


def darknet_embed_image(source, dest, dest_w, dest_h, dx, dy):
    sc, sh, sw = source.shape
    src = source.reshape(-1)
    for k in range(sc):
        for y in range(sh):
            for x in range(sw):
                val = im_get_pixel(src, sw, sh, sc, x, y, k)
                im_set_pixel(dest, dest_w, dest_h, sc, dx + x, dy + y, k, val)


def darknet_letterbox_size(im_w, im_h, w, h):
    new_w, new_h = im_w, im_h
    if F32(w) / F32(im_w) < F32(h) / F32(im_h):   # ((float)w/im.w) < ((float)h/im.h)
        new_w = w
        new_h = c_div(im_h * w, im_w)
    else:
        new_h = h
        new_w = c_div(im_w * h, im_h)
    return new_w, new_h


def darknet_letterbox_image(im, w, h):
    im_c, im_h, im_w = im.shape
    new_w, new_h = darknet_letterbox_size(im_w, im_h, w, h)
    resized = darknet_resize_image(im, new_w, new_h)
    boxed = np.zeros(w * h * im_c, dtype=F32)
    boxed[:] = F32(.5)                               # fill_image(boxed, .5)
    darknet_embed_image(resized, boxed, w, h, c_div(w - new_w, 2), c_div(h - new_h, 2))
    return boxed.reshape(im_c, h, w)
