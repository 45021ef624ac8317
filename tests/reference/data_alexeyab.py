"""AlexeyAB's data.c for detection samples: blend_truth_mosaic, read_boxes + randomize_boxes +
correct_boxes + fill_truth_detection, and from load_data_detection the crop offsets and the
mosaic's memcpy loops. ``f`` is float32, where the C computes in float."""
from __future__ import annotations

import numpy as np

f = np.float32


def c_blend_truth_mosaic(new_truth, boxes, old_truth, w, h, cut_x, cut_y, i_mixup,
                         left_shift, right_shift, top_shift, bot_shift, mosaic_bound):
    """blend_truth_mosaic, line by line (truth_size 6: x y w h id weight)."""
    lowest_w, lowest_h = f(1) / f(w), f(1) / f(h)
    cut_x, cut_y = f(cut_x), f(cut_y)
    count_new_truth = 0
    for t in range(boxes):
        if not new_truth[t][0]:
            break
        count_new_truth += 1
    new_t = count_new_truth
    for t in range(count_new_truth, boxes):
        new_truth[new_t][0] = 0
        old = old_truth[t - count_new_truth]
        if not old[0]:
            break
        xb, yb, wb, hb = f(old[0]), f(old[1]), f(old[2]), f(old[3])
        if i_mixup == 0:
            xb = xb - f(f(w) - cut_x - f(right_shift)) / f(w)
            yb = yb - f(f(h) - cut_y - f(bot_shift)) / f(h)
        if i_mixup == 1:
            xb = xb + f(cut_x - f(left_shift)) / f(w)
            yb = yb - f(f(h) - cut_y - f(bot_shift)) / f(h)
        if i_mixup == 2:
            xb = xb - f(f(w) - cut_x - f(right_shift)) / f(w)
            yb = yb + f(cut_y - f(top_shift)) / f(h)
        if i_mixup == 3:
            xb = xb + f(cut_x - f(left_shift)) / f(w)
            yb = yb + f(cut_y - f(top_shift)) / f(h)
        left, right = int((xb - wb / f(2)) * f(w)), int((xb + wb / f(2)) * f(w))
        top, bot = int((yb - hb / f(2)) * f(h)), int((yb + hb / f(2)) * f(h))
        if mosaic_bound:
            bounds = {0: (0, cut_x, 0, cut_y), 1: (cut_x, w, 0, cut_y),
                      2: (0, cut_x, cut_y, h), 3: (cut_x, w, cut_y, h)}[i_mixup]
            left_bound, right_bound, top_bound, bot_bound = (f(b) for b in bounds)
            if left < left_bound:
                left = int(left_bound)
            if right > right_bound:
                right = int(right_bound)
            if top < top_bound:
                top = int(top_bound)
            if bot > bot_bound:
                bot = int(bot_bound)
            xb = (f(right + left) / f(2)) / f(w)
            wb = f(right - left) / f(w)
            yb = (f(bot + top) / f(2)) / f(h)
            hb = f(bot - top) / f(h)
        else:
            if left < 0:
                diff = f(left) / f(w)
                xb = xb - diff / f(2)
                wb = wb + diff
            if right > w:
                diff = f(right - w) / f(w)
                xb = xb - diff / f(2)
                wb = wb - diff
            if top < 0:
                diff = f(top) / f(h)
                yb = yb - diff / f(2)
                hb = hb + diff
            if bot > h:
                diff = f(bot - h) / f(h)
                yb = yb - diff / f(2)
                hb = hb - diff
            left, right = int((xb - wb / f(2)) * f(w)), int((xb + wb / f(2)) * f(w))
            top, bot = int((yb - hb / f(2)) * f(h)), int((yb + hb / f(2)) * f(h))
        if (left >= 0 and right <= w and top >= 0 and bot <= h and wb > 0 and wb < 1 and hb > 0
                and hb < 1 and xb > 0 and xb < 1 and yb > 0 and yb < 1 and wb > lowest_w and hb > lowest_h):
            new_truth[new_t][:6] = [xb, yb, wb, hb, old[4], old[5]]
            new_t += 1


def c_fill_truth_detection(labels, order, dx, dy, sx, sy, flip, num_boxes, net_w, net_h):
    """read_boxes + randomize_boxes (as the permutation ``order``) + correct_boxes +
    fill_truth_detection; labels are [id, x, y, w, h] rows."""
    boxes = []
    for i in order:
        idn, x, y, w, h = (f(v) for v in labels[i])
        boxes.append(dict(id=idn, x=x, y=y, w=w, h=h, left=x - w / f(2), right=x + w / f(2),
                          top=y - h / f(2), bottom=y + h / f(2)))
    for b in boxes:  # correct_boxes
        if b["x"] == 0 and b["y"] == 0:
            b.update(x=f(999999), y=f(999999), w=f(999999), h=f(999999))
            continue
        if (b["x"] + b["w"] / f(2) < 0 or b["y"] + b["h"] / f(2) < 0 or b["x"] - b["w"] / f(2) > 1
                or b["y"] - b["h"] / f(2) > 1):
            b.update(x=f(999999), y=f(999999), w=f(999999), h=f(999999))
            continue
        b["left"], b["right"] = b["left"] * sx - dx, b["right"] * sx - dx
        b["top"], b["bottom"] = b["top"] * sy - dy, b["bottom"] * sy - dy
        if flip:
            b["left"], b["right"] = f(1) - b["right"], f(1) - b["left"]
        for k in ("left", "right", "top", "bottom"):
            b[k] = min(max(b[k], f(0)), f(1))
        b["x"], b["y"] = (b["left"] + b["right"]) / f(2), (b["top"] + b["bottom"]) / f(2)
        b["w"] = min(max(b["right"] - b["left"], f(0)), f(1))
        b["h"] = min(max(b["bottom"] - b["top"], f(0)), f(1))
    truth = np.zeros((num_boxes, 6), f)
    lowest_w, lowest_h = f(1) / f(net_w), f(1) / f(net_h)
    count, sub, min_w_h = min(len(boxes), num_boxes), 0, 0
    for i in range(count):
        b = boxes[i]
        x, y, w, h = b["x"], b["y"], b["w"], b["h"]
        if w < lowest_w or h < lowest_h:
            sub += 1
            continue
        if x == 999999 or y == 999999:
            sub += 1
            continue
        if x <= 0 or x > 1 or y <= 0 or y > 1:
            sub += 1
            continue
        truth[i - sub] = [x, y, w, h, b["id"], 1]
        if min_w_h == 0:
            min_w_h = int(w * f(net_w))
        if min_w_h > w * f(net_w):
            min_w_h = int(w * f(net_w))
        if min_w_h > h * f(net_h):
            min_w_h = int(h * f(net_h))
    return truth, min_w_h


def c_mosaic_copy(dst, ai, w, h, c, cut_x, cut_y, i_mixup, left_shift, right_shift, top_shift, bot_shift):
    """The memcpy loops of load_data_detection's mosaic on flat CHW arrays."""
    for k in range(c):
        for y in range(h):
            j = y * w + k * w * h
            if i_mixup == 0 and y < cut_y:
                j_src = (w - cut_x - right_shift) + (y + h - cut_y - bot_shift) * w + k * w * h
                dst[j:j + cut_x] = ai[j_src:j_src + cut_x]
            if i_mixup == 1 and y < cut_y:
                j_src = left_shift + (y + h - cut_y - bot_shift) * w + k * w * h
                dst[j + cut_x:j + w] = ai[j_src:j_src + w - cut_x]
            if i_mixup == 2 and y >= cut_y:
                j_src = (w - cut_x - right_shift) + (top_shift + y - cut_y) * w + k * w * h
                dst[j:j + cut_x] = ai[j_src:j_src + cut_x]
            if i_mixup == 3 and y >= cut_y:
                j_src = left_shift + (top_shift + y - cut_y) * w + k * w * h
                dst[j + cut_x:j + w] = ai[j_src:j_src + w - cut_x]


def c_offsets(ow, oh, w, h, jitter, resize, r, resize_r, letter_box, flip, i_mixup, corner):
    """load_data_detection from ``dw`` to the corner move, with the draws given."""
    dw, dh = int(f(ow) * f(jitter)), int(f(oh) * f(jitter))
    resize_down = resize_up = f(resize)
    if resize_down > 1.0:
        resize_down = f(1) / resize_down
    min_rdw, min_rdh = int(f(ow) * (f(1) - f(1) / resize_down) / f(2)), int(f(oh) * (f(1) - f(1) / resize_down) / f(2))
    if resize_up < 1.0:
        resize_up = f(1) / resize_up
    max_rdw, max_rdh = int(f(ow) * (f(1) - f(1) / resize_up) / f(2)), int(f(oh) * (f(1) - f(1) / resize_up) / f(2))

    def pre(lo, hi, part):
        lo, hi = f(lo), f(hi)
        if hi < lo:
            lo, hi = hi, lo
        return f(part) * (hi - lo) + lo

    pleft, pright = int(pre(-dw, dw, r[0])), int(pre(-dw, dw, r[1]))
    ptop, pbot = int(pre(-dh, dh, r[2])), int(pre(-dh, dh, r[3]))
    if resize < 1:
        pleft, pright = int(f(pleft) + pre(min_rdw, 0, resize_r[0])), int(f(pright) + pre(min_rdw, 0, resize_r[1]))
        ptop, pbot = int(f(ptop) + pre(min_rdh, 0, resize_r[0])), int(f(pbot) + pre(min_rdh, 0, resize_r[1]))
    else:
        pleft = int(f(pleft) + pre(min_rdw, max_rdw, resize_r[0]))
        pright = int(f(pright) + pre(min_rdw, max_rdw, resize_r[1]))
        ptop = int(f(ptop) + pre(min_rdh, max_rdh, resize_r[0]))
        pbot = int(f(pbot) + pre(min_rdh, max_rdh, resize_r[1]))
    if letter_box:
        img_ar, net_ar = f(ow) / f(oh), f(w) / f(h)
        if img_ar / net_ar > 1:
            delta_h = (f(ow) / net_ar - f(oh)) / f(2)
            ptop, pbot = int(f(ptop) - delta_h), int(f(pbot) - delta_h)
        else:
            delta_w = (f(oh) * net_ar - f(ow)) / f(2)
            pleft, pright = int(f(pleft) - delta_w), int(f(pright) - delta_w)
    if i_mixup is not None and corner:
        table = {True: {0: "L", 1: "R", 2: "L", 3: "R"}, False: {0: "R", 1: "L", 2: "R", 3: "L"}}
        if table[flip][i_mixup] == "L":
            pleft, pright = pleft + pright, 0
        else:
            pright, pleft = pright + pleft, 0
        if i_mixup in (0, 1):
            pbot, ptop = pbot + ptop, 0
        else:
            ptop, pbot = ptop + pbot, 0
    return pleft, pright, ptop, pbot
