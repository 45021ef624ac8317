"""AlexeyAB's yolo_layer.c: forward_yolo_layer's training branch (CPU) with process_batch, the
layer's output, get_yolo_detections / correct_yolo_boxes and its NMS kinds (box.c), and
gaussian_yolo_layer.c's output."""
from __future__ import annotations

import math
from functools import cmp_to_key

import numpy as np
import torch

from .activations import logistic
from .box import box_diou, box_diounms, box_giou, box_iou_kind, dx_box_iou
from .box import box_iou_alexeyab as box_iou

F32 = np.float32


def c_correct_yolo_boxes(dets, w, h, netw, neth, letter):
    """AlexeyAB's yolo_layer.c correct_yolo_boxes, relative=1, literally (float and double as in C)."""
    if letter:
        if F32(netw) / F32(w) < F32(neth) / F32(h):
            new_w, new_h = netw, (h * netw) // w
        else:
            new_h, new_w = neth, (w * neth) // h
    else:
        new_w, new_h = netw, neth
    deltaw, deltah = F32(netw - new_w), F32(neth - new_h)
    ratiow, ratioh = F32(new_w) / F32(netw), F32(new_h) / F32(neth)
    out = []
    for x, y, bw, bh in dets:
        x = F32((float(x) - float(deltaw) / 2. / netw) / float(ratiow))
        y = F32((float(y) - float(deltah) / 2. / neth) / float(ratioh))
        bw = F32(bw * (F32(1) / ratiow))
        bh = F32(bh * (F32(1) / ratioh))
        out.append([x, y, bw, bh])
    return np.array(out, F32)


# -- yolo_layer.c: forward_yolo_layer (CPU) + process_batch ------------------------------------
def c_forward_yolo(x, truths, layer, net_w, net_h):
    """Returns (l.delta, l.cost, counters) for raw x (batch, n, 5 + classes, h, w)."""
    L = layer.settings
    batch, n, _, lh, lw = x.shape
    classes, biases, mask, total = layer.classes, [v for a in layer.anchors for v in a], layer.mask, len(layer.anchors)
    outputs = lh * lw * n * (classes + 4 + 1)
    mult_table = L.classes_multipliers
    seen = dict(ignored=0, not_matched=0, extra=0, accumulated=0, quirk=0, averaged=0, clipped=0)

    def entry_index(b, location, entry):
        nn, loc = location // (lw * lh), location % (lw * lh)
        return b * outputs + nn * lw * lh * (4 + classes + 1) + entry * lw * lh + loc

    output = x.reshape(-1).tolist()
    for b in range(batch):
        for nn in range(n):
            bbox_index = entry_index(b, nn * lw * lh, 0)
            if not L.new_coords:
                for k in range(2 * lw * lh):
                    output[bbox_index + k] = logistic(output[bbox_index + k])
                obj_index = entry_index(b, nn * lw * lh, 4)
                for k in range((1 + classes) * lw * lh):
                    output[obj_index + k] = logistic(output[obj_index + k])
            for k in range(2 * lw * lh):  # scal_add_cpu
                output[bbox_index + k] = output[bbox_index + k] * L.scale_x_y + -0.5 * (L.scale_x_y - 1)
    delta = [0.0] * (batch * outputs)
    truth = truths.reshape(batch, -1).tolist()

    def get_yolo_box(nb, index, i, j, stride):
        if L.new_coords:
            return ((i + output[index]) / lw, (j + output[index + stride]) / lh,
                    output[index + 2 * stride] ** 2 * 4 * biases[2 * nb] / net_w,
                    output[index + 3 * stride] ** 2 * 4 * biases[2 * nb + 1] / net_h)
        return ((i + output[index]) / lw, (j + output[index + stride]) / lh,
                math.exp(output[index + 2 * stride]) * biases[2 * nb] / net_w,
                math.exp(output[index + 3 * stride]) * biases[2 * nb + 1] / net_h)

    def delta_yolo_box(tr, nb, index, i, j, scale, stride, iou_normalizer):
        if any(delta[index + k * stride] for k in range(4)):
            seen["accumulated"] += 1
        pred = get_yolo_box(nb, index, i, j, stride)
        ious = dict(iou=box_iou(pred, tr), giou=box_giou(pred, tr))
        pred = (pred[0], pred[1], pred[2] or 1.0, pred[3] or 1.0)
        if L.iou_loss == "mse":
            tx, ty = tr[0] * lw - i, tr[1] * lh - j
            tw, th = math.log(tr[2] * net_w / biases[2 * nb]), math.log(tr[3] * net_h / biases[2 * nb + 1])
            if L.new_coords:
                tw = math.sqrt(tr[2] * net_w / (4 * biases[2 * nb]))
                th = math.sqrt(tr[3] * net_h / (4 * biases[2 * nb + 1]))
            for k, goal in enumerate((tx, ty, tw, th)):
                delta[index + k * stride] += scale * (goal - output[index + k * stride]) * iou_normalizer
        else:
            dx, dy, dw, dh = dx_box_iou(pred, tr, L.iou_loss)
            if not L.new_coords:
                dw *= math.exp(output[index + 2 * stride])
                dh *= math.exp(output[index + 3 * stride])
            d = [v * iou_normalizer for v in (dx, dy, dw, dh)]
            d = [0.0 if not math.isfinite(v) else v for v in d]
            if math.isfinite(L.max_delta):
                seen["clipped"] += sum(abs(v) > L.max_delta for v in d)
                d = [max(-L.max_delta, min(L.max_delta, v)) for v in d]
            for k in range(4):
                delta[index + k * stride] += d[k]
        return ious

    def delta_yolo_class(index, class_id, stride, avg_cat):
        eps = L.label_smooth_eps
        if delta[index + stride * class_id]:
            seen["quirk"] += 1
            y_true = 1 * (1 - eps) + 0.5 * eps if eps else 1
            delta[index + stride * class_id] = y_true - output[index + stride * class_id]
            if mult_table:
                delta[index + stride * class_id] *= mult_table[class_id]
            if avg_cat is not None:
                avg_cat[0] += output[index + stride * class_id]
            return
        if L.focal_loss:
            pt = output[index + stride * class_id] + 1e-15
            grad = -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
            for k in range(classes):
                delta[index + stride * k] = ((1 if k == class_id else 0) - output[index + stride * k])
                delta[index + stride * k] *= 0.5 * grad
                if k == class_id and avg_cat is not None:
                    avg_cat[0] += output[index + stride * k]
        else:
            for k in range(classes):
                y_true = 1 if k == class_id else 0
                if eps:
                    y_true = y_true * (1 - eps) + 0.5 * eps
                delta[index + stride * k] = y_true - output[index + stride * k]
                if mult_table and k == class_id:
                    delta[index + stride * class_id] *= mult_table[class_id] * L.cls_normalizer
                if k == class_id and avg_cat is not None:
                    avg_cat[0] += output[index + stride * k]

    tot_iou = tot_iou_loss = tot_giou_loss = 0.0
    count = 0
    avg_cat = [0.0]
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for nn in range(n):
                    class_index = entry_index(b, nn * lw * lh + j * lw + i, 5)
                    obj_index = entry_index(b, nn * lw * lh + j * lw + i, 4)
                    box_index = entry_index(b, nn * lw * lh + j * lw + i, 0)
                    stride = lw * lh
                    pred = get_yolo_box(mask[nn], box_index, i, j, stride)
                    best_match_iou, best_iou, best_t = 0, 0, 0
                    for t in range(L.max_boxes):
                        tr = truth[b][t * 6:t * 6 + 4]
                        if not tr[0]:
                            break
                        class_id_match = any(output[class_index + stride * k] > 0.25 for k in range(classes))
                        iou = box_iou(pred, tr)
                        if iou > best_match_iou and class_id_match:
                            best_match_iou = iou
                        if iou > best_iou:
                            best_iou, best_t = iou, t
                    delta[obj_index] = L.obj_normalizer * (0 - output[obj_index])
                    seen["not_matched"] += best_iou > L.ignore_thresh >= best_match_iou
                    if best_match_iou > L.ignore_thresh:
                        seen["ignored"] += 1
                        if L.objectness_smooth:
                            delta_obj = L.obj_normalizer * (best_match_iou - output[obj_index])
                            if delta_obj > delta[obj_index]:
                                delta[obj_index] = delta_obj
                        else:
                            delta[obj_index] = 0
                    if best_iou > L.truth_thresh:
                        iou_multiplier = best_iou * best_iou
                        if L.objectness_smooth:
                            delta[obj_index] = L.obj_normalizer * (iou_multiplier - output[obj_index])
                        else:
                            delta[obj_index] = L.obj_normalizer * (1 - output[obj_index])
                        class_id = int(truth[b][best_t * 6 + 4])
                        delta_yolo_class(class_index, class_id, stride, None)
                        class_multiplier = mult_table[class_id] if mult_table else 1.0
                        if L.objectness_smooth:
                            delta[class_index + stride * class_id] = class_multiplier * (
                                iou_multiplier - output[class_index + stride * class_id])
                        tr = truth[b][best_t * 6:best_t * 6 + 4]
                        delta_yolo_box(tr, mask[nn], box_index, i, j, 2 - tr[2] * tr[3], stride,
                                       L.iou_normalizer * class_multiplier)

        def train(tr, t, nb, mask_n, i, j):
            nonlocal tot_iou, tot_iou_loss, tot_giou_loss, count
            class_id = int(truth[b][t * 6 + 4])
            box_index = entry_index(b, mask_n * lw * lh + j * lw + i, 0)
            class_multiplier = mult_table[class_id] if mult_table else 1.0
            ious = delta_yolo_box(tr, nb, box_index, i, j, 2 - tr[2] * tr[3], lw * lh,
                                  L.iou_normalizer * class_multiplier)
            tot_iou += ious["iou"]
            tot_iou_loss += 1 - ious["iou"]
            tot_giou_loss += 1 - ious["giou"]
            obj_index = entry_index(b, mask_n * lw * lh + j * lw + i, 4)
            if L.objectness_smooth:
                delta_obj = class_multiplier * L.obj_normalizer * (1 - output[obj_index])
                if delta[obj_index] == 0:
                    delta[obj_index] = delta_obj
            else:
                delta[obj_index] = class_multiplier * L.obj_normalizer * (1 - output[obj_index])
            class_index = entry_index(b, mask_n * lw * lh + j * lw + i, 5)
            delta_yolo_class(class_index, class_id, lw * lh, avg_cat)
            count += 1

        for t in range(L.max_boxes):
            tr = truth[b][t * 6:t * 6 + 4]
            if not tr[0]:
                break
            best_iou, best_n = 0, 0
            i, j = int(tr[0] * lw), int(tr[1] * lh)
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
        if L.iou_thresh < 1.0:
            for j in range(lh):
                for i in range(lw):
                    for nn in range(n):
                        obj_index = entry_index(b, nn * lw * lh + j * lw + i, 4)
                        box_index = entry_index(b, nn * lw * lh + j * lw + i, 0)
                        class_index = entry_index(b, nn * lw * lh + j * lw + i, 5)
                        if delta[obj_index] != 0:
                            k = sum(delta[class_index + lw * lh * c] > 0 for c in range(classes))
                            if k > 0:
                                seen["averaged"] += k > 1
                                for e in range(4):
                                    delta[box_index + e * lw * lh] /= k
    counted = count or 1
    loss = sum(d * d for d in delta)
    if L.iou_loss == "mse":
        cost = loss
    else:
        no_box = list(delta)
        for b in range(batch):
            for nn in range(n):
                for e in range(4):
                    index = entry_index(b, nn * lw * lh, e)
                    no_box[index:index + lw * lh] = [0.0] * (lw * lh)
        classification = L.obj_normalizer * sum(d * d for d in no_box)
        tot = tot_giou_loss if L.iou_loss == "giou" else tot_iou_loss
        cost = L.iou_normalizer * (tot / counted) + classification
    return torch.tensor(delta, dtype=torch.float64).view(x.shape), cost, dict(seen, count=count,
                                                                           avg_iou=tot_iou / counted)


def c_yolo_output(x, layer):
    """forward_yolo_layer's activation (CPU) in float32."""
    out = x.numpy().astype(F32).copy()
    if not layer.settings.new_coords:
        out[:, :, :2] = F32(1) / (F32(1) + np.exp(-out[:, :, :2]))
        out[:, :, 4:] = F32(1) / (F32(1) + np.exp(-out[:, :, 4:]))
    alpha = F32(layer.settings.scale_x_y)
    out[:, :, :2] = out[:, :, :2] * alpha + F32(-0.5 * (float(alpha) - 1))
    return out


def c_gaussian_output(x, scale_x_y):
    out = x.numpy().astype(F32).copy()
    sig = lambda v: F32(1) / (F32(1) + np.exp(-v))  # noqa: E731
    alpha = F32(scale_x_y)
    for e in (0, 1, 2, 3, 5, 7):
        out[:, :, e] = sig(out[:, :, e])
    out[:, :, 8:] = sig(out[:, :, 8:])
    for e in (0, 2):
        out[:, :, e] = out[:, :, e] * alpha + F32(-0.5 * (float(alpha) - 1))
    return out


def c_network_boxes(layer, out, im_w, im_h, net_w, net_h, thresh, gaussian=False):
    """get_yolo_detections / get_gaussian_yolo_detections for one head, then correct_*_boxes
    (letter=1, relative=1); ``out`` is l.output of one image, flat."""
    _, entries, lh, lw = out.shape
    out = out.reshape(-1).astype(F32)
    classes, biases = layer.classes, [F32(v) for a in layer.anchors for v in a]
    obj_entry, cls_entry = (8, 9) if gaussian else (4, 5)

    def entry_index(location, entry):
        nn, loc = location // (lw * lh), location % (lw * lh)
        return nn * lw * lh * entries + entry * lw * lh + loc

    dets = []
    for i in range(lw * lh):
        row, col = i // lw, i % lw
        for nn in range(layer.n):
            objectness = out[entry_index(nn * lw * lh + i, obj_entry)]
            if not objectness > F32(thresh):
                continue
            box_index = entry_index(nn * lw * lh + i, 0)
            s, m = lw * lh, layer.mask[nn]
            if gaussian:
                bw = F32(math.exp(out[box_index + 4 * s]) * biases[2 * m] / net_w)
                bh = F32(math.exp(out[box_index + 6 * s]) * biases[2 * m + 1] / net_h)
                bx = (F32(col) + out[box_index]) / F32(lw)
                by = (F32(row) + out[box_index + 2 * s]) / F32(lh)
                if layer.settings.yolo_point == "left_top":
                    bx, by = bx + bw / F32(2), by + bh / F32(2)
                uc = [out[box_index + e * s] for e in (1, 3, 5, 7)]
                uc_aver = F32((((uc[0] + uc[1]) + uc[2]) + uc[3]) / 4.0)
                probs = [F32(float(objectness * out[entry_index(nn * lw * lh + i, 9 + j)]) * (1.0 - uc_aver))
                         for j in range(classes)]
            else:
                bx = (F32(col) + out[box_index]) / F32(lw)
                by = (F32(row) + out[box_index + s]) / F32(lh)
                if layer.settings.new_coords:
                    bw = out[box_index + 2 * s] * out[box_index + 2 * s] * F32(4) * biases[2 * m] / F32(net_w)
                    bh = out[box_index + 3 * s] * out[box_index + 3 * s] * F32(4) * biases[2 * m + 1] / F32(net_h)
                else:
                    bw = F32(math.exp(out[box_index + 2 * s]) * biases[2 * m] / net_w)
                    bh = F32(math.exp(out[box_index + 3 * s]) * biases[2 * m + 1] / net_h)
                probs = [objectness * out[entry_index(nn * lw * lh + i, cls_entry + j)] for j in range(classes)]
            dets.append([[bx, by, bw, bh], objectness, [p if p > F32(thresh) else F32(0) for p in probs]])
    if net_w / im_w < net_h / im_h:
        new_w, new_h = net_w, (im_h * net_w) // im_w
    else:
        new_h, new_w = net_h, (im_w * net_h) // im_h
    ratiow, ratioh = F32(new_w) / F32(net_w), F32(new_h) / F32(net_h)
    for d in dets:
        bx, by, bw, bh = d[0]
        bx = F32((float(bx) - (net_w - new_w) / 2. / net_w) / float(ratiow))
        by = F32((float(by) - (net_h - new_h) / 2. / net_h) / float(ratioh))
        if gaussian:  # correct_gaussian_yolo_boxes keeps pjreddie's size formula
            bw, bh = bw * (F32(net_w) / F32(new_w)), bh * (F32(net_h) / F32(new_h))
        else:
            bw, bh = bw * (F32(1) / ratiow), bh * (F32(1) / ratioh)
        d[0] = [bx, by, bw, bh]
    return dets


def c_nms(dets, classes, thresh, nms_kind, beta1):
    """do_nms_sort (default) or diounms_sort; qsort is glibc's stable merge sort here."""
    k = len(dets) - 1
    i = 0
    while i <= k:
        if dets[i][1] == 0:
            dets[i], dets[k] = dets[k], dets[i]
            k -= 1
            i -= 1
        i += 1
    total = k + 1
    for cls in range(classes):
        def cmp(a, b):
            diff = a[2][cls] - b[2][cls]
            return 1 if diff < 0 else (-1 if diff > 0 else 0)
        dets[:total] = sorted(dets[:total], key=cmp_to_key(cmp))
        for i in range(total):
            if dets[i][2][cls] == 0:
                continue
            a = [float(v) for v in dets[i][0]]
            for j in range(i + 1, total):
                b = [float(v) for v in dets[j][0]]
                if nms_kind == "default":
                    hit = box_iou(a, b) > thresh
                elif nms_kind == "greedynms":
                    hit = box_diou(a, b) > thresh
                else:
                    hit = box_diounms(a, b, float(F32(beta1))) > thresh
                if hit:
                    dets[j][2][cls] = F32(0)
    return dets
