"""``detect``: image(s) -> Darknet's detections (``get_network_boxes`` + ``do_nms_sort``)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .errors import ImageError
from .image import from_bgr, letterbox, load_image, resize_image
from .layers.gaussian_yolo import GaussianYolo
from .layers.heads import Detection, HeadSettings, Region, Yolo
from .postprocess import (Detections, correct_boxes, decode_detection, decode_gaussian_yolo, decode_region,
                          decode_region_alexeyab, decode_yolo, nms_sort)


def _as_image(item):
    """(Darknet's float RGB CHW image, its path or None) of a path, a (3, h, w) float array in
    [0, 1] as load_image gives, or an (h, w, 3) uint8 BGR array as cv2.imread gives."""
    if isinstance(item, (str, Path)):
        return load_image(item), str(item)
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    item = np.asarray(item)
    if item.dtype == np.uint8:
        if item.ndim != 3 or item.shape[2] != 3 or 0 in item.shape:
            raise ImageError(f"expected an (h, w, 3) uint8 BGR image as cv2.imread gives, got {item.shape}")
        return from_bgr(item), None
    if item.dtype.kind not in "fiu" or item.ndim != 3 or item.shape[0] != 3 or 0 in item.shape:
        raise ImageError("expected a path, an (h, w, 3) uint8 BGR image (cv2.imread) or a (3, h, w) float "
                         f"image in [0, 1] (load_image), got {item.dtype} {item.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # out of float32's range: refused just below
        image = item.astype(np.float32, copy=False)
    finite = np.isfinite(image)
    if not finite.all():  # NaN would run through every layer and come out as no boxes, or garbage
        c, y, x = np.argwhere(~finite)[0]
        raise ImageError(f"the (3, h, w) image array holds {int((~finite).sum())} values that are not finite "
                         f"(float32); the first at channel {c}, row {y}, column {x}: {image[c, y, x]}")
    return image, None


def uses_letterbox(net, letterbox=None) -> bool:
    """Whether images are letterboxed (else resized to the network size, stretched): ``letterbox``
    when given (AlexeyAB's ``-letter_box`` flag is ``True``); else pjreddie's ``test_detector``
    always does, AlexeyAB's ``test_detector``/``validate_detector_map`` only with [net]
    ``letter_box=1``."""
    if letterbox is not None:
        return bool(letterbox)
    return net.net.fork == "pjreddie" or bool(net.net.letter_box)


def network_input(image, w, h, letter=True):
    """The network's input for one (3, h, w) image: ``letterbox_image`` or ``resize_image``."""
    return letterbox(image, w, h) if letter else resize_image(image, w, h)


def _yolo_boxes(layer, o, net_w, net_h, im_w, im_h, thresh, letter):
    s = layer.settings
    boxes, obj, probs = decode_yolo(o, layer.anchors, layer.mask, net_w, net_h, thresh, s.new_coords)
    return correct_boxes(boxes, im_w, im_h, net_w, net_h, s.alexeyab, letter), obj, probs


def _gaussian_yolo_boxes(layer, o, net_w, net_h, im_w, im_h, thresh, letter):
    boxes, obj, probs = decode_gaussian_yolo(o, layer.anchors, layer.mask, net_w, net_h, thresh,
                                             layer.settings.yolo_point)
    return correct_boxes(boxes, im_w, im_h, net_w, net_h, letter=letter), obj, probs


def _region_boxes(layer, o, net_w, net_h, im_w, im_h, thresh, letter):
    if layer.settings.alexeyab:  # custom_get_region_detections
        boxes, obj, probs = decode_region_alexeyab(o, layer.anchors, layer.settings.classfix, thresh)
        return correct_boxes(boxes, im_w, im_h, net_w, net_h, True, letter), obj, probs
    boxes, obj, probs = decode_region(o, layer.anchors, layer.coords, layer.background, thresh)
    return correct_boxes(boxes, im_w, im_h, net_w, net_h, letter=letter), obj, probs


def _detection_boxes(layer, o, net_w, net_h, im_w, im_h, thresh, letter):
    s = layer.settings
    return decode_detection(o, layer.side, s.n, layer.classes, s.coords, s.sqrt, thresh)


# head type -> f(layer, one image's output, net_w, net_h, im_w, im_h, thresh, letter) -> (boxes, obj, probs)
BOXES = {Yolo: _yolo_boxes, GaussianYolo: _gaussian_yolo_boxes, Region: _region_boxes, Detection: _detection_boxes}


def network_boxes(net, outputs, b, im_w, im_h, thresh, letter=True):
    """All heads' boxes of image ``b`` in Darknet's list order, boxes relative to the image;
    ``letter``: whether the input was letterboxed (``get_network_boxes``' last argument)."""
    parts = []
    net_w, net_h = net.input_size
    for index, out in zip(net.outputs, outputs):
        layer, o = net.layers[index], out[b].detach().float().cpu().numpy()
        boxes_of = BOXES.get(type(layer))
        if boxes_of is None:
            raise ValueError(f"layer {index} ({net.describe(index)}) is not a detection head")
        boxes, obj, probs = boxes_of(layer, o, net_w, net_h, im_w, im_h, thresh, letter)
        parts.append((boxes, obj, probs))
    if not parts:
        raise ValueError(f"{net.cfg_file} has no [yolo], [region] or [detection] layer")
    return Detections(*(np.concatenate(arrays) for arrays in zip(*parts)))


def detect(net, images, thresh=0.25, hier_thresh=0.5, nms=0.45, batch_size=8, letterbox=None, names=None):
    """Detections of one image or of a list of them (batched). An image is a path, an
    (h, w, 3) uint8 BGR array as ``cv2.imread`` returns it, or a (3, h, w) float32 RGB array
    in [0, 1] as :func:`darknet_py.load_image` returns it.

    Matches Darknet's ``get_network_boxes(net, w, h, thresh, hier_thresh, 0, relative=1, letter)``
    then ``do_nms_sort(dets, n, classes, nms)`` (AlexeyAB's ``diounms_sort`` when the last
    layer sets ``nms_kind``). The image is letterboxed or resized as the network's fork does
    it (:func:`uses_letterbox`; ``letterbox=True/False`` overrides). ``hier_thresh`` only
    matters for YOLO9000 trees, which are refused at load time; it is accepted for Darknet's
    signature. Each result knows its image's path (when given one) and size, ``names`` (a
    list of class names) when given, and ``thresh``.
    """
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    net_w, net_h = net.input_size
    letter = uses_letterbox(net, letterbox)
    param = next(net.parameters(), torch.empty(0))
    results = []
    for start in range(0, len(items), batch_size):
        chunk, paths = zip(*(_as_image(item) for item in items[start:start + batch_size]))
        x = torch.from_numpy(np.stack([network_input(im, net_w, net_h, letter) for im in chunk]))
        with torch.inference_mode():
            outputs = net(x.to(param.device))
        sizes = [(im.shape[2], im.shape[1]) for im in chunk]
        found = detections_from_outputs(net, outputs, sizes, thresh, nms, letter)
        results.extend(replace(d, image_path=path, names=None if names is None else list(names))
                       for d, path in zip(found, paths))
    return results[0] if single else results


def detections_from_outputs(net, outputs, image_sizes, thresh=0.25, nms=0.45, letterbox=None):
    """Darknet's detections from head outputs (as ``net(x)`` returns them) for images of the
    given (width, height), one :class:`Detections` per image; ``letterbox`` says how the
    inputs were made (default: the fork's rule, :func:`uses_letterbox`). The NMS is the one the
    network's last layer names (AlexeyAB's ``nms_kind``/``beta_nms``; classic ``do_nms_sort``
    otherwise)."""
    letter = uses_letterbox(net, letterbox)
    last = net.layers[-1]
    settings = last.settings if type(last) in BOXES else HeadSettings()  # Darknet: l.nms_kind of any layer
    kind, beta = settings.nms_kind, settings.beta_nms
    return [replace(nms_sort(network_boxes(net, outputs, b, w, h, thresh, letter), nms, kind, beta),
                    image_size=(int(w), int(h)), thresh=float(thresh))
            for b, (w, h) in enumerate(image_sizes)]
