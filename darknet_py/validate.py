"""The validation pass: detections of a labelled image set, Darknet's mAP, COCO's summary."""
from __future__ import annotations

import logging

import numpy as np

from .detect import detect
from .errors import ImageError

log = logging.getLogger(__name__)

SWEEP = (0.1, 0.01, 0.001, 0.0001)


def validation_detections(net, source, batch_size=8, thresh=0.005, nms=0.45, progress=True, reported=None,
                          letterbox=None):
    """(detections, truths, image sizes) per image, as ``mean_average_precision`` takes them:
    detections (k, 6) class, prob, cx, cy, w, h for every (box, class) pair with prob > 0 after
    NMS, as Darknet's ``validate_detector_map`` collects them (thresh .005 there), images
    letterboxed or resized by the fork's rule unless ``letterbox`` says (``detect``). Images
    that do not decode are logged unless their path is in ``reported`` (a set, updated)."""
    from tqdm import tqdm
    detections, truths, sizes = [], [], []
    with tqdm(total=len(source), unit="img", desc="validation", disable=not progress, leave=False) as bar:
        for start in range(0, len(source), batch_size):
            items = []
            for i in range(start, min(start + batch_size, len(source))):
                try:
                    items.append(source.load(i))
                except ImageError as e:
                    path = str(source.paths[i])
                    if reported is None or path not in reported:
                        log.warning("%s; skipped", e)
                    if reported is not None:
                        reported.add(path)
                    items.append(None)
            loaded = [item for item in items if item is not None]
            found = iter(detect(net, [im for im, _ in loaded], thresh=thresh, nms=nms, batch_size=batch_size,
                                letterbox=letterbox) if loaded else [])
            for item in items:
                if item is None:
                    detections.append(np.zeros((0, 6), np.float32))
                    truths.append(np.zeros((0, 5), np.float32))
                    sizes.append((0, 0))
                    continue
                image, boxes = item
                rows = next(found).rows(0.0)  # [i, x, y, w, h, objectness, class, prob]
                detections.append(np.column_stack([rows[:, 6], rows[:, 7], rows[:, 1:5]]).astype(np.float32))
                truths.append(np.asarray(boxes, np.float32).reshape(-1, 5))
                sizes.append((image.shape[2], image.shape[1]))
            bar.update(len(items))
    return detections, truths, sizes


def validate_map(net, source, names, iou_thresh=0.5, points=0, batch_size=8, progress=True, reported=None,
                 letterbox=None):
    """Darknet's ``detector map`` figures for ``net`` (in eval mode) on ``source``."""
    from .evaluate import mean_average_precision
    detections, truths, _ = validation_detections(net, source, batch_size, progress=progress, reported=reported,
                                                  letterbox=letterbox)
    return mean_average_precision(detections, truths, names, iou_thresh=iou_thresh, points=points)


def threshold_sweep(detections, truths, names, thresholds=SWEEP, iou_thresh=0.5, points=0):
    """(thresh, AP50 mAP, boxes) for each confidence threshold: the detections with prob above
    it (NMS lets a box suppress only boxes of lower probability, so this equals running the
    network at that threshold, up to the order of exact ties)."""
    from .evaluate import mean_average_precision
    rows = []
    for t in thresholds:
        kept = [d[d[:, 1] > np.float32(t)] for d in detections]
        result = mean_average_precision(kept, truths, names, iou_thresh=iou_thresh, points=points)
        rows.append((t, result.map, sum(len(d) for d in kept)))
    return rows


def coco_results(detections, sizes, image_ids, category_ids=None):
    """COCO results records of the validation detections (``darknet_py.coco.coco_records``)."""
    from .coco import coco_records
    records = []
    for dets, (w, h), image_id in zip(detections, sizes, image_ids):
        records += coco_records(image_id, dets[:, 2:6], dets[:, 0], dets[:, 1], w, h, category_ids)
    return records


COCO_STATS = ("AP", "AP50", "AP75", "AP small", "AP medium", "AP large",
              "AR 1", "AR 10", "AR 100", "AR small", "AR medium", "AR large")


def coco_summary(ground_truth, records):
    """pycocotools' 12 numbers (bbox) for ``records`` against a COCO instances file."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ground_truth))
        if not records:
            return dict.fromkeys(COCO_STATS, 0.0)
        dt = gt.loadRes(records)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted({r["image_id"] for r in records} & set(gt.getImgIds()))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(COCO_STATS, (float(v) for v in ev.stats)))


