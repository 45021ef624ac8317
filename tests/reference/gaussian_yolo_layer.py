"""AlexeyAB's gaussian_yolo_layer.c: forward_gaussian_yolo_layer's training branch (CPU), and
correct_gaussian_yolo_boxes."""
from __future__ import annotations

import math

import numpy as np
import torch

from .activations import logistic
from .box import box_giou, box_iou_kind, dx_box_iou
from .box import box_iou_alexeyab as box_iou

F32 = np.float32


def c_forward_gaussian(x, truths, layer, net_w, net_h):
    """Returns (l.delta, l.cost, printed figures, counters) for raw x (batch, n, 9 + classes, h, w)."""
    L = layer.settings
    batch, n, _, lh, lw = x.shape
    classes, biases, mask, total = layer.classes, [v for a in layer.anchors for v in a], layer.mask, len(layer.anchors)
    outputs = lh * lw * n * (classes + 8 + 1)
    stride = lw * lh
    mult_table = L.classes_multipliers
    point = L.yolo_point
    seen = dict(ignored=0, not_matched=0, unmatched=0, hit=0, extra=0, accumulated=0, quirk=0, averaged=0)

    def entry_index(b, location, entry):
        nn, loc = location // (lw * lh), location % (lw * lh)
        return b * outputs + nn * lw * lh * (8 + classes + 1) + entry * lw * lh + loc

    output = x.reshape(-1).tolist()
    for b in range(batch):
        for nn in range(n):
            for first, count, scaled in ((0, 2, True), (2, 2, True), (5, 1, False), (7, 1, False),
                                         (8, 1 + classes, False)):
                index = entry_index(b, nn * lw * lh, first)
                for k in range(count * stride):
                    output[index + k] = logistic(output[index + k])
                if scaled:  # scal_add_cpu's float ALPHA and BETA
                    alpha = float(F32(L.scale_x_y))
                    beta = float(F32(-0.5 * (alpha - 1)))
                    for k in range(stride):
                        output[index + k] = output[index + k] * alpha + beta
    delta = [0.0] * (batch * outputs)
    truth = truths.reshape(batch, -1).tolist()

    def get_box(nb, index, i, j):
        w = math.exp(output[index + 4 * stride]) * biases[2 * nb] / net_w
        h = math.exp(output[index + 6 * stride]) * biases[2 * nb + 1] / net_h
        x0, y0 = (i + output[index]) / lw, (j + output[index + 2 * stride]) / lh
        if point == "left_top":
            return x0 + w / 2, y0 + h / 2, w, h
        if point == "right_bottom":
            return x0 - w / 2, y0 - h / 2, w, h
        return x0, y0, w, h

    def delta_box(tr, nb, index, i, j, scale, iou_normalizer):
        if any(delta[index + k * stride] for k in range(8)):
            seen["accumulated"] += 1
        pred = get_box(nb, index, i, j)
        iou, giou = box_iou(pred, tr), box_giou(pred, tr)
        pred = (pred[0], pred[1], pred[2] or 1.0, pred[3] or 1.0)
        tx, ty = tr[0] * lw - i, tr[1] * lh - j
        tw, th = math.log(tr[2] * net_w / biases[2 * nb]), math.log(tr[3] * net_h / biases[2 * nb + 1])
        if point == "left_top":
            tx, ty = (tr[0] - tr[2] / 2) * lw - i, (tr[1] - tr[3] / 2) * lh - j
        elif point == "right_bottom":
            tx, ty = (tr[0] + tr[2] / 2) * lw - i, (tr[1] + tr[3] / 2) * lh - j
        d, u = [], []
        for k, goal in enumerate((tx, ty, tw, th)):
            mu, sigma = output[index + 2 * k * stride], output[index + (2 * k + 1) * stride]
            in_exp = (goal - mu) / sigma
            in_exp_2 = in_exp ** 2
            normal_dist = math.exp(in_exp_2 * (-1. / 2.)) / (math.sqrt(math.pi * 2.0) * (sigma + 0.3))
            temp = (1. / 2.) * 1. / (normal_dist + 1e-9) * normal_dist * scale
            d.append(temp * in_exp * (1. / sigma))
            u.append(temp * (in_exp_2 / sigma - 1. / (sigma + 0.3)))
        if L.iou_loss != "mse":
            iou = giou
            dx, dy, dw, dh = dx_box_iou(pred, tr, L.iou_loss)
            if point == "left_top":
                dx, dy = dx - dw / 2, dy - dh / 2
            elif point == "right_bottom":
                dx, dy = dx + dw / 2, dy + dh / 2
            dw *= math.exp(output[index + 4 * stride])
            dh *= math.exp(output[index + 6 * stride])
            d = [dx, dy, dw, dh]
        d = [v * iou_normalizer for v in d]
        u = [v * L.uc_normalizer for v in u]
        d, u = ([0.0 if not math.isfinite(v) else v for v in vs] for vs in (d, u))
        if math.isfinite(L.max_delta):
            d, u = ([max(-L.max_delta, min(L.max_delta, v)) for v in vs] for vs in (d, u))
        for k in range(4):
            delta[index + 2 * k * stride] += d[k]
            delta[index + (2 * k + 1) * stride] += u[k]
        return iou

    def smoothed(y_true):
        """``y_true * (1 - eps) + 0.5 * eps`` in C's types: float eps and y_true, the half in double."""
        e = F32(L.label_smooth_eps)
        return float(F32(float(F32(y_true) * F32(1 - e)) + 0.5 * float(e)))

    def delta_class(index, class_id, avg_cat):
        eps = L.label_smooth_eps
        if delta[index]:
            seen["quirk"] += 1
            y_true = smoothed(1) if eps else 1
            delta[index + stride * class_id] = y_true - output[index + stride * class_id]
            if mult_table:
                delta[index + stride * class_id] *= mult_table[class_id]
            if avg_cat is not None:
                avg_cat[0] += output[index + stride * class_id]
            return
        for k in range(classes):
            y_true = 1 if k == class_id else 0
            if eps:
                y_true = smoothed(y_true)
            delta[index + stride * k] = y_true - output[index + stride * k]
            if mult_table and k == class_id:
                delta[index + stride * class_id] *= mult_table[class_id] * L.cls_normalizer
            if k == class_id and avg_cat is not None:
                avg_cat[0] += output[index + stride * k]

    avg_iou = recall = recall75 = avg_obj = avg_anyobj = 0.0
    avg_cat = [0.0]
    count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for nn in range(n):
                    class_index = entry_index(b, nn * lw * lh + j * lw + i, 9)
                    obj_index = entry_index(b, nn * lw * lh + j * lw + i, 8)
                    box_index = entry_index(b, nn * lw * lh + j * lw + i, 0)
                    pred = get_box(mask[nn], box_index, i, j)
                    best_match_iou, best_match_t, best_iou, best_t = 0, 0, 0, 0
                    for t in range(L.max_boxes):
                        tr = truth[b][t * 6:t * 6 + 4]
                        if not tr[0]:
                            break
                        class_id_match = any(output[class_index + stride * k] > 0.25 for k in range(classes))
                        iou = box_iou(pred, tr)
                        if iou > best_match_iou and class_id_match:
                            best_match_iou, best_match_t = iou, t
                        if iou > best_iou:
                            best_iou, best_t = iou, t
                    avg_anyobj += output[obj_index]
                    delta[obj_index] = L.obj_normalizer * (0 - output[obj_index])
                    seen["not_matched"] += best_iou > L.ignore_thresh >= best_match_iou
                    seen["unmatched"] += best_iou <= L.ignore_thresh
                    if best_match_iou > L.ignore_thresh:
                        seen["ignored"] += 1
                        if L.objectness_smooth:
                            delta[obj_index] = L.obj_normalizer * (best_match_iou ** 2 - output[obj_index])
                            delta_class(class_index, int(truth[b][best_match_t * 6 + 4]), None)
                        else:
                            delta[obj_index] = 0
                    if best_iou > L.truth_thresh:
                        seen["hit"] += 1
                        iou_multiplier = best_iou * best_iou
                        if L.objectness_smooth:
                            delta[obj_index] = L.obj_normalizer * (iou_multiplier - output[obj_index])
                        else:
                            delta[obj_index] = L.obj_normalizer * (1 - output[obj_index])
                        class_id = int(truth[b][best_t * 6 + 4])
                        delta_class(class_index, class_id, None)
                        class_multiplier = mult_table[class_id] if mult_table else 1.0
                        if L.objectness_smooth:
                            delta[class_index + stride * class_id] = class_multiplier * (
                                iou_multiplier - output[class_index + stride * class_id])
                        tr = truth[b][best_t * 6:best_t * 6 + 4]
                        delta_box(tr, mask[nn], box_index, i, j, 2 - tr[2] * tr[3], L.iou_normalizer * class_multiplier)

        def train(tr, t, nb, mask_n, i, j):
            nonlocal avg_iou, recall, recall75, avg_obj, count
            class_id = int(truth[b][t * 6 + 4])
            box_index = entry_index(b, mask_n * lw * lh + j * lw + i, 0)
            class_multiplier = mult_table[class_id] if mult_table else 1.0
            iou = delta_box(tr, nb, box_index, i, j, 2 - tr[2] * tr[3], L.iou_normalizer * class_multiplier)
            obj_index = entry_index(b, mask_n * lw * lh + j * lw + i, 8)
            avg_obj += output[obj_index]
            delta[obj_index] = class_multiplier * L.obj_normalizer * (1 - output[obj_index])
            delta_class(entry_index(b, mask_n * lw * lh + j * lw + i, 9), class_id, avg_cat)
            count += 1
            recall += iou > .5
            recall75 += iou > .75
            avg_iou += iou

        for t in range(L.max_boxes):
            tr = truth[b][t * 6:t * 6 + 4]
            if not tr[0]:
                break
            best_iou, best_n = 0, 0
            i, j = int(tr[0] * lw), int(tr[1] * lh)
            if point == "left_top":
                i = min(lw - 1, max(0, int((tr[0] - tr[2] / 2) * lw)))
                j = min(lh - 1, max(0, int((tr[1] - tr[3] / 2) * lh)))
            elif point == "right_bottom":
                i = min(lw - 1, max(0, int((tr[0] + tr[2] / 2) * lw)))
                j = min(lh - 1, max(0, int((tr[1] + tr[3] / 2) * lh)))
            truth_shift = (0, 0, tr[2], tr[3])
            for nn in range(total):
                iou = box_iou((0, 0, biases[2 * nn] / net_w, biases[2 * nn + 1] / net_h), truth_shift)
                if iou > best_iou:
                    best_iou, best_n = iou, nn
            mask_n = mask.index(best_n) if best_n in mask else -1
            if mask_n >= 0:
                train(tr, t, best_n, mask_n, i, j)
            for nn in range(total):
                mask_n = mask.index(nn) if nn in mask else -1
                if mask_n >= 0 and nn != best_n and L.iou_thresh < 1.0:
                    pred = (0, 0, biases[2 * nn] / net_w, biases[2 * nn + 1] / net_h)
                    if box_iou_kind(pred, truth_shift, L.iou_thresh_kind) > L.iou_thresh:
                        seen["extra"] += 1
                        train(tr, t, nn, mask_n, i, j)
        for j in range(lh):
            for i in range(lw):
                for nn in range(n):
                    box_index = entry_index(b, nn * lw * lh + j * lw + i, 0)
                    class_index = entry_index(b, nn * lw * lh + j * lw + i, 9)
                    k = sum(delta[class_index + stride * c] > 0 for c in range(classes))
                    if k > 0:
                        seen["averaged"] += k > 1
                        for e in range(8):
                            delta[box_index + e * stride] /= k
    without_box, except_uc = list(delta), list(delta)
    for b in range(batch):
        for nn in range(n):
            for e in range(8):
                index = entry_index(b, nn * lw * lh, e)
                without_box[index:index + stride] = [0.0] * stride
                if e >= 4:
                    except_uc[index:index + stride] = [0.0] * stride
    class_loss = sum(d * d for d in without_box)
    except_uc_loss = sum(d * d for d in except_uc)
    loss = sum(d * d for d in delta)
    counted = count or 1
    printed = dict(avg_iou=avg_iou / counted, cls=avg_cat[0] / counted, obj=avg_obj / counted,
                   no_obj=avg_anyobj / (lw * lh * n * batch), recall50=recall / counted, recall75=recall75 / counted,
                   count=count, class_loss=class_loss / batch, iou_loss=(except_uc_loss - class_loss) / batch,
                   uc_loss=(loss - except_uc_loss) / batch)
    return torch.tensor(delta, dtype=torch.float64).view(x.shape), loss, printed, seen


def c_correct_gaussian_yolo_boxes(dets, w, h, netw, neth, letter):
    """gaussian_yolo_layer.c correct_gaussian_yolo_boxes, relative=1 (pjreddie's size formula)."""
    if letter:
        if F32(netw) / F32(w) < F32(neth) / F32(h):
            new_w, new_h = netw, (h * netw) // w
        else:
            new_h, new_w = neth, (w * neth) // h
    else:
        new_w, new_h = netw, neth
    out = []
    for x, y, bw, bh in dets:
        x = F32((float(x) - (netw - new_w) / 2. / netw) / float(F32(new_w) / F32(netw)))
        y = F32((float(y) - (neth - new_h) / 2. / neth) / float(F32(new_h) / F32(neth)))
        out.append([x, y, F32(bw * (F32(netw) / F32(new_w))), F32(bh * (F32(neth) / F32(new_h)))])
    return np.array(out, F32)
