"""AlexeyAB's layer forwards (CPU) for the layers pjreddie lacks, on NCHW float32 arrays:
forward_route_layer with groups, shortcut_multilayer_cpu (blas.c), scale_channels_cpu (blas.c),
forward_maxpool_layer with stride_x/stride_y and forward_local_avgpool_layer, the antialiasing
blur of make_convolutional_layer / make_maxpool_layer, and activate_array_normalize_channels
(_softmax) (activations.c)."""
from __future__ import annotations

import numpy as np

F32 = np.float32
FLT_MAX = F32(np.finfo(np.float32).max)


def darknet_route(inputs, groups, group_id):
    batch = inputs[0].shape[0]
    sizes = [x[0].size for x in inputs]
    outputs = sum(sizes) // groups
    out = np.zeros(batch * outputs, F32)
    offset = 0
    for x, input_size in zip(inputs, sizes):
        flat = x.reshape(-1)
        part = input_size // groups
        for j in range(batch):
            src = j * input_size + part * group_id
            out[offset + j * outputs:offset + j * outputs + part] = flat[src:src + part]
        offset += part
    return out


def darknet_shortcut_multilayer(inp, froms, weights, normalization):
    batch = inp.shape[0]
    src_outputs = inp[0].size
    size = src_outputs * batch
    n = len(froms)
    nweights = 0 if weights is None else weights.size
    layer_step = nweights // (n + 1)
    step = src_outputs // layer_step if nweights > 0 else 0
    x = inp.reshape(-1)
    adds = [f.reshape(-1) for f in froms]
    out = np.zeros(size, F32)
    for id_ in range(size):
        src_i, src_b = id_ % src_outputs, id_ // src_outputs
        total, max_val = F32(1), -FLT_MAX
        if weights is not None and normalization != "none":
            if normalization == "softmax":
                for i in range(n + 1):
                    w = weights[src_i // step + i * layer_step]
                    if max_val < w:
                        max_val = w
            total = F32(0.0001)
            for i in range(n + 1):
                w = weights[src_i // step + i * layer_step]
                if normalization == "relu":
                    total = F32(total + max(w, F32(0)))
                else:
                    total = F32(total + F32(np.exp(F32(w - max_val))))

        def norm(w):
            if normalization == "relu":
                return F32(max(w, F32(0)) / total)
            if normalization == "softmax":
                return F32(F32(np.exp(F32(w - max_val))) / total)
            return w

        if weights is not None:
            out[id_] = x[id_] * norm(weights[src_i // step])
        else:
            out[id_] = x[id_]
        for i in range(n):
            add_outputs = froms[i][0].size
            if src_i < add_outputs:
                add_index = add_outputs * src_b + src_i
                if weights is not None:
                    out[id_] = F32(out[id_] + adds[i][add_index] * norm(weights[src_i // step + (i + 1) * layer_step]))
                else:
                    out[id_] = F32(out[id_] + adds[i][add_index])
    return out


def darknet_scale_channels(inp, frm, scale_wh):
    b, c, h, w = frm.shape
    size, channel_size, batch_size = b * c * h * w, h * w, c * h * w
    x, f = inp.reshape(-1), frm.reshape(-1)
    out = np.zeros(size, F32)
    for i in range(size):
        index = (i % channel_size + (i // batch_size) * channel_size) if scale_wh else i // channel_size
        out[i] = x[index] * f[i]
    return out


def darknet_pool(x, size, stride_x, stride_y, pad, average):
    batch, c, lh, lw = x.shape
    out_h, out_w = (lh + pad - size) // stride_y + 1, (lw + pad - size) // stride_x + 1
    flat, off = x.reshape(-1), -(pad // 2)
    out = np.zeros((batch, c, out_h, out_w), F32)
    for b in range(batch):
        for k in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    best, avg, counter = -FLT_MAX, F32(0), 0
                    for n in range(size):
                        for m in range(size):
                            cur_h, cur_w = off + i * stride_y + n, off + j * stride_x + m
                            valid = 0 <= cur_h < lh and 0 <= cur_w < lw
                            val = flat[cur_w + lw * (cur_h + lh * (k + b * c))] if valid else -FLT_MAX
                            best = max(best, val)
                            if valid:
                                counter += 1
                                avg = F32(avg + val)
                    out[b, k, i, j] = F32(avg / counter) if average else best
    return out


def darknet_blur(x, kind, stride_x, stride_y):
    """A depthwise convolution with AlexeyAB's fixed weights (im2col order ky, kx)."""
    if kind == 2:
        size, pad, wts = 2, 0, np.full(4, 1 / 4.0, F32)
    else:
        size, pad, wts = 3, 1, (np.array([1, 2, 1, 2, 4, 2, 1, 2, 1], F32) / F32(16)).astype(F32)
    b, c, h, w = x.shape
    out_h, out_w = (h + 2 * pad - size) // stride_y + 1, (w + 2 * pad - size) // stride_x + 1
    out = np.zeros((b, c, out_h, out_w), F32)
    for i in range(out_h):
        for j in range(out_w):
            for ky in range(size):
                for kx in range(size):
                    y, xx = i * stride_y - pad + ky, j * stride_x - pad + kx
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, :, i, j] += wts[ky * size + kx] * x[:, :, y, xx]
    return out


def darknet_normalize_channels(x, softmax, use_max_val):
    b, c, h, w = x.shape
    flat, wh_step = x.reshape(-1), h * w
    out = np.zeros_like(flat)
    for i in range(b * wh_step):
        wh_i, bi = i % wh_step, i // wh_step
        idx = [wh_i + k * wh_step + bi * wh_step * c for k in range(c)]
        total = F32(0.0001)
        if softmax:
            max_val = max(flat[j] for j in idx) if use_max_val else F32(0)
            for j in idx:
                total = F32(total + F32(np.exp(F32(flat[j] - max_val))))
            for j in idx:
                out[j] = F32(np.exp(F32(flat[j] - max_val))) / total
        else:
            for j in idx:
                if flat[j] > 0:
                    total = F32(total + flat[j])
            for j in idx:
                out[j] = flat[j] / total if flat[j] > 0 else 0
    return out.reshape(x.shape)
