"""Darknet's box decoding, letterbox correction and ``do_nms_sort``, on numpy float32.

Orders matter as much as values: [yolo] boxes are listed cell by cell (anchors inside),
[region] and [detection] boxes anchor-major as Darknet indexes them (AlexeyAB's [region] cell by
cell), layers in cfg order; NMS sorts by each class in turn with a stable sort (glibc's qsort
is a merge sort here), so the final list is in the same order as Darknet's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .image import letterbox_geometry

F32 = np.float32


@dataclass
class Detections:
    """Boxes of one image in Darknet's order: ``boxes`` (N, 4) centre x, y, w, h relative to the
    original image; ``objectness`` (N,); ``probs`` (N, classes), 0 where below the threshold or
    suppressed by NMS. :func:`darknet_py.detect` also fills in what the image was
    (``image_path``, ``image_size`` as (width, height)), the class ``names`` when given, and the
    ``thresh`` it used, which the pixel boxes, drawing and serialisers below need."""

    boxes: np.ndarray
    objectness: np.ndarray
    probs: np.ndarray
    image_path: str | None = None
    image_size: tuple[int, int] | None = None
    names: list[str] | None = None
    thresh: float = 0.0

    def __len__(self):
        return len(self.boxes)

    def rows(self, thresh: float) -> np.ndarray:
        """``[i, x, y, w, h, objectness, class, prob]`` for each (box, class) with prob > thresh,
        in the order Darknet prints them."""
        i, j = np.nonzero(self.probs > thresh)
        return np.column_stack([i, self.boxes[i], self.objectness[i], j, self.probs[i, j]]).astype(F32)

    # -- the results object: pixel boxes, names, drawing, COCO and Darknet JSON ------------------

    def _size(self) -> tuple[int, int]:
        if self.image_size is None:
            raise ValueError("pixel boxes need the image size: set image_size=(width, height) "
                             "(detect() sets it)")
        return self.image_size

    @property
    def xyxy(self) -> np.ndarray:
        """(N, 4) float64 pixel corners left, top, right, bottom, clamped to the image (as the
        COCO writer clamps them)."""
        w, h = self._size()
        b = self.boxes.astype(np.float64)
        x0, x1 = b[:, 0] - b[:, 2] / 2, b[:, 0] + b[:, 2] / 2
        y0, y1 = b[:, 1] - b[:, 3] / 2, b[:, 1] + b[:, 3] / 2
        return np.stack([np.clip(x0 * w, 0, w), np.clip(y0 * h, 0, h),
                         np.clip(x1 * w, 0, w), np.clip(y1 * h, 0, h)], 1).reshape(-1, 4)

    @property
    def xywh(self) -> np.ndarray:
        """(N, 4) pixel boxes left, top, width, height (COCO's ``bbox``) of :attr:`xyxy`."""
        c = self.xyxy
        return np.stack([c[:, 0], c[:, 1], c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]], 1).reshape(-1, 4)

    @property
    def class_ids(self) -> np.ndarray:
        """Each box's most probable class (the first of equals), -1 where every prob is 0."""
        if not len(self):
            return np.zeros(0, np.int64)
        best = self.probs.argmax(1)
        return np.where(self.probs.max(1) > 0, best, -1)

    @property
    def scores(self) -> np.ndarray:
        """Each box's largest class probability (0 for a suppressed box)."""
        return self.probs.max(1) if len(self) else np.zeros(0, F32)

    def name(self, cls: int) -> str:
        """The class's name, or its number when no names were given."""
        return self.names[cls] if self.names is not None and 0 <= cls < len(self.names) else str(cls)

    def kept(self, thresh: float | None = None) -> "Detections":
        """The boxes with some class above ``thresh`` (default: the detection threshold), in
        Darknet's order; the suppressed ones are left out."""
        keep = (self.probs > (self.thresh if thresh is None else thresh)).any(1)
        return replace(self, boxes=self.boxes[keep], objectness=self.objectness[keep], probs=self.probs[keep])

    def to_coco(self, image_id: int, category_ids=None, extra: dict | None = None) -> list[dict]:
        """COCO results records, one per (box, class) with prob > 0, through the one COCO writer
        (:mod:`darknet_py.coco`); ``category_ids`` maps class index -> category id."""
        from .coco import coco_records
        w, h = self._size()
        i, j = np.nonzero(self.probs > 0)
        return coco_records(image_id, self.boxes[i], j, self.probs[i, j], w, h, category_ids, extra)

    def to_dict(self, frame_id: int = 1) -> dict:
        """AlexeyAB's ``detection_to_json`` record: frame_id, filename, and per (box, class) with
        prob > 0.005 (names starting "dont_show" left out) class_id, name, relative_coordinates
        and confidence, in Darknet's order."""
        objects = []
        for i, j in zip(*np.nonzero(self.probs > F32(0.005))):
            name = self.name(int(j))
            if name.startswith("dont_show"):
                continue
            x, y, w, h = (float(v) for v in self.boxes[i])
            objects.append({"class_id": int(j), "name": name,
                            "relative_coordinates": {"center_x": x, "center_y": y, "width": w, "height": h},
                            "confidence": float(self.probs[i, j])})
        record = {"frame_id": int(frame_id)}
        if self.image_path is not None:
            record["filename"] = str(self.image_path)
        record["objects"] = objects
        return record

    def to_json(self, frame_id: int = 1) -> str:
        """:meth:`to_dict` as JSON text; a list of them is the file AlexeyAB's ``-out`` writes."""
        import json
        return json.dumps(self.to_dict(frame_id))

    def plot(self, image=None, thresh: float | None = None) -> np.ndarray:
        """A copy of ``image`` (BGR uint8 HWC as cv2.imread gives; default: read from
        ``image_path``) with Darknet's boxes and labels drawn (:func:`darknet_py.draw.draw_detections`)."""
        from .draw import draw_detections
        from .image import read_bgr
        if image is None:
            if self.image_path is None:
                raise ValueError("plot() needs the image: pass the BGR array (detect() on an array keeps no path)")
            image = read_bgr(self.image_path)
        names = self.names if self.names is not None else [str(c) for c in range(self.probs.shape[1])]
        return draw_detections(image, self, self.thresh if thresh is None else thresh, names)

    def save(self, path, image=None, thresh: float | None = None):
        """Write :meth:`plot` to ``path`` (the format by its extension, written atomically)."""
        from .outputs import check_output, write_image
        return write_image(check_output(path, "image"), self.plot(image, thresh))


def _probs(scale, classes, thresh):
    prob = (scale[:, None] * classes).astype(F32)
    return np.where(prob > F32(thresh), prob, F32(0))


def _boxes(pred, cell, w, h, aw, ah, scale_w, scale_h):
    """``get_yolo_box``/``get_region_box``: centre from the cell, size exp(t) * anchor / scale
    (the network size for [yolo], the grid for [region]), with exp in double as C's exp."""
    col, row = (cell % w).astype(F32), (cell // w).astype(F32)
    return np.stack([(col + pred[:, 0]) / F32(w), (row + pred[:, 1]) / F32(h),
                     (np.exp(pred[:, 2].astype(np.float64)) * aw / scale_w).astype(F32),
                     (np.exp(pred[:, 3].astype(np.float64)) * ah / scale_h).astype(F32)], 1).astype(F32)


def _yolo_cells(out, anchors, mask, thresh, obj_entry):
    """The (cell, anchor) pairs above ``thresh`` in Darknet's cell-major order, their entries
    and their anchors' sizes."""
    a, _, h, w = out.shape
    cells = out.reshape(a, -1, h * w).transpose(2, 0, 1)  # (cell, anchor, entry)
    cell, n = np.nonzero(cells[:, :, obj_entry] > F32(thresh))
    aw = np.array([anchors[m][0] for m in mask], np.float64)[n]
    ah = np.array([anchors[m][1] for m in mask], np.float64)[n]
    return cells[cell, n], cell, aw, ah


def decode_yolo(out, anchors, mask, net_w, net_h, thresh, new_coords=0):
    """``get_yolo_detections`` for one image; ``out`` is (anchors, 5 + classes, h, w), activated.
    AlexeyAB's ``new_coords`` sizes are ``x * x * 4 * anchor / net`` in float32."""
    h, w = out.shape[2:]
    pred, cell, aw, ah = _yolo_cells(out, anchors, mask, thresh, 4)
    boxes = _boxes(pred, cell, w, h, aw, ah, net_w, net_h)
    if new_coords:
        for k, (anchor, size) in enumerate(((aw, net_w), (ah, net_h)), start=2):
            boxes[:, k] = pred[:, k] * pred[:, k] * F32(4) * anchor.astype(F32) / F32(size)
    objectness = pred[:, 4].astype(F32)
    return boxes, objectness, _probs(objectness, pred[:, 5:], thresh)


def decode_gaussian_yolo(out, anchors, mask, net_w, net_h, thresh, yolo_point="center"):
    """``get_gaussian_yolo_detections``: boxes from the means (x 0, y 2, w 4, h 6), each class
    probability scaled by one minus the mean of the four uncertainties (1, 3, 5, 7)."""
    h, w = out.shape[2:]
    pred, cell, aw, ah = _yolo_cells(out, anchors, mask, thresh, 8)
    boxes = _boxes(pred[:, [0, 2, 4, 6]], cell, w, h, aw, ah, net_w, net_h)
    if yolo_point != "center":
        sign = F32(1 if yolo_point == "left_top" else -1)
        boxes[:, 0] += sign * (boxes[:, 2] / F32(2))
        boxes[:, 1] += sign * (boxes[:, 3] / F32(2))
    objectness = pred[:, 8].astype(F32)
    uc = pred[:, [1, 3, 5, 7]]
    uc_aver = (((uc[:, 0] + uc[:, 1]) + uc[:, 2]) + uc[:, 3]).astype(np.float64) / 4.0
    certainty = 1.0 - uc_aver.astype(F32).astype(np.float64)  # float uc_aver, then double 1.0 - it
    prob = ((objectness[:, None] * pred[:, 9:]).astype(np.float64) * certainty[:, None]).astype(F32)
    return boxes, objectness, np.where(prob > F32(thresh), prob, F32(0))


def decode_region(out, anchors, coords, background, thresh):
    """``get_region_detections``: every box is listed, objectness 0 below ``thresh``."""
    a, _, h, w = out.shape
    pred = out.reshape(a, -1, h * w).transpose(0, 2, 1).reshape(a * h * w, -1)  # anchor-major
    n, cell = np.divmod(np.arange(a * h * w), h * w)
    aw = np.array([anc[0] for anc in anchors], np.float64)[n]
    ah = np.array([anc[1] for anc in anchors], np.float64)[n]
    boxes = _boxes(pred, cell, w, h, aw, ah, w, h)
    scale = np.ones(len(pred), F32) if background else pred[:, coords].astype(F32)
    objectness = np.where(scale > F32(thresh), scale, F32(0))
    probs = _probs(scale, pred[:, coords + 1:], thresh)
    probs[objectness == 0] = 0
    return boxes, objectness, probs


def decode_region_alexeyab(out, anchors, classfix, thresh):
    """AlexeyAB's ``custom_get_region_detections``: ``get_region_boxes`` lists every box cell by
    cell (anchors inside), class probabilities ``objectness * class`` above ``thresh`` (objectness
    read as 0 below .5 with ``classfix=-1``), and every box's objectness is 1; coords is 4."""
    a, _, h, w = out.shape
    pred = out.reshape(a, -1, h * w).transpose(2, 0, 1).reshape(h * w * a, -1)  # cell-major
    cell, n = np.divmod(np.arange(h * w * a), a)
    aw = np.array([anc[0] for anc in anchors], np.float64)[n]
    ah = np.array([anc[1] for anc in anchors], np.float64)[n]
    boxes = _boxes(pred, cell, w, h, aw, ah, w, h)
    scale = pred[:, 4].astype(F32)
    if classfix == -1:
        scale = np.where(scale < F32(0.5), F32(0), scale)
    return boxes, np.ones(len(pred), F32), _probs(scale, pred[:, 5:], thresh)


def decode_detection(out, side, n, classes, coords, sqrt, thresh):
    """``get_detection_detections`` (YOLOv1) with w = h = 1, i.e. relative boxes."""
    cells = side * side
    cls = out[:cells * classes].reshape(cells, classes)
    scale = out[cells * classes:cells * (classes + n)].astype(F32)           # index i*n + k
    raw = out[cells * (classes + n):cells * (classes + n + n * coords)].reshape(cells * n, coords)
    i = np.arange(cells * n) // n
    col, row = (i % side).astype(F32), (i // side).astype(F32)
    power = 2 if sqrt else 1
    boxes = np.stack([(raw[:, 0] + col) / F32(side), (raw[:, 1] + row) / F32(side),
                      raw[:, 2] ** power, raw[:, 3] ** power], 1).astype(F32)
    return boxes, scale, _probs(scale, cls[i], thresh)


def correct_boxes(boxes, im_w, im_h, net_w, net_h, alexeyab=False, letter=True):
    """``correct_yolo_boxes``/``correct_region_boxes`` with relative=1: undo the letterbox
    (``letter``; without it the network saw the whole image stretched, and AlexeyAB's
    ``letter=0`` takes the network size as the image's, which changes nothing). AlexeyAB's
    correct_yolo_boxes scales sizes by ``1 / ratio`` (``ratio = new / net``) where pjreddie's
    uses ``net / new``: the two can differ in the last bit."""
    if letter:
        new_w, new_h, _, _ = letterbox_geometry(im_w, im_h, net_w, net_h)
    else:
        new_w, new_h = net_w, net_h
    b = boxes.astype(np.float64)
    out = np.empty_like(boxes)
    ratio_w, ratio_h = F32(new_w) / F32(net_w), F32(new_h) / F32(net_h)
    out[:, 0] = (b[:, 0] - (net_w - new_w) / 2.0 / net_w) / float(ratio_w)
    out[:, 1] = (b[:, 1] - (net_h - new_h) / 2.0 / net_h) / float(ratio_h)
    if alexeyab:
        out[:, 2] = boxes[:, 2] * (F32(1) / ratio_w)
        out[:, 3] = boxes[:, 3] * (F32(1) / ratio_h)
    else:
        out[:, 2] = boxes[:, 2] * (F32(net_w) / F32(new_w))
        out[:, 3] = boxes[:, 3] * (F32(net_h) / F32(new_h))
    return out


def box_iou(a, boxes):
    """``box_iou`` of box ``a`` with each of ``boxes``, in float32 as Darknet computes it; ``a``
    may also be a stack of boxes shaped to broadcast against ``boxes`` (element by element the
    same arithmetic)."""
    def overlap(c1, w1, c2, w2):
        left = np.maximum(c1 - w1 / F32(2), c2 - w2 / F32(2))
        right = np.minimum(c1 + w1 / F32(2), c2 + w2 / F32(2))
        return right - left

    ow = overlap(a[..., 0], a[..., 2], boxes[..., 0], boxes[..., 2])
    oh = overlap(a[..., 1], a[..., 3], boxes[..., 1], boxes[..., 3])
    inter = np.where((ow < 0) | (oh < 0), F32(0), ow * oh)
    union = a[..., 2] * a[..., 3] + boxes[..., 2] * boxes[..., 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def box_diou(a, boxes, beta=0.6):
    """AlexeyAB's ``box_diou`` (beta 0.6) / ``box_diounms``: IoU minus (centre distance^2 / enclosing
    diagonal^2) ** beta, in float32 with ``pow`` in double; the IoU is 0 when the union is."""
    def enclosing(c1, w1, c2, w2):
        return (np.maximum(c1 + w1 / F32(2), c2 + w2 / F32(2))
                - np.minimum(c1 - w1 / F32(2), c2 - w2 / F32(2)))

    ax, ay, bx, by = a[..., 0], a[..., 1], boxes[..., 0], boxes[..., 1]
    cw, ch = enclosing(ax, a[..., 2], bx, boxes[..., 2]), enclosing(ay, a[..., 3], by, boxes[..., 3])
    c = cw * cw + ch * ch
    iou = box_iou(a, boxes)
    iou = np.where(np.isfinite(iou), iou, F32(0))  # if (I == 0 || U == 0) return 0
    d = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.power((d / c).astype(np.float64), beta).astype(F32)
    return np.where(c == 0, iou, iou - u)


def overlap_measure(nms_kind="default", beta_nms=0.6):
    """What ``diounms_sort`` compares with the threshold for AlexeyAB's ``nms_kind`` (greedynms:
    ``box_diou``, diounms: ``box_diounms`` with ``beta_nms``; default and cornersnms: IoU)."""
    if nms_kind == "greedynms":
        return box_diou
    if nms_kind == "diounms":
        beta = float(F32(beta_nms))  # l.beta_nms is a float
        return lambda a, boxes: box_diou(a, boxes, beta)
    return box_iou


def overlapping_pairs(boxes, nms, block=128, measure=box_iou):
    """Index pairs (i < j) of boxes whose overlap (IoU unless ``measure`` says) exceeds ``nms``,
    computed a block of rows against all boxes at once (block x n temporaries); every measure
    here is symmetric in its two boxes."""
    firsts, seconds = [], []
    for start in range(0, len(boxes), block):
        hit = measure(boxes[start:start + block, None, :], boxes) > F32(nms)
        i, j = np.nonzero(hit)
        i += start
        keep = i < j
        firsts.append(i[keep])
        seconds.append(j[keep])
    empty = np.zeros(0, np.int64)
    return np.concatenate(firsts or [empty]), np.concatenate(seconds or [empty])


def suppressed(earlier, later, n):
    """Greedy NMS on a conflict graph: a box is kept unless an earlier *kept* box overlaps it.

    Resolved in rounds: boxes whose earlier neighbours are all decided become kept or
    suppressed, exactly as Darknet's sequential loop decides them.
    """
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, 2 suppressed
    while len(later):
        killed = np.zeros(n, bool)
        np.logical_or.at(killed, later, state[earlier] == 1)
        waiting = np.zeros(n, bool)
        np.logical_or.at(waiting, later, state[earlier] == 0)
        state[(state == 0) & killed] = 2
        state[(state == 0) & ~waiting & ~killed] = 1
        undecided = state[later] == 0
        earlier, later = earlier[undecided], later[undecided]
    return state == 2


def nms_sort(det: Detections, nms: float, nms_kind: str = "default", beta_nms: float = 0.6) -> Detections:
    """``do_nms_sort``: boxes with objectness 0 are swapped to the end, then for each class the
    rest are sorted by that class's probability and later overlapping boxes lose it. Darknet
    skips all of it (no reordering either) when nms is 0. AlexeyAB's ``diounms_sort`` is the
    same loop with another overlap measure (``nms_kind``, ``beta_nms``)."""
    if nms <= 0:
        return det
    boxes, objectness, probs = det.boxes, det.objectness, det.probs.copy()
    order = np.arange(len(boxes))
    k, i = len(order) - 1, 0
    while i <= k:  # Darknet's in-place swap loop, which reorders what it passes over
        if objectness[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    live, rest = order[:k + 1], order[k + 1:]
    first, second = overlapping_pairs(boxes[live], nms, measure=overlap_measure(nms_kind, beta_nms))
    first, second = live[first], live[second]
    rank = np.empty(len(boxes), np.int64)
    for cls in range(probs.shape[1]):
        live = live[np.argsort(-probs[live, cls], kind="stable")]
        rank[live] = np.arange(len(live))
        p = probs[:, cls]
        both = (p[first] != 0) & (p[second] != 0)
        a, b = first[both], second[both]
        earlier, later = np.where(rank[a] < rank[b], a, b), np.where(rank[a] < rank[b], b, a)
        probs[suppressed(earlier, later, len(boxes)), cls] = 0
    order = np.concatenate([live, rest])
    return Detections(boxes[order], objectness[order], probs[order])
