/* Exact mode's batch norm and activation after a direct convolution, in one pass over its
 * channels-last output (N * H * W rows of C values), in place:
 *   y = act(x * alpha[c] + beta[c])
 * as one fused multiply-add, rounded once, as ATen's addcmul(beta, x, alpha) computes it
 * (and eval-mode batch norm: tests/test_precision.py), then leaky (0.1 x below zero) or relu
 * as ATen's in-place activations compute them. One OpenMP region instead of two passes of two. */
#include <math.h>
#include <stddef.h>

enum { ACT_LINEAR = 0, ACT_LEAKY = 1, ACT_RELU = 2 };

void affine_act(float *restrict x, long rows, int c, const float *restrict alpha, const float *restrict beta,
                int act, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        float *restrict row = x + (size_t)r * c;
        if (act == ACT_LEAKY)
            for (int i = 0; i < c; i++) {
                float v = fmaf(row[i], alpha[i], beta[i]), below = v * 0.1f;
                row[i] = v > below ? v : below; /* v > 0 ? v : 0.1 v, as a select of two values */
            }
        else if (act == ACT_RELU)
            for (int i = 0; i < c; i++) {
                float v = fmaf(row[i], alpha[i], beta[i]);
                row[i] = v > 0 ? v : 0;
            }
        else
            for (int i = 0; i < c; i++) row[i] = fmaf(row[i], alpha[i], beta[i]);
    }
}
