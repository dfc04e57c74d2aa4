/* The output stage's per-call set-up: which source channel feeds each output channel, and the
 * float value of every (channel, pixel value) pair. */
#include <string.h>

#include "core.h"

/* float32 -> IEEE binary16 bits, round to nearest even (what numpy's astype(float16) does). */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
    if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;  /* a carry rounds up the exponent */
    return (uint16_t)half;
}

/* Per-channel tables: every float output is a pure function of (channel, pixel value), so the
 * arithmetic (float32(v) * scale, then (x - mean) / std) is done 768 times, not per pixel. */
void dk_prepare_output(Job *j) {
    for (int c = 0; c < j->oc; c++) {
        int sc = j->sc == 1 ? 0 : (j->swap_rb && c < 3 ? 2 - c : c);
        j->cmap[c] = sc * j->s_ch;
        if (j->kind == OUT_U8) continue;  /* uint8 outputs use no table */
        for (int v = 0; v < 256; v++) {
            float f = (float)v * j->scale;
            if (j->normalize) f = (f - j->mean[c]) / j->std[c];
            j->lut[c][v] = f;
            if (j->kind == OUT_F16) j->lut16[c][v] = f32_to_f16(f);
        }
    }
}
