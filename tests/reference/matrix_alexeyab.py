"""AlexeyAB's do_kmeans (matrix.c), as calc_anchors (detector.c) runs it on box sizes with the
IoU distance: closest_center, kmeans_expectation, kmeans_maximization, in float32 scalars."""
from __future__ import annotations

import numpy as np


def darknet_kmeans(points, start):
    """Literal transcription of AlexeyAB's do_kmeans (matrix.c) from given start indices, in
    float32 scalars: closest_center, kmeans_expectation, kmeans_maximization."""
    f = np.float32
    data = [[f(w), f(h)] for w, h in points]
    centers = [list(data[i]) for i in start]
    k = len(centers)

    def dist(x, y):
        mw = x[0] if x[0] < y[0] else y[0]
        mh = x[1] if x[1] < y[1] else y[1]
        inter = f(mw * mh)
        un = f(f(f(x[0] * x[1]) + f(y[0] * y[1])) - inter)
        return f(f(1) - f(inter / un))

    def closest(d):
        best, best_dist = 0, dist(d, centers[0])
        for j in range(k):
            nd = dist(d, centers[j])
            if nd < best_dist:
                best_dist, best = nd, j
        return best

    assignments = [0] * len(data)

    def expectation():
        converged = True
        for i, d in enumerate(data):
            c = closest(d)
            if c != assignments[i]:
                converged = False
            assignments[i] = c
        return converged

    def maximization():
        old = [list(c) for c in centers]
        counts = [0] * k
        for c in centers:
            c[0] = c[1] = f(0)
        for i, d in enumerate(data):
            counts[assignments[i]] += 1
            for j in range(2):
                centers[assignments[i]][j] = f(centers[assignments[i]][j] + d[j])
        for i in range(k):
            if counts[i]:
                for j in range(2):
                    centers[i][j] = f(centers[i][j] / f(counts[i]))
        for i in range(k):
            for j in range(2):
                if centers[i][j] == 0:
                    centers[i][j] = old[i][j]

    if k == 1:
        maximization()
    rounds = 0
    while rounds < 1000 and not expectation():
        maximization()
        rounds += 1
    return np.array(centers, np.float32), rounds
