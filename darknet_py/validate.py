"""The validation pass: detections of a labelled image set, then Darknet's mAP."""
from __future__ import annotations

import logging

import numpy as np

from .detect import detect
from .errors import ImageError

log = logging.getLogger(__name__)


def validation_detections(net, source, batch_size=8, thresh=0.005, nms=0.45, progress=True):
    """(detections, truths) per image, as ``mean_average_precision`` takes them: detections
    (k, 6) class, prob, cx, cy, w, h for every (box, class) pair with prob > 0 after NMS, as
    Darknet's ``validate_detector_map`` collects them at thresh .005."""
    from tqdm import tqdm
    detections, truths = [], []
    with tqdm(total=len(source), unit="img", desc="validation", disable=not progress, leave=False) as bar:
        for start in range(0, len(source), batch_size):
            items = []
            for i in range(start, min(start + batch_size, len(source))):
                try:
                    items.append(source.load(i))
                except ImageError as e:
                    log.warning("%s; skipped", e)
            if items:
                found = detect(net, [im for im, _ in items], thresh=thresh, nms=nms, batch_size=batch_size)
                for det, (_, boxes) in zip(found, items):
                    rows = det.rows(0.0)  # [i, x, y, w, h, objectness, class, prob]
                    detections.append(np.column_stack([rows[:, 6], rows[:, 7], rows[:, 1:5]]).astype(np.float32))
                    truths.append(np.asarray(boxes, np.float32).reshape(-1, 5))
            bar.update(min(batch_size, len(source) - start))
    return detections, truths


def validate_map(net, source, names, iou_thresh=0.5, points=0, batch_size=8, progress=True):
    """Darknet's ``detector map`` figures for ``net`` (in eval mode) on ``source``."""
    from .evaluate import mean_average_precision
    detections, truths = validation_detections(net, source, batch_size, progress=progress)
    return mean_average_precision(detections, truths, names, iou_thresh=iou_thresh, points=points)
