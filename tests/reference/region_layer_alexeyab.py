"""AlexeyAB's [region] at detection time (CPU, batch 1): forward_region_layer outside training
(flatten, logistic on objectness, softmax over classes or raw classes), get_region_boxes
(cell-major list, get_region_box with its own logistic, classfix=-1) and
custom_get_region_detections (objectness 1) with correct_yolo_boxes (region_layer.c,
yolo_layer.c)."""
from __future__ import annotations

import math

import numpy as np

from .layers_pjreddie import darknet_softmax
from .yolo_layer_alexeyab import c_correct_yolo_boxes

F32 = np.float32


def logistic_activate(x):
    return F32(1) / (F32(1) + np.exp(-F32(x)))  # 1.f/(1.f + expf(-x))


def c_forward_region(raw, softmax, classes, n):
    """forward_region_layer, batch 1, not training: memcpy, flatten(.., forward=1), activations;
    ``raw`` is (n * (classes + 5), h, w)."""
    size = classes + 5
    h, w = raw.shape[1:]
    x = raw.reshape(-1).astype(F32)
    layers = size * n
    out = np.empty_like(x)
    for c in range(layers):           # flatten: swap[i*layers + c] = x[c*size + i]
        for i in range(w * h):
            out[i * layers + c] = x[c * w * h + i]
    for i in range(h * w * n):
        out[size * i + 4] = logistic_activate(out[size * i + 4])
    if softmax:
        for i in range(h * w * n):   # blas.c softmax(input, classes, temp=1, output, stride=1), in place
            darknet_softmax(out, size * i + 5, classes, 1, 1, out, size * i + 5)
    return out


def c_get_region_box(x, biases, n, index, i, j, w, h):
    bx = F32(F32(i + logistic_activate(x[index + 0])) / F32(w))
    by = F32(F32(j + logistic_activate(x[index + 1])) / F32(h))
    bw = F32(math.exp(float(x[index + 2])) * float(biases[2 * n]) / w)   # DOABS
    bh = F32(math.exp(float(x[index + 3])) * float(biases[2 * n + 1]) / h)
    return [bx, by, bw, bh]


def c_get_region_boxes(pred, w, h, thresh, classfix, biases, classes):
    """get_region_boxes(l, 1, 1, thresh, probs, boxes, only_objectness=0, map=0)."""
    num = len(biases) // 2
    boxes, probs = [], []
    for i in range(w * h):
        row, col = i // w, i % w
        for n in range(num):
            index = i * num + n
            scale = pred[index * (classes + 5) + 4]
            if classfix == -1 and scale < .5:
                scale = F32(0)
            boxes.append(c_get_region_box(pred, biases, n, index * (classes + 5), col, row, w, h))
            row_probs = []
            for j in range(classes):
                prob = F32(scale * pred[index * (classes + 5) + 5 + j])
                row_probs.append(prob if prob > thresh else F32(0))
            probs.append(row_probs)
    return boxes, probs


def c_custom_get_region_detections(raw, im_w, im_h, netw, neth, thresh, softmax, classfix, letter,
                                   anchors, classes):
    """Boxes, objectness and class probabilities of one image; ``anchors`` as the cfg lists them."""
    pred = c_forward_region(raw, softmax, classes, len(anchors) // 2)
    h, w = raw.shape[1:]
    boxes, probs = c_get_region_boxes(pred, w, h, F32(thresh), classfix, np.array(anchors, F32), classes)
    boxes = c_correct_yolo_boxes(boxes, im_w, im_h, netw, neth, letter)
    return np.array(boxes, F32), np.ones(len(boxes), F32), np.array(probs, F32)  # objectness = 1
