"""pjreddie's forward_yolo_layer and forward_region_layer (src/yolo_layer.c, src/region_layer.c),
training branch, line by line on flat arrays with entry_index. Two documented extensions are
applied where the C writes a truth's delta: the truth's weight (mixup) multiplies it, and label
smoothing changes the class targets."""
from __future__ import annotations

import math

import torch

from darknet_py.train.deltas import HeadStats

from .activations import logistic
from .box import box_iou


def truth_buffer(truths, keep, rows):
    """net.truth as Darknet's loader fills it: the first ``keep`` boxes of each image (zeros after),
    ``rows`` boxes of 5 floats per image; the weights ride alongside."""
    flat, weights = [], []
    for image in truths.tolist():
        image = (image[:keep] + [[0.0] * 6] * rows)[:rows]
        for row in image:
            flat += row[:5]
            weights.append(row[5])
    return flat, weights


def stats_of(avg_iou, avg_cat, avg_obj, avg_anyobj, recall, recall75, count, class_count, cells, delta):
    per = (lambda v, k: v / k if k else 0.0)
    return HeadStats(avg_iou=per(avg_iou, count), cls=per(avg_cat, class_count), obj=per(avg_obj, count),
                     no_obj=avg_anyobj / cells, recall50=per(recall, count), recall75=per(recall75, count),
                     count=count, cost=sum(d * d for d in delta))


# -- forward_yolo_layer -------------------------------------------------------------------------
def c_forward_yolo(x, truths, anchors, mask, classes, net_w, net_h, ignore_thresh, truth_thresh,
                   max_boxes, eps=0.0):
    batch, n, _, lh, lw = x.shape
    total = len(anchors) // 2
    biases = list(anchors)
    outputs = lh * lw * n * (classes + 4 + 1)
    truth, weight = truth_buffer(truths, max_boxes, max_boxes)
    l_truths = max_boxes * (4 + 1)
    pos, neg = 1 - eps + eps / classes, eps / classes
    seen = dict(ignored=0, truth_thresh=0, quirk=0, shared_cell=0)

    def entry_index(b, location, entry):
        nn = location // (lw * lh)
        loc = location % (lw * lh)
        return b * outputs + nn * lw * lh * (4 + classes + 1) + entry * lw * lh + loc

    output = x.reshape(-1).tolist()
    for b in range(batch):
        for nn in range(n):
            index = entry_index(b, nn * lw * lh, 0)
            for k in range(2 * lw * lh):
                output[index + k] = logistic(output[index + k])
            index = entry_index(b, nn * lw * lh, 4)
            for k in range((1 + classes) * lw * lh):
                output[index + k] = logistic(output[index + k])
    delta = [0.0] * (batch * outputs)

    def get_yolo_box(nb, index, i, j, stride):
        return ((i + output[index + 0 * stride]) / lw, (j + output[index + 1 * stride]) / lh,
                math.exp(output[index + 2 * stride]) * biases[2 * nb] / net_w,
                math.exp(output[index + 3 * stride]) * biases[2 * nb + 1] / net_h)

    def delta_yolo_box(tr, nb, index, i, j, scale, stride):
        pred = get_yolo_box(nb, index, i, j, stride)
        iou = box_iou(pred, tr)
        tx = tr[0] * lw - i
        ty = tr[1] * lh - j
        tw = math.log(tr[2] * net_w / biases[2 * nb])
        th = math.log(tr[3] * net_h / biases[2 * nb + 1])
        delta[index + 0 * stride] = scale * (tx - output[index + 0 * stride])
        delta[index + 1 * stride] = scale * (ty - output[index + 1 * stride])
        delta[index + 2 * stride] = scale * (tw - output[index + 2 * stride])
        delta[index + 3 * stride] = scale * (th - output[index + 3 * stride])
        return iou

    def delta_yolo_class(index, cls, stride, avg_cat, w):
        if delta[index]:
            seen["quirk"] += 1
            delta[index + stride * cls] = w * (pos - output[index + stride * cls])
            if avg_cat is not None:
                avg_cat[0] += output[index + stride * cls]
            return
        for k in range(classes):
            delta[index + stride * k] = w * ((pos if k == cls else neg) - output[index + stride * k])
            if k == cls and avg_cat is not None:
                avg_cat[0] += output[index + stride * k]

    avg_iou = recall = recall75 = avg_obj = avg_anyobj = 0.0
    avg_cat = [0.0]
    count = class_count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for nn in range(n):
                    box_index = entry_index(b, nn * lw * lh + j * lw + i, 0)
                    pred = get_yolo_box(mask[nn], box_index, i, j, lw * lh)
                    best_iou = 0
                    best_t = 0
                    for t in range(max_boxes):
                        tr = truth[t * 5 + b * l_truths: t * 5 + b * l_truths + 4]
                        if not tr[0]:
                            break
                        iou = box_iou(pred, tr)
                        if iou > best_iou:
                            best_iou = iou
                            best_t = t
                    obj_index = entry_index(b, nn * lw * lh + j * lw + i, 4)
                    avg_anyobj += output[obj_index]
                    delta[obj_index] = 0 - output[obj_index]
                    if best_iou > ignore_thresh:
                        seen["ignored"] += 1
                        delta[obj_index] = 0
                    if best_iou > truth_thresh:
                        seen["truth_thresh"] += 1
                        w = weight[best_t + b * max_boxes]
                        delta[obj_index] = w * (1 - output[obj_index])
                        cls = int(truth[best_t * 5 + b * l_truths + 4])
                        class_index = entry_index(b, nn * lw * lh + j * lw + i, 4 + 1)
                        delta_yolo_class(class_index, cls, lw * lh, None, w)
                        tr = truth[best_t * 5 + b * l_truths: best_t * 5 + b * l_truths + 4]
                        delta_yolo_box(tr, mask[nn], box_index, i, j, w * (2 - tr[2] * tr[3]), lw * lh)
        cells_hit = set()
        for t in range(max_boxes):
            tr = truth[t * 5 + b * l_truths: t * 5 + b * l_truths + 4]
            if not tr[0]:
                break
            w = weight[t + b * max_boxes]
            best_iou = 0
            best_n = 0
            i = int(tr[0] * lw)
            j = int(tr[1] * lh)
            truth_shift = (0, 0, tr[2], tr[3])
            for nn in range(total):
                pred = (0, 0, biases[2 * nn] / net_w, biases[2 * nn + 1] / net_h)
                iou = box_iou(pred, truth_shift)
                if iou > best_iou:
                    best_iou = iou
                    best_n = nn
            mask_n = mask.index(best_n) if best_n in mask else -1
            if mask_n >= 0:
                seen["shared_cell"] += (b, mask_n, j, i) in cells_hit
                cells_hit.add((b, mask_n, j, i))
                box_index = entry_index(b, mask_n * lw * lh + j * lw + i, 0)
                iou = delta_yolo_box(tr, best_n, box_index, i, j, w * (2 - tr[2] * tr[3]), lw * lh)
                obj_index = entry_index(b, mask_n * lw * lh + j * lw + i, 4)
                avg_obj += output[obj_index]
                delta[obj_index] = w * (1 - output[obj_index])
                cls = int(truth[t * 5 + b * l_truths + 4])
                class_index = entry_index(b, mask_n * lw * lh + j * lw + i, 4 + 1)
                delta_yolo_class(class_index, cls, lw * lh, avg_cat, w)
                count += 1
                class_count += 1
                if iou > .5:
                    recall += 1
                if iou > .75:
                    recall75 += 1
                avg_iou += iou
    stats = stats_of(avg_iou, avg_cat[0], avg_obj, avg_anyobj, recall, recall75, count, class_count,
                     lw * lh * n * batch, delta)
    return torch.tensor(delta, dtype=torch.float64).view(x.shape), stats, seen


# -- forward_region_layer ---------------------------------------------------------------------
def c_forward_region(x, truths, anchors, classes, softmax, background, thresh, rescore, bias_match,
                     seen_images, max_boxes, coord_scale=1.0, object_scale=5.0, noobject_scale=1.0,
                     class_scale=1.0, eps=0.0):
    batch, n, _, lh, lw = x.shape
    coords = 4
    biases = list(anchors)
    outputs = lh * lw * n * (classes + coords + 1)
    truth, weight = truth_buffer(truths, max_boxes, 30)  # the loader fills max_boxes, the layer reads 30
    l_truths = 30 * (coords + 1)
    pos, neg = 1 - eps + eps / classes, eps / classes
    seen = dict(ignored=0, quirk=0, shared_cell=0)

    def entry_index(b, location, entry):
        nn = location // (lw * lh)
        loc = location % (lw * lh)
        return b * outputs + nn * lw * lh * (coords + classes + 1) + entry * lw * lh + loc

    inp = x.reshape(-1).tolist()
    output = list(inp)
    for b in range(batch):
        for nn in range(n):
            index = entry_index(b, nn * lw * lh, 0)
            for k in range(2 * lw * lh):
                output[index + k] = logistic(output[index + k])
            index = entry_index(b, nn * lw * lh, coords)
            if not background:
                for k in range(lw * lh):
                    output[index + k] = logistic(output[index + k])
            index = entry_index(b, nn * lw * lh, coords + 1)
            if not softmax:
                for k in range(classes * lw * lh):
                    output[index + k] = logistic(output[index + k])
    if softmax:  # softmax_cpu(net.input + index, classes + background, batch*n, inputs/n, w*h, 1, w*h, ...)
        index = entry_index(0, 0, coords + (not background))
        for g in range(batch * n):
            for loc in range(lw * lh):
                start = index + g * (outputs // n) + loc
                values = [inp[start + k * lw * lh] for k in range(classes + background)]
                largest = max(values)
                e = [math.exp(v - largest) for v in values]
                for k in range(classes + background):
                    output[start + k * lw * lh] = e[k] / sum(e)
    delta = [0.0] * (batch * outputs)

    def get_region_box(nb, index, i, j, stride):
        return ((i + output[index + 0 * stride]) / lw, (j + output[index + 1 * stride]) / lh,
                math.exp(output[index + 2 * stride]) * biases[2 * nb] / lw,
                math.exp(output[index + 3 * stride]) * biases[2 * nb + 1] / lh)

    def delta_region_box(tr, nb, index, i, j, scale, stride):
        pred = get_region_box(nb, index, i, j, stride)
        iou = box_iou(pred, tr)
        tx = tr[0] * lw - i
        ty = tr[1] * lh - j
        tw = math.log(tr[2] * lw / biases[2 * nb])
        th = math.log(tr[3] * lh / biases[2 * nb + 1])
        delta[index + 0 * stride] = scale * (tx - output[index + 0 * stride])
        delta[index + 1 * stride] = scale * (ty - output[index + 1 * stride])
        delta[index + 2 * stride] = scale * (tw - output[index + 2 * stride])
        delta[index + 3 * stride] = scale * (th - output[index + 3 * stride])
        return iou

    def delta_region_class(index, cls, scale, stride, avg_cat, tag):
        if delta[index] and tag:
            seen["quirk"] += 1
            delta[index + stride * cls] = scale * (pos - output[index + stride * cls])
            return
        for k in range(classes):
            delta[index + stride * k] = scale * ((pos if k == cls else neg) - output[index + stride * k])
            if k == cls:
                avg_cat[0] += output[index + stride * k]

    avg_iou = recall = recall75 = avg_obj = avg_anyobj = 0.0
    avg_cat = [0.0]
    count = class_count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for nn in range(n):
                    box_index = entry_index(b, nn * lw * lh + j * lw + i, 0)
                    pred = get_region_box(nn, box_index, i, j, lw * lh)
                    best_iou = 0
                    for t in range(30):
                        tr = truth[t * 5 + b * l_truths: t * 5 + b * l_truths + 4]
                        if not tr[0]:
                            break
                        iou = box_iou(pred, tr)
                        if iou > best_iou:
                            best_iou = iou
                    obj_index = entry_index(b, nn * lw * lh + j * lw + i, coords)
                    avg_anyobj += output[obj_index]
                    delta[obj_index] = noobject_scale * (0 - output[obj_index])
                    if background:
                        delta[obj_index] = noobject_scale * (1 - output[obj_index])
                    if best_iou > thresh:
                        seen["ignored"] += 1
                        delta[obj_index] = 0
                    if seen_images < 12800:
                        tr = ((i + .5) / lw, (j + .5) / lh, biases[2 * nn] / lw, biases[2 * nn + 1] / lh)
                        delta_region_box(tr, nn, box_index, i, j, .01, lw * lh)
        cells_hit = set()
        for t in range(30):
            tr = truth[t * 5 + b * l_truths: t * 5 + b * l_truths + 4]
            if not tr[0]:
                break
            w = weight[t + b * 30]
            best_iou = 0
            best_n = 0
            i = int(tr[0] * lw)
            j = int(tr[1] * lh)
            truth_shift = (0, 0, tr[2], tr[3])
            for nn in range(n):
                box_index = entry_index(b, nn * lw * lh + j * lw + i, 0)
                pred = list(get_region_box(nn, box_index, i, j, lw * lh))
                if bias_match:
                    pred[2] = biases[2 * nn] / lw
                    pred[3] = biases[2 * nn + 1] / lh
                pred[0] = 0
                pred[1] = 0
                iou = box_iou(pred, truth_shift)
                if iou > best_iou:
                    best_iou = iou
                    best_n = nn
            seen["shared_cell"] += (b, best_n, j, i) in cells_hit
            cells_hit.add((b, best_n, j, i))
            box_index = entry_index(b, best_n * lw * lh + j * lw + i, 0)
            scale = w * coord_scale * (2 - tr[2] * tr[3])
            iou = delta_region_box(tr, best_n, box_index, i, j, scale, lw * lh)
            if iou > .5:
                recall += 1
            if iou > .75:
                recall75 += 1
            avg_iou += iou
            obj_index = entry_index(b, best_n * lw * lh + j * lw + i, coords)
            avg_obj += output[obj_index]
            delta[obj_index] = w * object_scale * (1 - output[obj_index])
            if rescore:
                delta[obj_index] = w * object_scale * (iou - output[obj_index])
            if background:
                delta[obj_index] = w * object_scale * (0 - output[obj_index])
            cls = int(truth[t * 5 + b * l_truths + coords])
            class_index = entry_index(b, best_n * lw * lh + j * lw + i, coords + 1)
            delta_region_class(class_index, cls, w * class_scale, lw * lh, avg_cat, not softmax)
            count += 1
            class_count += 1
    stats = stats_of(avg_iou, avg_cat[0], avg_obj, avg_anyobj, recall, recall75, count, class_count,
                     lw * lh * n * batch, delta)
    return torch.tensor(delta, dtype=torch.float64).view(x.shape), stats, seen


# -- random cases ---------------------------------------------------------------------------------
