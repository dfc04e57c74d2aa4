/* The resample op's AVX2 build: hand-written AVX2 kernels for a prefix of each row (bit-identical
 * to the scalar loops they stand in for), and resample.h's driver compiled with AVX2+FMA enabled
 * around them, so that its own loops (output stage, padding) are vectorised for AVX2 too.
 * Chosen at import when the CPU has AVX2 and FMA (dispatch.c); nothing here runs otherwise.
 */
#include "core.h"

#ifdef DK_X86_DISPATCH
#include <immintrin.h>

#define RESAMPLE_TARGET __attribute__((target("avx2,fma")))
#include "resample.h"

#define AVX2 __attribute__((target("avx2")))
/* the row kernels whose loops want the registers to themselves stay out of line */
#define AVX2_KERNEL __attribute__((target("avx2"), noinline))

AVX2 static inline __m128i load_hi64(__m128i lo, const uint8_t *p) {
    return _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(lo), (const double *)(const void *)p));
}

/* Byte-shuffle masks of the neighbour-taps paths: in each 16-byte lane (two 8-byte pixel loads),
 * output channel c's bytes of the two taps become the int16 pairs (v0, v1) of two int32 lanes. */
static void pair_masks(const Job *j, int8_t (*m)[32]) {
    for (int c = 0; c < 3; c++) {
        for (int b = 0; b < 32; b++) m[c][b] = (int8_t)0x80;
        for (int lane = 0; lane < 32; lane += 16)
            for (int px = 0; px < 2; px++) {
                m[c][lane + 4 * px] = (int8_t)(8 * px + j->cmap[c]);
                m[c][lane + 4 * px + 2] = (int8_t)(8 * px + j->s_col + j->cmap[c]);
            }
    }
}

/* Packed 3/4-channel pixels (the 8-byte loads below read a pixel and its right neighbour). */
static int packed_rgb(const Job *j) {
    return j->oc == 3 && j->sc >= 3 && j->s_ch == 1 && j->s_col <= 4;
}

/* -- cv2 mode ------------------------------------------------------------------------------- */

/* The vector horizontal pass's tables: the prefix of window columns whose two taps are neighbours
 * and whose 8-byte read stays in the row; per column its byte offset and its (w0, w1) int16 pair. */
static void cv2_hplan_avx2(const Job *j, const Tap2 *xt, const ptrdiff_t *xoff, HPass *h) {
    if (!packed_rgb(j)) return;
    int n = 0;
    ptrdiff_t limit = (j->sw - 1) * j->s_col + (j->sc - 1);  /* last byte of the row */
    while (n < j->ww && xoff[j->ww + n] == xoff[n] + j->s_col && xoff[n] + 7 <= limit) n++;
    n &= ~7;
    int32_t *tab = n ? malloc(sizeof(int32_t) * 2 * (size_t)j->ww) : NULL;  /* xo0 | wpair */
    if (!tab) return;  /* no vector pass: the scalar loop does the whole row */
    for (int ox = 0; ox < n; ox++) {
        tab[ox] = (int32_t)xoff[ox];
        tab[j->ww + ox] = (int32_t)((uint32_t)xt[j->wx + ox].w0 | ((uint32_t)xt[j->wx + ox].w1 << 16));
    }
    pair_masks(j, h->masks);
    h->n = n;
    h->ww = j->ww;
    h->tab = tab;
}

/* Without gathers: one 8-byte load per output pixel holds both taps of every channel; a byte
 * shuffle lays a channel out as int16 pairs and one madd applies both weights. */
AVX2_KERNEL static void cv2_hrow_avx2(const HPass *h, const uint8_t *base, int32_t *row) {
    /* locals: the stores below could alias *h; ptrdiff_t indices need no sign extension */
    ptrdiff_t ww = h->ww, n = h->n;
    const int32_t *xo0 = h->tab, *wpair = h->tab + ww;
    const __m256i shuf[3] = {_mm256_loadu_si256((const __m256i *)h->masks[0]),
                             _mm256_loadu_si256((const __m256i *)h->masks[1]),
                             _mm256_loadu_si256((const __m256i *)h->masks[2])};
#define LOAD2(a, b) load_hi64(_mm_loadl_epi64((const __m128i *)(base + xo0[a])), base + xo0[b])
    for (ptrdiff_t ox = 0; ox < n; ox += 8) {
        __m256i p0 = _mm256_inserti128_si256(_mm256_castsi128_si256(LOAD2(ox, ox + 1)), LOAD2(ox + 4, ox + 5), 1);
        __m256i p1 = _mm256_inserti128_si256(_mm256_castsi128_si256(LOAD2(ox + 2, ox + 3)), LOAD2(ox + 6, ox + 7), 1);
        __m256i w = _mm256_loadu_si256((const __m256i *)(wpair + ox));
        for (int c = 0; c < 3; c++) {
            __m256i pair = _mm256_unpacklo_epi64(_mm256_shuffle_epi8(p0, shuf[c]), _mm256_shuffle_epi8(p1, shuf[c]));
            _mm256_storeu_si256((__m256i *)(row + (size_t)c * ww + ox), _mm256_madd_epi16(pair, w));
        }
    }
#undef LOAD2
}

/* cv2's vertical pass, 8 values at a time: ((a >> 4) * b0 >> 16) + ((b >> 4) * b1 >> 16),
 * rounded by 2 bits and saturated to uint8 — the scalar loop's integers exactly. */
AVX2 static size_t cv2_vrow_avx2(const int32_t *a, const int32_t *b, int32_t b0, int32_t b1,
                                 uint8_t *row, size_t n) {
    const __m256i w0 = _mm256_set1_epi32(b0), w1 = _mm256_set1_epi32(b1);
    const __m256i two = _mm256_set1_epi32(2), zero = _mm256_setzero_si256();
    const __m256i top = _mm256_set1_epi32(255);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_srai_epi32(_mm256_mullo_epi32(
            _mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(a + i)), 4), w0), 16);
        __m256i y = _mm256_srai_epi32(_mm256_mullo_epi32(
            _mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(b + i)), 4), w1), 16);
        __m256i v = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(x, y), two), 2);
        v = _mm256_min_epi32(_mm256_max_epi32(v, zero), top);
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storel_epi64((__m128i *)(row + i), _mm_packus_epi16(p16, p16));
    }
    return i;
}

/* The vertical pass fused with the float32 NCHW output stage, 16 values at a time, as OpenCV's
 * own vector loop: (a >> 4) fits int16, so ((a >> 4) * b0) >> 16 is one mulhi; the sum, rounded
 * by 2 bits and clamped to 0..255, is converted and scaled straight into the output planes with
 * the scalar stage's IEEE operations (no uint8 row in between). Returns the columns done. */
AVX2_KERNEL static int cv2_vrow_f32_avx2(const Job *j, const int32_t *a, const int32_t *b, int32_t b0,
                                  int32_t b1, ptrdiff_t y) {
    const __m256i w0 = _mm256_set1_epi16((int16_t)b0), w1 = _mm256_set1_epi16((int16_t)b1);
    const __m256i two = _mm256_set1_epi16(2), zero = _mm256_setzero_si256();
    const __m256i top = _mm256_set1_epi16(255);
    int ww = j->ww, x = 0;
    for (ptrdiff_t c = 0; c < j->oc; c++) {
        const int32_t *ac = a + (size_t)c * ww, *bc = b + (size_t)c * ww;
        float *o = (float *)j->out + ((size_t)c * j->oh + y) * j->ow + j->left;
        const __m256 sc = _mm256_set1_ps(j->scale), mn = _mm256_set1_ps(j->mean[c]);
        const __m256 sd = _mm256_set1_ps(j->std[c]);
        for (x = 0; x + 16 <= ww; x += 16) {
#define HALF16(p) _mm256_packs_epi32(_mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(p)), 4), \
                                     _mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)((p) + 8)), 4))
            __m256i v = _mm256_add_epi16(_mm256_add_epi16(_mm256_mulhi_epi16(HALF16(ac + x), w0),
                                                          _mm256_mulhi_epi16(HALF16(bc + x), w1)), two);
#undef HALF16
            v = _mm256_min_epi16(_mm256_max_epi16(_mm256_srai_epi16(v, 2), zero), top);
            v = _mm256_permute4x64_epi64(v, 0xd8);  /* undo the packs' lane interleave */
            __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(v))), sc);
            __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1))), sc);
            if (j->normalize) {
                f0 = _mm256_div_ps(_mm256_sub_ps(f0, mn), sd);
                f1 = _mm256_div_ps(_mm256_sub_ps(f1, mn), sd);
            }
            _mm256_storeu_ps(o + x, f0);
            _mm256_storeu_ps(o + x + 8, f1);
        }
    }
    return x;  /* the same for every channel */
}

/* -- Pillow mode ---------------------------------------------------------------------------- */

/* The vector horizontal pass's tables, per tap pair p: each pixel's byte offset and its (lo, hi)
 * 11-bit weight halves; for the prefix of pixels whose 8-byte reads of every tap pair stay in the
 * row. Triangle weights are >= 0 (checked: otherwise no vector pass). */
static void pil_hplan_avx2(const Job *j, const TapsN *xt, HPass *h) {
    if (!packed_rgb(j)) return;
    int taps = 0, negative = 0, n = 0;
    for (int o = j->wx; o < j->wx + j->ww; o++) {
        if (xt->n[o] > taps) taps = xt->n[o];
        for (int k = 0; k < xt->n[o]; k++) negative |= xt->w[(size_t)o * xt->ksize + k] < 0;
    }
    int pairs = (taps + 1) / 2;
    ptrdiff_t limit = (j->sw - 1) * j->s_col + (j->sc - 1);  /* last byte of the row */
    while (!negative && n < j->ww &&
           (ptrdiff_t)(xt->lo[j->wx + n] + 2 * pairs - 2) * j->s_col + 7 <= limit)
        n++;
    n &= ~7;
    int32_t *tab = n ? malloc(sizeof(int32_t) * 3 * (size_t)pairs * (size_t)j->ww) : NULL;
    if (!tab) return;  /* no vector pass: the scalar loop does the whole row */
    size_t plane = (size_t)pairs * j->ww;  /* offP | wlo | whi */
    for (int p = 0; p < pairs; p++)
        for (int ox = 0; ox < n; ox++) {
            int o = j->wx + ox;
            uint32_t w[2];
            for (int t = 0; t < 2; t++)
                w[t] = 2 * p + t < xt->n[o] ? (uint32_t)xt->w[(size_t)o * xt->ksize + 2 * p + t] : 0u;
            size_t at = (size_t)p * j->ww + ox;
            tab[at] = (int32_t)((xt->lo[o] + 2 * p) * j->s_col);
            tab[plane + at] = (int32_t)((w[0] & 2047u) | ((w[1] & 2047u) << 16));
            tab[2 * plane + at] = (int32_t)((w[0] >> 11) | ((w[1] >> 11) << 16));
        }
    pair_masks(j, h->masks);
    h->n = n;
    h->ww = j->ww;
    h->pairs = pairs;
    h->tab = tab;
}

/* Pillow's horizontal pass without gathers: per pair of neighbouring taps, one 8-byte load per
 * output pixel (as in cv2_hrow_avx2). The 22-bit weights are split into 11-bit halves so that
 * 16-bit madds apply them: sum(v * w) = (sum(v * (w >> 11)) << 11) + sum(v * (w & 2047)), the
 * same integer as the scalar loop. */
AVX2_KERNEL static void pil_hrow_avx2(const HPass *h, const uint8_t *base, uint8_t *dst) {
    /* locals: the stores below could alias *h; ptrdiff_t indices need no sign extension */
    ptrdiff_t ww = h->ww, n = h->n;
    int pairs = h->pairs;
    size_t plane = (size_t)pairs * ww;
    const int32_t *offP = h->tab, *wlo = h->tab + plane, *whi = h->tab + 2 * plane;
    const __m256i shuf[3] = {_mm256_loadu_si256((const __m256i *)h->masks[0]),
                             _mm256_loadu_si256((const __m256i *)h->masks[1]),
                             _mm256_loadu_si256((const __m256i *)h->masks[2])};
    const __m256i half = _mm256_set1_epi32(1 << (PIL_BITS - 1)), top = _mm256_set1_epi32(255);
    const __m256i zero = _mm256_setzero_si256();
    for (ptrdiff_t ox = 0; ox < n; ox += 8) {
        __m256i lo[3] = {zero, zero, zero}, hi[3] = {zero, zero, zero};
        for (int p = 0; p < pairs; p++) {
            const int32_t *o = offP + (size_t)p * ww + ox;
#define LOAD2(a, b) load_hi64(_mm_loadl_epi64((const __m128i *)(base + o[a])), base + o[b])
            __m256i p0 = _mm256_inserti128_si256(_mm256_castsi128_si256(LOAD2(0, 1)), LOAD2(4, 5), 1);
            __m256i p1 = _mm256_inserti128_si256(_mm256_castsi128_si256(LOAD2(2, 3)), LOAD2(6, 7), 1);
#undef LOAD2
            __m256i wl = _mm256_loadu_si256((const __m256i *)(wlo + (size_t)p * ww + ox));
            __m256i wh = _mm256_loadu_si256((const __m256i *)(whi + (size_t)p * ww + ox));
            for (int c = 0; c < 3; c++) {
                __m256i v = _mm256_unpacklo_epi64(_mm256_shuffle_epi8(p0, shuf[c]),
                                                  _mm256_shuffle_epi8(p1, shuf[c]));
                lo[c] = _mm256_add_epi32(lo[c], _mm256_madd_epi16(v, wl));
                hi[c] = _mm256_add_epi32(hi[c], _mm256_madd_epi16(v, wh));
            }
        }
        for (int c = 0; c < 3; c++) {
            __m256i s = _mm256_add_epi32(_mm256_add_epi32(half, _mm256_slli_epi32(hi[c], 11)), lo[c]);
            __m256i v = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(s, PIL_BITS), zero), top);
            __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            _mm_storel_epi64((__m128i *)(dst + (size_t)c * ww + ox), _mm_packus_epi16(p16, p16));
        }
    }
}

/* Pillow's vertical pass, 8 values at a time over every tap (the scalar loop's int32 sums),
 * rounded, clamped and packed to uint8. Returns the values done. */
AVX2 static size_t pil_vrow_avx2(const uint8_t *const *srcs, const int32_t *w, int taps,
                                 uint8_t *row, size_t n) {
    const __m256i half = _mm256_set1_epi32(1 << (PIL_BITS - 1)), zero = _mm256_setzero_si256();
    const __m256i top = _mm256_set1_epi32(255);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i s = half;
        for (int k = 0; k < taps; k++) {
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(srcs[k] + i)));
            s = _mm256_add_epi32(s, _mm256_mullo_epi32(v, _mm256_set1_epi32(w[k])));
        }
        s = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(s, PIL_BITS), zero), top);
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        _mm_storel_epi64((__m128i *)(row + i), _mm_packus_epi16(p16, p16));
    }
    return i;
}

static const ResampleVec avx2_kernels = {
    .cv2_hplan = cv2_hplan_avx2, .cv2_hrow = cv2_hrow_avx2, .cv2_vrow = cv2_vrow_avx2,
    .cv2_vrow_f32 = cv2_vrow_f32_avx2,
    .pil_hplan = pil_hplan_avx2, .pil_hrow = pil_hrow_avx2, .pil_vrow = pil_vrow_avx2,
};

RESAMPLE_TARGET int dk_resample_avx2(const Job *j) {
    return resample_with(j, &avx2_kernels);
}

#endif
