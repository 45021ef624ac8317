"""Box geometry the deltas share: box.c's box_iou, AlexeyAB's GIoU/DIoU/CIoU and dx_box_iou.

Boxes are (x, y, w, h) tuples of broadcastable tensors, centre and size relative to the image.
"""
from __future__ import annotations

import math

import torch


def box_iou(ax, ay, aw, ah, bx, by, bw, bh):
    """box.c's box_iou on broadcast tensors: a negative overlap on either axis is no overlap."""
    w = torch.minimum(ax + aw / 2, bx + bw / 2) - torch.maximum(ax - aw / 2, bx - bw / 2)
    h = torch.minimum(ay + ah / 2, by + bh / 2) - torch.maximum(ay - ah / 2, by - bh / 2)
    inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
    return inter / (aw * ah + bw * bh - inter)


def enclosing(ax, ay, aw, ah, bx, by, bw, bh):
    """box_c: width and height of the smallest box holding both."""
    cw = torch.maximum(ax + aw / 2, bx + bw / 2) - torch.minimum(ax - aw / 2, bx - bw / 2)
    ch = torch.maximum(ay + ah / 2, by + bh / 2) - torch.minimum(ay - ah / 2, by - bh / 2)
    return cw, ch


def iou_of(kind, a, b):
    """box_iou / box_giou / box_diou / box_ciou of AlexeyAB's box.c (its box_iou is 0 where the
    intersection or the union is)."""
    iou = box_iou(*a, *b)
    iou = torch.where(torch.isfinite(iou), iou, 0)
    if kind == "iou":
        return iou
    cw, ch = enclosing(*a, *b)
    if kind == "giou":
        c = cw * ch
        union = a[2] * a[3] + b[2] * b[3] - intersection(a, b)
        return torch.where(c == 0, iou, iou - (c - union) / c)
    c = cw * cw + ch * ch
    d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
    if kind == "diou":
        return torch.where(c == 0, iou, iou - torch.pow((d / c).double(), 0.6).float())
    ar = (torch.atan((b[2] / b[3]).double()) - torch.atan((a[2] / a[3]).double()))
    ar_loss = (4 / (math.pi * math.pi) * ar * ar).float()
    alpha = (ar_loss / ((1 - iou + ar_loss).double() + 0.000001)).float()
    return torch.where(c == 0, iou, iou - (d / c + alpha * ar_loss))


def intersection(a, b):
    w = torch.minimum(a[0] + a[2] / 2, b[0] + b[2] / 2) - torch.maximum(a[0] - a[2] / 2, b[0] - b[2] / 2)
    h = torch.minimum(a[1] + a[3] / 2, b[1] + b[3] / 2) - torch.maximum(a[1] - a[3] / 2, b[1] - b[3] / 2)
    return torch.where((w < 0) | (h < 0), 0, w * h)


def dx_box_iou(pred, truth, kind):
    """box.c's dx_box_iou: the gradient of IoU (or GIoU/DIoU/CIoU) with respect to the predicted
    x, y, w, h, as (dx, dy, dw, dh)."""
    px, py, pw, ph = pred
    tx, ty, tw, th = truth
    top, bot, left, right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
    pt, pb = torch.minimum(top, bot), torch.maximum(top, bot)
    pl, pr = torch.minimum(left, right), torch.maximum(left, right)
    t_top, t_bot, t_left, t_right = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2
    X = (pb - pt) * (pr - pl)
    Xhat = (t_bot - t_top) * (t_right - t_left)
    Ih = torch.minimum(pb, t_bot) - torch.maximum(pt, t_top)
    Iw = torch.minimum(pr, t_right) - torch.maximum(pl, t_left)
    I = Iw * Ih
    U = X + Xhat - I
    S = (px - tx) * (px - tx) + (py - ty) * (py - ty)
    gcw = torch.maximum(pr, t_right) - torch.minimum(pl, t_left)
    gch = torch.maximum(pb, t_bot) - torch.minimum(pt, t_top)
    gc = gcw * gch
    zero = torch.zeros_like(px)
    dX = (-(pr - pl), pr - pl, -(pb - pt), pb - pt)  # t, b, l, r
    dI = (torch.where(pt > t_top, -Iw, zero), torch.where(pb < t_bot, Iw, zero),
          torch.where(pl > t_left, -Ih, zero), torch.where(pr < t_right, Ih, zero))
    dU = [x - i for x, i in zip(dX, dI)]
    dC = (torch.where(pt < t_top, -gcw, zero), torch.where(pb > t_bot, gcw, zero),
          torch.where(pl < t_left, -gch, zero), torch.where(pr > t_right, gch, zero))
    p = [torch.where(U > 0, (U * i - I * u) / (U * U), zero) for i, u in zip(dI, dU)]
    p[0] = torch.where(top < bot, p[0], p[1])  # corner selection; p_db and p_dr keep their values
    p[2] = torch.where(left < right, p[2], p[3])
    apart = (Iw <= 0) | (Ih <= 0)
    if kind == "giou":
        term = [(gc * u - U * c) / (gc * gc) for u, c in zip(dU, dC)]
        p = [torch.where(apart, t, torch.where(gc > 0, v + t, v)) for v, t in zip(p, term)]
    ct, cb = torch.minimum(py - ph / 2, ty - th / 2), torch.maximum(py + ph / 2, ty + th / 2)
    cl, cr = torch.minimum(px - pw / 2, tx - tw / 2), torch.maximum(px + pw / 2, tx + tw / 2)
    cw, ch = cr - cl, cb - ct
    C = cw * cw + ch * ch
    one = torch.ones_like(px)
    dcw_dx = torch.where(pr > t_right, one, zero) - torch.where(pl < t_left, one, zero)
    dcw_dw = torch.where(pr > t_right, one / 2, zero) - torch.where(pl < t_left, -one / 2, zero)
    dch_dy = torch.where(pb > t_bot, one, zero) - torch.where(pt < t_top, one, zero)
    dch_dh = torch.where(pb > t_bot, one / 2, zero) - torch.where(pt < t_top, -one / 2, zero)
    d = [p[2] + p[3], p[0] + p[1], p[3] - p[2], p[1] - p[0]]  # dx, dy, dw, dh
    if kind in ("diou", "ciou"):
        term = [(2 * (tx - px) * C - (2 * cw * dcw_dx) * S) / (C * C),
                (2 * (ty - py) * C - (2 * ch * dch_dy) * S) / (C * C),
                (2 * cw * dcw_dw) * S / (C * C), (2 * ch * dch_dh) * S / (C * C)]
        if kind == "ciou":
            ar = torch.atan((tw / th).double()) - torch.atan((pw / ph).double())
            ar_loss = (4 / (math.pi * math.pi) * ar * ar).float()
            alpha = (ar_loss / ((1 - I / U + ar_loss).double() + 0.000001)).float()
            term[2] = term[2] + alpha * (8 / (math.pi * math.pi) * ar * ph.double()).float()
            term[3] = term[3] + alpha * (-8 / (math.pi * math.pi) * ar * pw.double()).float()
        d = [torch.where(apart, t, torch.where(C > 0, v + t, v)) for v, t in zip(d, term)]
    return d
