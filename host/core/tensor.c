/* tensor.c - tensor shape helpers, the op table's names, dtype conversion. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *op_names[SD_OP_COUNT] = {
#define X(e, name, kind, flops) [SD_OP_##e] = #name,
#include "ops.def"
#undef X
};
_Static_assert(sizeof op_names / sizeof op_names[0] == SD_OP_COUNT, "op table size");

static const bool op_kernel[SD_OP_COUNT] = {
#define X(e, name, kind, flops) SD_OP_IF_KERNEL(kind, [SD_OP_##e] = true,)
#include "ops.def"
#undef X
};

/* The `flops` column of ops.def. */
enum flops_kind { FLOPS_zero, FLOPS_out, FLOPS_conv2d, FLOPS_linear, FLOPS_matmul, FLOPS_attention };
static const enum flops_kind op_flops[SD_OP_COUNT] = {
#define X(e, name, kind, flops) [SD_OP_##e] = FLOPS_##flops,
#include "ops.def"
#undef X
};

const char *sd_op_name(enum sd_op op) {
    return (unsigned)op < SD_OP_COUNT ? op_names[op] : "?";
}

int sd_op_by_name(const char *name) {
    for (int op = 0; name && op < SD_OP_COUNT; op++)
        if (strcmp(name, op_names[op]) == 0) return op;
    return -1;
}

bool sd_op_is_kernel(enum sd_op op) { return (unsigned)op < SD_OP_COUNT && op_kernel[op]; }

double sd_node_flops(const struct sd_tensor *t) {
    if ((unsigned)t->op >= SD_OP_COUNT) return 0;
    const struct sd_tensor *a = t->src[0], *b = t->src[1];
    double out = (double)sd_tensor_nelements(t);
    switch (op_flops[t->op]) {
    case FLOPS_zero: return 0;
    case FLOPS_out: return out;
    case FLOPS_conv2d: return 2.0 * out * (double)(b->ne[1] * b->ne[2] * b->ne[3]);
    case FLOPS_linear: return 2.0 * out * (double)b->ne[3];
    case FLOPS_matmul: return 2.0 * out * (double)(t->p.matmul.trans_a ? a->ne[2] : a->ne[3]);
    case FLOPS_attention: /* QK^T and PV: 2*B*Lq*Lk*(d + dv) */
        return 2.0 * (double)(a->ne[1] * a->ne[2]) * (double)b->ne[2] * (double)(a->ne[3] + t->src[2]->ne[3]);
    }
    return 0;
}

static const char *dtype_names[SD_DTYPE_COUNT] = {"f32", "f16", "bf16", "i32", "i64"};
static const size_t dtype_sizes[SD_DTYPE_COUNT] = {4, 2, 2, 4, 8};

const char *sd_dtype_name(enum sd_dtype t) {
    return (unsigned)t < SD_DTYPE_COUNT ? dtype_names[t] : "?";
}
size_t sd_dtype_size(enum sd_dtype t) { return (unsigned)t < SD_DTYPE_COUNT ? dtype_sizes[t] : 0; }

int64_t sd_tensor_nelements(const struct sd_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

size_t sd_tensor_nbytes(const struct sd_tensor *t) {
    return (size_t)sd_tensor_nelements(t) * sd_dtype_size(t->type);
}

bool sd_tensor_is_contiguous(const struct sd_tensor *t) {
    size_t s = sd_dtype_size(t->type);
    for (int i = 3; i >= 0; i--) {
        if (t->ne[i] != 1 && t->nb[i] != s) return false;
        s *= (size_t)t->ne[i];
    }
    return true;
}

void sd_tensor_set_shape(struct sd_tensor *t, enum sd_dtype type, int n_dims, const int64_t *dims) {
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < 4; i++) t->ne[i] = 1;
    for (int i = 0; i < n_dims; i++) t->ne[4 - n_dims + i] = dims[i];
    t->nb[3] = sd_dtype_size(type);
    for (int i = 2; i >= 0; i--) t->nb[i] = t->nb[i + 1] * (size_t)t->ne[i + 1];
}

int64_t sd_tensor_dim(const struct sd_tensor *t, int d) {
    if (d < 0 || d >= t->n_dims) return 1;
    return t->ne[4 - t->n_dims + d];
}

char *sd_tensor_shape_str(const struct sd_tensor *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int d = 0; d < t->n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)sd_tensor_dim(t, d));
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

bool sd_tensor_same_shape(const struct sd_tensor *a, const struct sd_tensor *b) {
    return memcmp(a->ne, b->ne, sizeof a->ne) == 0;
}

float sd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sd_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    uint32_t man = x & 0x7fffff;
    if (exp == 255) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    exp = exp - 127 + 15;
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

float sd_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Branchless half -> float for the bulk loop (gcc vectorises it; ~3.5x the
 * scalar sd_f16_to_f32, same bits for all 65536 inputs): the exponent is
 * rebased, inf/nan get the top exponent, and subnormals are renormalised by
 * one float subtraction (o + 2^-14 as float, minus 2^-14). */
static inline float f16_to_f32_fast(uint16_t h) {
    uint32_t o = ((uint32_t)h & 0x7fff) << 13, e = o & (0x7c00u << 13);
    uint32_t sub_bits = o + (113u << 23), r;
    float sub;
    memcpy(&sub, &sub_bits, 4);
    sub -= 6.103515625e-05f;
    memcpy(&sub_bits, &sub, 4);
    r = e == (0x7c00u << 13) ? o + ((255u - 31) << 23) : e == 0 ? sub_bits : o + ((127u - 15) << 23);
    r |= ((uint32_t)h & 0x8000) << 16;
    float f;
    memcpy(&f, &r, 4);
    return f;
}

void sd_convert_to_f32(float *dst, const void *src, enum sd_dtype type, int64_t n) {
    const uint16_t *s16 = src;
    /* Small tensors (biases, norms) are not worth waking the thread team. */
    switch (type) {
    case SD_F32: memcpy(dst, src, (size_t)n * 4); break;
    case SD_F16:
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32_fast(s16[i]);
        break;
    case SD_BF16:
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = sd_bf16_to_f32(s16[i]);
        break;
    default: {
        const int32_t *i32 = src;
        const int64_t *i64 = src;
        for (int64_t i = 0; i < n; i++) dst[i] = type == SD_I32 ? (float)i32[i] : (float)i64[i];
    }
    }
}
