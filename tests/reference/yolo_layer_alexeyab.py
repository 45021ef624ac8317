"""AlexeyAB's yolo_layer.c pieces the detection tests compare against."""
from __future__ import annotations

import numpy as np

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
