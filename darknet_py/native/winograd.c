/* Winograd F(4 x 4, 3 x 3) convolution, stride 1, padding 1, channels-last (N, H, W, C).
 *
 * Each part (one per thread) computes the tiles [t0, t1) and the 32-channel output blocks
 * [kb0, kb1) of
 *   y[b, oy, ox, k] = act(alpha[k] * sum_{c, i, j} x[b, oy + i - 1, ox + j - 1, c] w[k, c, i, j] + beta[k])
 * (alpha NULL: 1), group of tiles by group, each group staying in its core's caches: the input
 * transform of the group (all channels), then per output block the 36 small matrix products
 * and the output transform.
 *
 * u is the transformed weight, packed as [36][ceil(K / 32)][32 / U_LANES][C][U_LANES] (zeros
 * past K): the product's pass over one block reads it in order.
 * scratch holds 36 * group * C + 36 * group * 32 * (kb1 - kb0) floats: all of a group's products
 * P[kb][ab][tile][32] are made before the output transform reads them.
 *
 * With bf16 set (fast precision), x and y are bfloat16; everything in between is float32 (the
 * products too: in bfloat16 the transforms' coefficients would cost F(4x4) a 7% error) and y is
 * rounded to nearest even, as PyTorch rounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#define KB 32   /* output channels per block: two 16-float vectors */
#define ROWS 12 /* tiles per register block: 12 x 2 accumulators */

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define U_HALVES 2 /* AVX2: each 32-channel block of u in two 16-channel halves, [C][16] each */
#define V_PANEL 6  /* AVX2: V's tiles in panels of 6 (the register block), [C][6] each */
#else
#define U_HALVES 1
#define V_PANEL 1
#endif
#define U_LANES (KB / U_HALVES) /* one pass of the product reads U_LANES floats per channel */

/* Where tile t's channel i sits in one [ab] of V: with panels, the product's pass over a panel
 * reads its 6 tiles' values for each channel side by side (one stream instead of six). */
static inline size_t v_at(int t, int i, int c)
{
    return ((size_t)(t / V_PANEL) * c + i) * V_PANEL + t % V_PANEL;
}

/* Floats of one [ab] of V for count tiles (whole panels). */
static inline size_t v_stride(int count, int c)
{
    return (size_t)((count + V_PANEL - 1) / V_PANEL) * V_PANEL * c;
}

#define M 4   /* output tile: M x M pixels from an A x A input tile */
#define A 6

/* Tile number -> its image and the top-left output pixel (tiles run image by image, row by row). */
static inline int tile_origin(int tile, int th, int tw, int *oy, int *ox)
{
    int rest = tile % (th * tw);
    *oy = (rest / tw) * M;
    *ox = (rest % tw) * M;
    return tile / (th * tw);
}

enum { ACT_LINEAR = 0, ACT_LEAKY = 1, ACT_RELU = 2 };

/* Lavin's transforms for interpolation points 0, +-1, +-2 and infinity. */
static const float BT[6][6] = {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0},
                                {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

static inline float from_bf16(uint16_t v)
{
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t to_bf16(float f) /* round to nearest even, as PyTorch */
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

/* out[0:lanes] = sum_i coef[i] * src[i * stride + 0:lanes] over the A terms: one row of a
 * transform matrix applied along one axis. Inlined into unrolled loops, the coefficients are
 * constants and the zero ones (2 to 4 of each row's 6) cost nothing. */
static inline __attribute__((always_inline)) void combine(
    const float *coef, const float *src, size_t stride, int lanes, float *out)
{
    float s[KB] = {0};
#pragma GCC unroll 6
    for (int i = 0; i < A; i++)
        if (coef[i] != 0)
            for (int l = 0; l < lanes; l++) s[l] += coef[i] * src[i * stride + l];
    memcpy(out, s, lanes * sizeof(float));
}

/* V[ab][v_at(t, c)] = (B^T d B)[a][b] for the tiles of a group, 16 channels at a time (bf16: x
 * is bfloat16). */
static inline __attribute__((always_inline)) void input_transform(
    int bf16, const void *x_, int h, int w, int c, int th, int tw, int t0, int count, float *v)
{
    const float *xf = x_;
    const uint16_t *xh = x_;
    for (int t = 0; t < count; t++) {
        int tile = t0 + t;
        int y0, x0;
        size_t img = (size_t)tile_origin(tile, th, tw, &y0, &x0) * h * w * c;
        y0--, x0--; /* the input tile starts one pixel up and left (padding 1) */
        for (int c0 = 0; c0 < c; c0 += 16) {
            int lanes = c - c0 < 16 ? c - c0 : 16;
            float d[6][6][16], r[6][6][16];
            for (int i = 0; i < A; i++)
                for (int j = 0; j < A; j++) {
                    int yy = y0 + i, xx = x0 + j;
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w) {
                        for (int l = 0; l < 16; l++) d[i][j][l] = 0;
                    } else {
                        size_t at = img + ((size_t)yy * w + xx) * c + c0;
                        if (bf16)
                            for (int l = 0; l < 16; l++) d[i][j][l] = l < lanes ? from_bf16(xh[at + l]) : 0;
                        else if (lanes == 16)
                            for (int l = 0; l < 16; l++) d[i][j][l] = xf[at + l];
                        else
                            for (int l = 0; l < 16; l++) d[i][j][l] = l < lanes ? xf[at + l] : 0;
                    }
                }
            /* r = B^T d, then V = r B */
#pragma GCC unroll 6
            for (int a = 0; a < A; a++)
#pragma GCC unroll 6
                for (int j = 0; j < A; j++) combine(BT[a], d[0][j], A * 16, 16, r[a][j]);
#pragma GCC unroll 6
            for (int a = 0; a < A; a++)
#pragma GCC unroll 6
                for (int bb = 0; bb < A; bb++) {
                    float s[16];
                    combine(BT[bb], r[a][0], 16, 16, s);
                    float *vab = v + (size_t)(a * A + bb) * v_stride(count, c);
                    if (V_PANEL == 1)
                        memcpy(vab + v_at(t, c0, c), s, lanes * sizeof(float));
                    else
                        for (int l = 0; l < lanes; l++) vab[v_at(t, c0 + l, c)] = s[l];
                }
        }
    }
}

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
/* AVX2 + FMA: 16 ymm registers hold a 6-row x 16-channel block of accumulators (12), two
 * vectors of u and one broadcast of v; a 32-channel block is two such passes. Each output's
 * sum runs over i in order with one FMA per term, as on the AVX-512 path. */
static inline __attribute__((always_inline)) void micro_avx2(
    const float *v, const int rows, int c, const float *u, float *out)
{
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int i = 0; i < c; i++) {
        __m256 u0 = _mm256_loadu_ps(u + (size_t)i * U_LANES), u1 = _mm256_loadu_ps(u + (size_t)i * U_LANES + 8);
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            __m256 s = _mm256_broadcast_ss(v + (size_t)i * V_PANEL + r);
            acc[r][0] = _mm256_fmadd_ps(s, u0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(s, u1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_ps(out + r * KB, acc[r][0]);
        _mm256_storeu_ps(out + r * KB + 8, acc[r][1]);
    }
}
#endif

/* out[r][0:32] = sum_i v[r * c + i] * u[i][0:32] for r < rows. */
static inline __attribute__((always_inline)) void product_block(
    const float *v, int rows, int c, const float *u, float *out)
{
#if defined(__AVX512F__)
    __m512 acc[ROWS][2];
#pragma GCC unroll 12
    for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    if (rows == ROWS) {
        for (int i = 0; i < c; i++) {
            __m512 u0 = _mm512_loadu_ps(u + (size_t)i * KB), u1 = _mm512_loadu_ps(u + (size_t)i * KB + 16);
#pragma GCC unroll 12
            for (int r = 0; r < ROWS; r++) {
                __m512 s = _mm512_set1_ps(v[(size_t)r * c + i]);
                acc[r][0] = _mm512_fmadd_ps(s, u0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(s, u1, acc[r][1]);
            }
        }
    } else {
        for (int i = 0; i < c; i++) {
            __m512 u0 = _mm512_loadu_ps(u + (size_t)i * KB), u1 = _mm512_loadu_ps(u + (size_t)i * KB + 16);
            for (int r = 0; r < rows; r++) {
                __m512 s = _mm512_set1_ps(v[(size_t)r * c + i]);
                acc[r][0] = _mm512_fmadd_ps(s, u0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(s, u1, acc[r][1]);
            }
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_ps(out + r * KB, acc[r][0]);
        _mm512_storeu_ps(out + r * KB + 16, acc[r][1]);
    }
#elif defined(__AVX2__) && defined(__FMA__)
    for (int r0 = 0; r0 < rows; r0 += 6) {
        int n = rows - r0 < 6 ? rows - r0 : 6;
        for (int half = 0; half < U_HALVES; half++) {
            const float *vr = v + (size_t)r0 * c, *uh = u + (size_t)half * c * U_LANES;
            float *o = out + r0 * KB + half * U_LANES;
            switch (n) { /* constant row counts: the accumulators stay in registers */
            case 6: micro_avx2(vr, 6, c, uh, o); break;
            case 5: micro_avx2(vr, 5, c, uh, o); break;
            case 4: micro_avx2(vr, 4, c, uh, o); break;
            case 3: micro_avx2(vr, 3, c, uh, o); break;
            case 2: micro_avx2(vr, 2, c, uh, o); break;
            default: micro_avx2(vr, 1, c, uh, o); break;
            }
        }
    }
#else
    for (int r = 0; r < rows; r++) {
        float acc[KB] = {0};
        for (int i = 0; i < c; i++) {
            float s = v[(size_t)r * c + i];
            for (int l = 0; l < KB; l++) acc[l] += s * u[(size_t)i * KB + l];
        }
        memcpy(out + r * KB, acc, sizeof acc);
    }
#endif
}

static inline float activate(float x, int act)
{
    if (act == ACT_LEAKY) return x > 0 ? x : 0.1f * x;
    if (act == ACT_RELU) return x > 0 ? x : 0;
    return x;
}

/* y tiles from P[ab][t][0:32] = (A^T P A), with the per-channel affine and activation. */
static inline __attribute__((always_inline)) void output_transform(
    int bf16, const float *p, int count, int t0, int th, int tw, int h, int w, int k, int k0,
    const float *alpha, const float *beta, int act, void *y_)
{
    float *yf = y_;
    uint16_t *yh = y_;
    int lanes = k - k0 < KB ? k - k0 : KB;
    float al[KB], be[KB];
    for (int l = 0; l < KB; l++) {
        al[l] = alpha && l < lanes ? alpha[k0 + l] : 1;
        be[l] = beta && l < lanes ? beta[k0 + l] : 0;
    }
    for (int t = 0; t < count; t++) {
        int tile = t0 + t;
        int oy, ox, b = tile_origin(tile, th, tw, &oy, &ox);
        float r[4][6][KB];
        /* r = A^T P, then y = r A */
#pragma GCC unroll 4
        for (int a = 0; a < M; a++)
#pragma GCC unroll 6
            for (int j = 0; j < A; j++)
                combine(AT[a], p + ((size_t)j * count + t) * KB, (size_t)A * count * KB, KB, r[a][j]);
#pragma GCC unroll 4
        for (int a = 0; a < M; a++)
#pragma GCC unroll 4
            for (int bb = 0; bb < M; bb++) {
                float s[KB];
                combine(AT[bb], r[a][0], KB, KB, s);
                int yy = oy + a, xx = ox + bb;
                if (yy >= h || xx >= w) continue;
                size_t at = (((size_t)b * h + yy) * w + xx) * k + k0;
                if (alpha)
                    for (int l = 0; l < KB; l++) s[l] = s[l] * al[l] + be[l];
                else
                    for (int l = 0; l < KB; l++) s[l] = s[l] + be[l];
                for (int l = 0; l < KB; l++) s[l] = activate(s[l], act);
                if (bf16)
                    for (int l = 0; l < lanes; l++) yh[at + l] = to_bf16(s[l]);
                else
                    memcpy(yf + at, s, lanes * sizeof(float));
            }
    }
}

#if defined(__AVX2__) && defined(__FMA__)
/* The output transform on 8 channels at a time (AVX2, also on AVX-512 CPUs), A^T written out
 * with its shared terms: per column (m1 +- m2) and (m3 +- m4) feed all four rows. The generic
 * loop above spent 3 x the products' time here (208x208 32->64: 16.8 ms against 5.4 ms). */
static inline __attribute__((always_inline)) void at_rows(const __m256 m[6], __m256 t[4])
{
    __m256 s12 = _mm256_add_ps(m[1], m[2]), d12 = _mm256_sub_ps(m[1], m[2]);
    __m256 s34 = _mm256_add_ps(m[3], m[4]), d34 = _mm256_sub_ps(m[3], m[4]);
    t[0] = _mm256_add_ps(_mm256_add_ps(m[0], s12), s34);
    t[1] = _mm256_fmadd_ps(_mm256_set1_ps(2), d34, d12);
    t[2] = _mm256_fmadd_ps(_mm256_set1_ps(4), s34, s12);
    t[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8), d34, d12), m[5]);
}

/* B^T applied along one axis to 6 vectors, its shared terms written out. */
static inline __attribute__((always_inline)) void bt_rows(const __m256 d[6], __m256 r[6])
{
    const __m256 four = _mm256_set1_ps(4), two = _mm256_set1_ps(2), five = _mm256_set1_ps(5);
    __m256 d42 = _mm256_sub_ps(d[4], d[2]), d31 = _mm256_sub_ps(d[3], d[1]);
    r[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
    r[1] = _mm256_fnmadd_ps(four, _mm256_add_ps(d[1], d[2]), _mm256_add_ps(d[3], d[4]));
    r[2] = _mm256_fmadd_ps(four, _mm256_sub_ps(d[1], d[2]), _mm256_sub_ps(d[4], d[3]));
    r[3] = _mm256_fmadd_ps(two, d31, d42);
    r[4] = _mm256_fnmadd_ps(two, d31, d42);
    r[5] = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
}

/* 8 channels (n of them real, the rest 0) of one input pixel as float32. */
static inline __attribute__((always_inline)) __m256 load_pixel(int bf16, const void *x, size_t at, int n)
{
    if (bf16) {
        uint16_t tmp[8] = {0};
        const uint16_t *src = (const uint16_t *)x + at;
        if (n < 8) src = memcpy(tmp, src, n * sizeof(uint16_t));
        __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)src));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    const float *src = (const float *)x + at;
    if (n == 8) return _mm256_loadu_ps(src);
    float tmp[8] = {0};
    memcpy(tmp, src, n * sizeof(float));
    return _mm256_loadu_ps(tmp);
}

/* The input transform on 8 channels at a time (AVX2, also on AVX-512 CPUs). */
static inline __attribute__((always_inline)) void input_transform_avx2(
    int bf16, const void *x, int h, int w, int c, int th, int tw, int t0, int count, float *v)
{
    const size_t stride = v_stride(count, c);
    for (int t = 0; t < count; t++) {
        int tile = t0 + t;
        int y0, x0;
        size_t img = (size_t)tile_origin(tile, th, tw, &y0, &x0) * h * w * c;
        y0--, x0--; /* the input tile starts one pixel up and left (padding 1) */
        for (int c0 = 0; c0 < c; c0 += 8) {
            int n = c - c0 < 8 ? c - c0 : 8;
            __m256 r[6][6]; /* r[a][j] = (B^T d)[a][j] */
            for (int j = 0; j < A; j++) {
                __m256 d[6], col[6];
                int xx = x0 + j;
#pragma GCC unroll 6
                for (int i = 0; i < A; i++) {
                    int yy = y0 + i;
                    d[i] = (yy < 0 || yy >= h || xx < 0 || xx >= w)
                               ? _mm256_setzero_ps()
                               : load_pixel(bf16, x, img + ((size_t)yy * w + xx) * c + c0, n);
                }
                bt_rows(d, col);
#pragma GCC unroll 6
                for (int a = 0; a < A; a++) r[a][j] = col[a];
            }
            for (int a = 0; a < A; a++) {
                __m256 out[6];
                bt_rows(r[a], out);
#pragma GCC unroll 6
                for (int bb = 0; bb < A; bb++) {
                    float *vab = v + (size_t)(a * A + bb) * stride;
                    if (V_PANEL == 1 && n == 8) {
                        _mm256_storeu_ps(vab + v_at(t, c0, c), out[bb]);
                    } else {
                        float tmp[8];
                        _mm256_storeu_ps(tmp, out[bb]);
                        for (int l = 0; l < n; l++) vab[v_at(t, c0 + l, c)] = tmp[l];
                    }
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) void output_transform_avx2(
    int bf16, const float *p, int count, int t0, int th, int tw, int h, int w, int k, int k0,
    const float *alpha, const float *beta, int act, void *y_)
{
    float *yf = y_;
    uint16_t *yh = y_;
    int lanes = k - k0 < KB ? k - k0 : KB;
    const size_t ab_stride = (size_t)count * KB;
    for (int t = 0; t < count; t++) {
        int tile = t0 + t;
        int oy, ox, b = tile_origin(tile, th, tw, &oy, &ox);
        int rows = h - oy < M ? h - oy : M, cols = w - ox < M ? w - ox : M;
        for (int l0 = 0; l0 < lanes; l0 += 8) {
            int n = lanes - l0 < 8 ? lanes - l0 : 8;
            const float *pt = p + (size_t)t * KB + l0;
            __m256 r[4][6];
            for (int j = 0; j < A; j++) { /* r[.][j] = A^T P[.][j] */
                __m256 m[6], tcol[4];
#pragma GCC unroll 6
                for (int i = 0; i < A; i++) m[i] = _mm256_loadu_ps(pt + (size_t)(i * A + j) * ab_stride);
                at_rows(m, tcol);
#pragma GCC unroll 4
                for (int a = 0; a < M; a++) r[a][j] = tcol[a];
            }
            __m256 al = _mm256_set1_ps(1), be = _mm256_setzero_ps();
            float tmp[8];
            if (alpha || beta) {
                for (int l = 0; l < 8; l++) tmp[l] = l < n && beta ? beta[k0 + l0 + l] : 0;
                be = _mm256_loadu_ps(tmp);
            }
            if (alpha) {
                for (int l = 0; l < 8; l++) tmp[l] = l < n ? alpha[k0 + l0 + l] : 1;
                al = _mm256_loadu_ps(tmp);
            }
            for (int a = 0; a < rows; a++) {
                __m256 out[4];
                at_rows(r[a], out);
                for (int bb = 0; bb < cols; bb++) {
                    __m256 s = alpha ? _mm256_fmadd_ps(out[bb], al, be) : _mm256_add_ps(out[bb], be); /* one rounding, as pointwise.c */
                    if (act == ACT_LEAKY)
                        s = _mm256_blendv_ps(_mm256_mul_ps(s, _mm256_set1_ps(0.1f)), s,
                                             _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_GT_OQ));
                    else if (act == ACT_RELU)
                        s = _mm256_and_ps(s, _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_GT_OQ));
                    size_t at = (((size_t)b * h + oy + a) * w + ox + bb) * k + k0 + l0;
                    if (bf16 || n < 8) {
                        _mm256_storeu_ps(tmp, s);
                        if (bf16)
                            for (int l = 0; l < n; l++) yh[at + l] = to_bf16(tmp[l]);
                        else
                            memcpy(yf + at, tmp, n * sizeof(float));
                    } else {
                        _mm256_storeu_ps(yf + at, s);
                    }
                }
            }
        }
    }
}
#define INPUT_TRANSFORM input_transform_avx2
#define OUTPUT_TRANSFORM output_transform_avx2
#else
#define INPUT_TRANSFORM input_transform
#define OUTPUT_TRANSFORM output_transform
#endif

static inline __attribute__((always_inline)) void run(
    int bf16, const void *x, int h, int w, int c, const float *u, int k,
    const float *alpha, const float *beta, int act, void *y,
    int t0, int t1, int kb0, int kb1, int group, float *scratch)
{
    const int blocks = (k + KB - 1) / KB;
    int th = (h + M - 1) / M, tw = (w + M - 1) / M;
    float *v = scratch, *p = scratch + (size_t)A * A * group * c;
    for (int g0 = t0; g0 < t1; g0 += group) {
        int count = t1 - g0 < group ? t1 - g0 : group;
        INPUT_TRANSFORM(bf16, x, h, w, c, th, tw, g0, count, v);
        /* ab outermost: V's [ab] slice (count x C) stays in L2 while every output block reads
         * it, and u is read once per group; by output block first, all of V went through L3
         * once per block (26x26 256->512: 1.8 MB, 16 times). */
        for (int ab = 0; ab < A * A; ab++) {
            const float *vb = v + (size_t)ab * v_stride(count, c);
            for (int kb = kb0; kb < kb1; kb++) {
                const float *ub = u + ((size_t)ab * blocks + kb) * c * KB;
                float *pb = p + ((size_t)(kb - kb0) * A * A + ab) * count * KB;
                for (int r0 = 0; r0 < count; r0 += ROWS)
                    product_block(vb + (size_t)r0 * c, count - r0 < ROWS ? count - r0 : ROWS, c, ub,
                                  pb + (size_t)r0 * KB);
            }
        }
        for (int kb = kb0; kb < kb1; kb++) {
            const float *pk = p + (size_t)(kb - kb0) * A * A * count * KB;
            OUTPUT_TRANSFORM(bf16, pk, count, g0, th, tw, h, w, k, kb * KB, alpha, beta, act, y);
        }
    }
}

/* parts: nparts x (t0, t1, kb0, kb1); each part runs on its own OpenMP thread with its own
 * `per` floats of scratch. With torch loaded first, libgomp is torch's, so these are the same
 * threads oneDNN uses (a second pool would spin against them for the cores). */
void winograd(int bf16, const void *x, int h, int w, int c, const float *u, int k,
              const float *alpha, const float *beta, int act, void *y,
              const int *parts, int nparts, int group, float *scratch, long per)
{
#pragma omp parallel for num_threads(nparts) schedule(static, 1)
    for (int i = 0; i < nparts; i++) {
        const int *q = parts + 4 * i;
        if (bf16)
            run(1, x, h, w, c, u, k, alpha, beta, act, y, q[0], q[1], q[2], q[3], group, scratch + i * per);
        else
            run(0, x, h, w, c, u, k, alpha, beta, act, y, q[0], q[1], q[2], q[3], group, scratch + i * per);
    }
}

/* u = G w G^T for k x c 3x3 weights w (float32, (K, C, 3, 3)), computed in double and packed as
 * the kernel reads it (see the top), zeros past K. Lavin's G for interpolation points 0, +-1, +-2 and infinity. */
void transform_weights(const float *w, int k, int c, float *u, int threads)
{
    static const double G[6][3] = {{1.0 / 4, 0, 0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    const int blocks = (k + KB - 1) / KB;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int kk = 0; kk < blocks * KB; kk++)
        for (int cc = 0; cc < c; cc++) {
            double t[6][3] = {{0}}; /* past K: zeros */
            if (kk < k) {
                const float *g = w + ((size_t)kk * c + cc) * 9;
                for (int a = 0; a < A; a++)
                    for (int j = 0; j < 3; j++)
                        t[a][j] = G[a][0] * g[j] + G[a][1] * g[3 + j] + G[a][2] * g[6 + j];
            }
            for (int a = 0; a < A; a++)
                for (int b = 0; b < A; b++) {
                    double s = t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2];
                    size_t block = (size_t)(a * A + b) * blocks + kk / KB, lane = kk % KB;
                    u[((block * U_HALVES + lane / U_LANES) * c + cc) * U_LANES + lane % U_LANES] = (float)s;
                }
        }
}
