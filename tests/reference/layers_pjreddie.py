"""pjreddie's layer forwards in eval mode, on NCHW float32 arrays: forward_maxpool_layer,
forward_reorg_layer, shortcut_cpu (blas.c), upsample_cpu (blas.c), forward_local_layer with
im2col_cpu (im2col.c) and gemm (gemm.c), softmax_cpu (blas.c) as forward_softmax_layer calls it,
and forward_yolo_layer / forward_region_layer / forward_detection_layer outside training."""
from __future__ import annotations

import numpy as np

from .activations import c_exp, darknet_activate_array
from .blas import darknet_reorg_cpu
from .cmath import c_div

F32 = np.float32
FLT_MAX = F32(np.finfo(np.float32).max)


def darknet_maxpool(x, size, stride, padding):
    batch, c, l_h, l_w = x.shape
    out_w = c_div(l_w + padding - size, stride) + 1     # make_maxpool_layer
    out_h = c_div(l_h + padding - size, stride) + 1
    inp = x.reshape(-1)
    output = np.zeros(batch * c * out_h * out_w, dtype=F32)
    w_offset = c_div(-padding, 2)                        # int w_offset = -l.pad/2;
    h_offset = c_div(-padding, 2)
    h, w = out_h, out_w
    for b in range(batch):
        for k in range(c):
            for i in range(h):
                for j in range(w):
                    out_index = j + w * (i + h * (k + c * b))
                    mx = -FLT_MAX
                    for n in range(size):
                        for m in range(size):
                            cur_h = h_offset + i * stride + n
                            cur_w = w_offset + j * stride + m
                            index = cur_w + l_w * (cur_h + l_h * (k + b * c))
                            valid = 0 <= cur_h < l_h and 0 <= cur_w < l_w
                            val = inp[index] if valid else -FLT_MAX
                            mx = val if val > mx else mx
                    output[out_index] = mx
    return output.reshape(batch, c, out_h, out_w)


def darknet_reorg(x, stride, reverse):
    batch, c, h, w = x.shape
    flat = darknet_reorg_cpu(x.reshape(-1), w, h, c, batch, stride, 1 if reverse else 0)
    s2 = stride * stride
    shape = (batch, c // s2, h * stride, w * stride) if reverse else (batch, c * s2, h // stride, w // stride)
    return flat.reshape(shape)


def darknet_shortcut(prev, frm, alpha, beta, activation):
    batch, c2, h2, w2 = prev.shape      # the layer's output = the previous layer's shape
    _, c1, h1, w1 = frm.shape           # l.w, l.h, l.c: the `from` layer's shape
    out = prev.reshape(-1).copy()
    add = frm.reshape(-1)
    s1, s2 = F32(alpha), F32(beta)
    stride = c_div(w1, w2)
    sample = c_div(w2, w1)
    assert stride == c_div(h1, h2)
    assert sample == c_div(h2, h1)
    if stride < 1:
        stride = 1
    if sample < 1:
        sample = 1
    minw = min(w1, w2)
    minh = min(h1, h2)
    minc = min(c1, c2)
    for b in range(batch):
        for k in range(minc):
            for j in range(minh):
                for i in range(minw):
                    out_index = i * sample + w2 * (j * sample + h2 * (k + c2 * b))
                    add_index = i * stride + w1 * (j * stride + h1 * (k + c1 * b))
                    out[out_index] = s1 * out[out_index] + s2 * add[add_index]
    return darknet_activate_array(out, activation).reshape(prev.shape)


def darknet_upsample_cpu(in_, w, h, c, batch, stride, forward, scale, out):
    scale = F32(scale)
    for b in range(batch):
        for k in range(c):
            for j in range(h * stride):
                for i in range(w * stride):
                    in_index = b * w * h * c + k * w * h + (j // stride) * w + i // stride
                    out_index = (b * w * h * c * stride * stride + k * w * h * stride * stride
                                 + j * w * stride + i)
                    if forward:
                        out[out_index] = scale * in_[in_index]
                    else:
                        in_[in_index] += scale * out[out_index]


def darknet_upsample(x, stride, scale, reverse):
    batch, c, h, w = x.shape
    if reverse:                      # make_upsample_layer: stride < 0 -> out = in / stride
        out_w, out_h = w // stride, h // stride
        output = np.zeros(batch * c * out_h * out_w, dtype=F32)       # fill_cpu(..., 0, ...)
        darknet_upsample_cpu(output, out_w, out_h, c, batch, stride, 0, scale, x.reshape(-1))
    else:
        out_w, out_h = w * stride, h * stride
        output = np.zeros(batch * c * out_h * out_w, dtype=F32)
        darknet_upsample_cpu(x.reshape(-1), w, h, c, batch, stride, 1, scale, output)
    return output.reshape(batch, c, out_h, out_w)


def im2col_get_pixel(im, height, width, channels, row, col, channel, pad):
    row -= pad
    col -= pad
    if row < 0 or col < 0 or row >= height or col >= width:
        return F32(0)
    return im[col + width * (row + height * channel)]


def darknet_im2col_cpu(data_im, channels, height, width, ksize, stride, pad):
    height_col = c_div(height + 2 * pad - ksize, stride) + 1
    width_col = c_div(width + 2 * pad - ksize, stride) + 1
    channels_col = channels * ksize * ksize
    data_col = np.zeros(channels_col * height_col * width_col, dtype=F32)
    for c in range(channels_col):
        w_offset = c % ksize
        h_offset = (c // ksize) % ksize
        c_im = c // ksize // ksize
        for h in range(height_col):
            for w in range(width_col):
                im_row = h_offset + h * stride
                im_col = w_offset + w * stride
                col_index = (c * height_col + h) * width_col + w
                data_col[col_index] = im2col_get_pixel(data_im, height, width, channels,
                                                       im_row, im_col, c_im, pad)
    return data_col


def darknet_gemm_nn(M, N, K, ALPHA, A, a0, lda, B, b0, ldb, C, c0, ldc):
    for i in range(M):
        for k in range(K):
            A_PART = F32(ALPHA) * A[a0 + i * lda + k]
            for j in range(N):
                C[c0 + i * ldc + j] += A_PART * B[b0 + k * ldb + j]


def darknet_gemm(TA, TB, M, N, K, ALPHA, A, a0, lda, B, b0, ldb, BETA, C, c0, ldc):
    assert (TA, TB) == (0, 0)
    for i in range(M):
        for j in range(N):
            C[c0 + i * ldc + j] *= F32(BETA)
    darknet_gemm_nn(M, N, K, ALPHA, A, a0, lda, B, b0, ldb, C, c0, ldc)


def local_out_size(size_in, size, stride, pad):   # local_out_height / local_out_width
    size_in -= 1 if pad else size
    return c_div(size_in, stride) + 1


def darknet_local(x, weights, biases, n, size, stride, pad, activation):
    batch, c, h, w = x.shape
    out_h, out_w = local_out_size(h, size, stride, pad), local_out_size(w, size, stride, pad)
    locations = out_h * out_w
    outputs = out_h * out_w * n
    inp = x.reshape(-1)
    output = np.zeros(batch * outputs, dtype=F32)
    for i in range(batch):
        output[i * outputs:(i + 1) * outputs] = biases         # copy_cpu(l.outputs, l.biases, ...)
    for i in range(batch):
        col_image = darknet_im2col_cpu(inp[i * w * h * c:], c, h, w, size, stride, pad)
        for j in range(locations):
            m, nn, k = n, 1, size * size * c
            darknet_gemm(0, 0, m, nn, k, 1, weights, j * size * size * c * n, k,
                         col_image, j, locations, 1, output, i * outputs + j, locations)
    return darknet_activate_array(output, activation).reshape(batch, n, out_h, out_w)


def darknet_softmax(inp, i0, n, temp, stride, output, o0):
    total = F32(0)
    largest = -FLT_MAX
    temp = F32(temp)
    for i in range(n):
        if inp[i0 + i * stride] > largest:
            largest = inp[i0 + i * stride]
    for i in range(n):
        e = F32(c_exp(float(inp[i0 + i * stride] / temp - largest / temp)))
        total += e
        output[o0 + i * stride] = e
    for i in range(n):
        output[o0 + i * stride] /= total


def darknet_softmax_cpu(inp, i0, n, batch, batch_offset, groups, group_offset, stride, temp, output, o0):
    for b in range(batch):
        for g in range(groups):
            off = b * batch_offset + g * group_offset
            darknet_softmax(inp, i0 + off, n, temp, stride, output, o0 + off)


def darknet_softmax_layer(x, groups, temperature):
    batch = x.shape[0]
    inputs = x[0].size
    output = np.zeros(x.size, dtype=F32)
    darknet_softmax_cpu(x.reshape(-1), 0, inputs // groups, batch, inputs, groups, inputs // groups,
                        1, temperature, output, 0)
    return output.reshape(x.shape)


def darknet_yolo(x, n, classes):
    """forward_yolo_layer (CPU): logistic on x, y and on objectness + classes."""
    batch, _, h, w = x.shape
    outputs = x[0].size
    output = x.reshape(-1).copy()

    def entry_index(b, location, entry):
        nn, loc = location // (w * h), location % (w * h)
        return b * outputs + nn * w * h * (4 + classes + 1) + entry * w * h + loc

    for b in range(batch):
        for nn in range(n):
            for entry, span in ((0, 2 * w * h), (4, (1 + classes) * w * h)):
                index = entry_index(b, nn * w * h, entry)
                output[index:index + span] = darknet_activate_array(output[index:index + span], "logistic")
    return output


def darknet_region(x, n, classes, coords, softmax, background):
    """forward_region_layer (CPU, no tree)."""
    batch, _, h, w = x.shape
    inputs = outputs = x[0].size
    net_input = x.reshape(-1)
    output = net_input.copy()

    def entry_index(b, location, entry):
        nn, loc = location // (w * h), location % (w * h)
        return b * outputs + nn * w * h * (coords + classes + 1) + entry * w * h + loc

    def logistic(index, count):
        output[index:index + count] = darknet_activate_array(output[index:index + count], "logistic")

    for b in range(batch):
        for nn in range(n):
            logistic(entry_index(b, nn * w * h, 0), 2 * w * h)
            if not background:
                logistic(entry_index(b, nn * w * h, coords), w * h)
            if not softmax:
                logistic(entry_index(b, nn * w * h, coords + 1), classes * w * h)
    if softmax:
        index = entry_index(0, 0, coords + (not background))
        darknet_softmax_cpu(net_input, index, classes + background, batch * n, inputs // n,
                            w * h, 1, w * h, 1, output, index)
    return output


def darknet_detection(x, side, classes, softmax):
    """forward_detection_layer: softmax over each cell's classes, the rest copied."""
    batch = x.shape[0]
    inputs = x[0].size
    locations = side * side
    output = x.reshape(-1).copy()
    if softmax:
        for b in range(batch):
            index = b * inputs
            for i in range(locations):
                offset = i * classes
                darknet_softmax(output, index + offset, classes, 1, 1, output, index + offset)
    return output
