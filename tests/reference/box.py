"""box.c of both forks: pjreddie's overlap / box_intersection / box_union / box_iou, and
AlexeyAB's box_iou (0 where the intersection or the union is), GIoU / DIoU / CIoU and the
dx_box_iou gradient. Boxes are (x, y, w, h) sequences of floats."""
from __future__ import annotations

import math


def overlap(x1, w1, x2, w2):
    l1 = x1 - w1 / 2
    l2 = x2 - w2 / 2
    left = l1 if l1 > l2 else l2
    r1 = x1 + w1 / 2
    r2 = x2 + w2 / 2
    right = r1 if r1 < r2 else r2
    return right - left


def box_intersection(a, b):
    w = overlap(a[0], a[2], b[0], b[2])
    h = overlap(a[1], a[3], b[1], b[3])
    if w < 0 or h < 0:
        return 0.0
    return w * h


def box_union(a, b):
    i = box_intersection(a, b)
    return a[2] * a[3] + b[2] * b[3] - i


def box_iou(a, b):
    return box_intersection(a, b) / box_union(a, b)


# -- AlexeyAB's additions ---------------------------------------------------------------------
def box_iou_alexeyab(a, b):
    """AlexeyAB's box_iou: 0 where the intersection or the union is."""
    i, u = box_intersection(a, b), box_union(a, b)
    if i == 0 or u == 0:
        return 0
    return i / u


def box_c(a, b):
    top = min(a[1] - a[3] / 2, b[1] - b[3] / 2)
    bot = max(a[1] + a[3] / 2, b[1] + b[3] / 2)
    left = min(a[0] - a[2] / 2, b[0] - b[2] / 2)
    right = max(a[0] + a[2] / 2, b[0] + b[2] / 2)
    return top, bot, left, right


def box_giou(a, b):
    top, bot, left, right = box_c(a, b)
    c = (right - left) * (bot - top)
    iou = box_iou_alexeyab(a, b)
    if c == 0:
        return iou
    return iou - (c - box_union(a, b)) / c


def box_diounms(a, b, beta1):
    top, bot, left, right = box_c(a, b)
    w, h = right - left, bot - top
    c = w * w + h * h
    iou = box_iou_alexeyab(a, b)
    if c == 0:
        return iou
    d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
    return iou - (d / c) ** beta1


def box_diou(a, b):
    return box_diounms(a, b, 0.6)


def box_ciou(a, b):
    top, bot, left, right = box_c(a, b)
    w, h = right - left, bot - top
    c = w * w + h * h
    iou = box_iou_alexeyab(a, b)
    if c == 0:
        return iou
    u = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
    d = u / c
    ar_gt, ar_pred = b[2] / b[3], a[2] / a[3]
    ar_loss = 4 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) ** 2
    alpha = ar_loss / (1 - iou + ar_loss + 0.000001)
    return iou - (d + alpha * ar_loss)


def box_iou_kind(a, b, kind):
    return {"iou": box_iou_alexeyab, "giou": box_giou, "diou": box_diou, "ciou": box_ciou}[kind](a, b)


def dx_box_iou(pred, truth, iou_loss):
    """box.c's dx_box_iou, returning (dt, db, dl, dr) = (dx, dy, dw, dh)."""
    top, bot = pred[1] - pred[3] / 2, pred[1] + pred[3] / 2
    left, right = pred[0] - pred[2] / 2, pred[0] + pred[2] / 2
    pred_t, pred_b = min(top, bot), max(top, bot)
    pred_l, pred_r = min(left, right), max(left, right)
    t_top, t_bot = truth[1] - truth[3] / 2, truth[1] + truth[3] / 2
    t_left, t_right = truth[0] - truth[2] / 2, truth[0] + truth[2] / 2
    X = (pred_b - pred_t) * (pred_r - pred_l)
    Xhat = (t_bot - t_top) * (t_right - t_left)
    Ih = min(pred_b, t_bot) - max(pred_t, t_top)
    Iw = min(pred_r, t_right) - max(pred_l, t_left)
    I = Iw * Ih
    U = X + Xhat - I
    S = (pred[0] - truth[0]) ** 2 + (pred[1] - truth[1]) ** 2
    giou_Cw = max(pred_r, t_right) - min(pred_l, t_left)
    giou_Ch = max(pred_b, t_bot) - min(pred_t, t_top)
    giou_C = giou_Cw * giou_Ch
    dX_wrt_t, dX_wrt_b = -1 * (pred_r - pred_l), pred_r - pred_l
    dX_wrt_l, dX_wrt_r = -1 * (pred_b - pred_t), pred_b - pred_t
    dI_wrt_t = -1 * Iw if pred_t > t_top else 0
    dI_wrt_b = Iw if pred_b < t_bot else 0
    dI_wrt_l = -1 * Ih if pred_l > t_left else 0
    dI_wrt_r = Ih if pred_r < t_right else 0
    dU_wrt_t, dU_wrt_b = dX_wrt_t - dI_wrt_t, dX_wrt_b - dI_wrt_b
    dU_wrt_l, dU_wrt_r = dX_wrt_l - dI_wrt_l, dX_wrt_r - dI_wrt_r
    dC_wrt_t = -1 * giou_Cw if pred_t < t_top else 0
    dC_wrt_b = giou_Cw if pred_b > t_bot else 0
    dC_wrt_l = -1 * giou_Ch if pred_l < t_left else 0
    dC_wrt_r = giou_Ch if pred_r > t_right else 0
    p_dt = p_db = p_dl = p_dr = 0
    if U > 0:
        p_dt = ((U * dI_wrt_t) - (I * dU_wrt_t)) / (U * U)
        p_db = ((U * dI_wrt_b) - (I * dU_wrt_b)) / (U * U)
        p_dl = ((U * dI_wrt_l) - (I * dU_wrt_l)) / (U * U)
        p_dr = ((U * dI_wrt_r) - (I * dU_wrt_r)) / (U * U)
    p_dt = p_dt if top < bot else p_db
    p_db = p_db if top < bot else p_dt
    p_dl = p_dl if left < right else p_dr
    p_dr = p_dr if left < right else p_dl
    if iou_loss == "giou":
        if giou_C > 0:
            p_dt += ((giou_C * dU_wrt_t) - (U * dC_wrt_t)) / (giou_C * giou_C)
            p_db += ((giou_C * dU_wrt_b) - (U * dC_wrt_b)) / (giou_C * giou_C)
            p_dl += ((giou_C * dU_wrt_l) - (U * dC_wrt_l)) / (giou_C * giou_C)
            p_dr += ((giou_C * dU_wrt_r) - (U * dC_wrt_r)) / (giou_C * giou_C)
        if Iw <= 0 or Ih <= 0:
            p_dt = ((giou_C * dU_wrt_t) - (U * dC_wrt_t)) / (giou_C * giou_C)
            p_db = ((giou_C * dU_wrt_b) - (U * dC_wrt_b)) / (giou_C * giou_C)
            p_dl = ((giou_C * dU_wrt_l) - (U * dC_wrt_l)) / (giou_C * giou_C)
            p_dr = ((giou_C * dU_wrt_r) - (U * dC_wrt_r)) / (giou_C * giou_C)
    Ct = min(pred[1] - pred[3] / 2, truth[1] - truth[3] / 2)
    Cb = max(pred[1] + pred[3] / 2, truth[1] + truth[3] / 2)
    Cl = min(pred[0] - pred[2] / 2, truth[0] - truth[2] / 2)
    Cr = max(pred[0] + pred[2] / 2, truth[0] + truth[2] / 2)
    Cw, Ch = Cr - Cl, Cb - Ct
    C = Cw * Cw + Ch * Ch
    dCt_dx, dCt_dy, dCt_dw, dCt_dh = 0, (1 if pred_t < t_top else 0), 0, (-0.5 if pred_t < t_top else 0)
    dCb_dx, dCb_dy, dCb_dw, dCb_dh = 0, (1 if pred_b > t_bot else 0), 0, (0.5 if pred_b > t_bot else 0)
    dCl_dx, dCl_dy, dCl_dw, dCl_dh = (1 if pred_l < t_left else 0), 0, (-0.5 if pred_l < t_left else 0), 0
    dCr_dx, dCr_dy, dCr_dw, dCr_dh = (1 if pred_r > t_right else 0), 0, (0.5 if pred_r > t_right else 0), 0
    dCw_dx, dCw_dy, dCw_dw, dCw_dh = dCr_dx - dCl_dx, dCr_dy - dCl_dy, dCr_dw - dCl_dw, dCr_dh - dCl_dh
    dCh_dx, dCh_dy, dCh_dw, dCh_dh = dCb_dx - dCt_dx, dCb_dy - dCt_dy, dCb_dw - dCt_dw, dCb_dh - dCt_dh
    p_dx, p_dy = p_dl + p_dr, p_dt + p_db
    p_dw, p_dh = p_dr - p_dl, p_db - p_dt
    tx, ty, px, py = truth[0], truth[1], pred[0], pred[1]
    if iou_loss == "diou":
        if C > 0:
            p_dx += (2 * (tx - px) * C - (2 * Cw * dCw_dx + 2 * Ch * dCh_dx) * S) / (C * C)
            p_dy += (2 * (ty - py) * C - (2 * Cw * dCw_dy + 2 * Ch * dCh_dy) * S) / (C * C)
            p_dw += (2 * Cw * dCw_dw + 2 * Ch * dCh_dw) * S / (C * C)
            p_dh += (2 * Cw * dCw_dh + 2 * Ch * dCh_dh) * S / (C * C)
        if Iw <= 0 or Ih <= 0:
            p_dx = (2 * (tx - px) * C - (2 * Cw * dCw_dx + 2 * Ch * dCh_dx) * S) / (C * C)
            p_dy = (2 * (ty - py) * C - (2 * Cw * dCw_dy + 2 * Ch * dCh_dy) * S) / (C * C)
            p_dw = (2 * Cw * dCw_dw + 2 * Ch * dCh_dw) * S / (C * C)
            p_dh = (2 * Cw * dCw_dh + 2 * Ch * dCh_dh) * S / (C * C)
    if iou_loss == "ciou":
        ar_gt, ar_pred = truth[2] / truth[3], pred[2] / pred[3]
        ar_loss = 4 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) ** 2
        alpha = ar_loss / (1 - I / U + ar_loss + 0.000001)
        ar_dw = 8 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) * pred[3]
        ar_dh = -8 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) * pred[2]
        if C > 0:
            p_dx += (2 * (tx - px) * C - (2 * Cw * dCw_dx + 2 * Ch * dCh_dx) * S) / (C * C)
            p_dy += (2 * (ty - py) * C - (2 * Cw * dCw_dy + 2 * Ch * dCh_dy) * S) / (C * C)
            p_dw += (2 * Cw * dCw_dw + 2 * Ch * dCh_dw) * S / (C * C) + alpha * ar_dw
            p_dh += (2 * Cw * dCw_dh + 2 * Ch * dCh_dh) * S / (C * C) + alpha * ar_dh
        if Iw <= 0 or Ih <= 0:
            p_dx = (2 * (tx - px) * C - (2 * Cw * dCw_dx + 2 * Ch * dCh_dx) * S) / (C * C)
            p_dy = (2 * (ty - py) * C - (2 * Cw * dCw_dy + 2 * Ch * dCh_dy) * S) / (C * C)
            p_dw = (2 * Cw * dCw_dw + 2 * Ch * dCh_dw) * S / (C * C) + alpha * ar_dw
            p_dh = (2 * Cw * dCw_dh + 2 * Ch * dCh_dh) * S / (C * C) + alpha * ar_dh
    return p_dx, p_dy, p_dw, p_dh
