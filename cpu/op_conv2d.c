/* op_conv2d.c - 2-d convolution on the CPU: y = conv(x, w) + b.
 *
 * Contract: x [N,Ci,H,W], w [Co,Ci,kh,kw], optional b [Co], y [N,Co,OH,OW],
 * all contiguous f32 (plain NCHW in our arena). Stride and per-side padding
 * come from node->p.conv2d (the VAE downsampler pads (t,l,b,r) = (0,0,1,1)
 * with stride 2); OH = (H + pad_t + pad_b - kh) / stride_h + 1, likewise OW.
 * Returns SD_OK or SD_ERR_* on cpu->ctx; never allocates per call once a
 * shape has been seen (primitives and reordered weights are cached in
 * cpu_dnnl.c; intermediate buffers come from sd_cpu_scratch).
 *
 * Four algorithms; one is picked per shape when the shape's entry is created:
 *
 *   direct  oneDNN's direct conv (brgconv on AVX-512) in its blocked layout.
 *           Our activations are plain NCHW, so src and dst are reordered to
 *           and from that layout on every call (in the figures below), via
 *           scratch of the size of src + dst; weights are reordered once.
 *   wino    the same with oneDNN's Winograd algorithm (3x3 stride 1, AVX-512
 *           only; F(4x4,3x3), or F(2x2,3x3) on small planes).
 *   nchw    oneDNN conv on plain NCHW src/dst: its gemm-based implementation
 *           (im2col + sgemm inside oneDNN), no reorders, weights used as is.
 *   gemm    ours: im2col of a band of output rows into a per-thread tile
 *           (CONV_TILE_BYTES, at least one row), then a sequential
 *           dnnl_sgemm w[Co,K] x col[K,rows*OW] straight into y, threads on
 *           different bands; a 1x1 stride-1 unpadded conv skips the im2col
 *           (NCHW already is the [Ci, H*W] matrix). Weights used as is.
 *
 * The rule (conv_pick), from `bench_ops --conv --cpu-time` on this machine
 * (2 vCPUs of an AVX-512 Xeon, shared with other jobs, so timed as process
 * CPU time / threads with OMP_WAIT_POLICY=passive; best of interleaved
 * rounds; GFLOP/s at direct-conv FLOPs; dnnl_sgemm 1024^3 = 276 GFLOP/s):
 *
 *   shape (N,Ci,H,W -> Co)        direct   wino   nchw   gemm   picked
 *   2,320,64,64 -> 320  3x3 s1       262    688    233    259   wino
 *   2,640,32,32 -> 640  3x3 s1       291    726    225    206   wino
 *   2,1280,16,16 -> 1280 3x3 s1      235    543    268    170   wino
 *   2,2560,16,16 -> 1280 3x3 s1      196    466    216     91   wino
 *   2,1280,8,8 -> 1280  3x3 s1       195    245    188    141   nchw
 *   2,2560,8,8 -> 1280  3x3 s1       157    231    206    105   nchw
 *   1,512,128,128 -> 512 3x3 s1      226    677    206    212   wino
 *   1,128,256,256 -> 128 3x3 s1      244    319    184    215   wino
 *   2,320,64,64 -> 320  3x3 s2       214      -    193    199   direct
 *   2,640,32,32 -> 640  3x3 s2       270      -    243    249   direct
 *   2,1280,16,16 -> 1280 3x3 s2      187      -    198    150   direct
 *   1,512,64,64 -> 512  3x3 s2       229      -    202    207   direct
 *   2,320,64,64 -> 320  1x1          197      -    238    257   gemm
 *   2,1280,16,16 -> 1280 1x1         260      -    288    310   gemm
 *   1,512,256,256 -> 256 1x1         167      -    202    220   gemm
 *   2,4,64,64 -> 320    3x3 conv_in   67     69    120    154   gemm
 *   2,320,64,64 -> 4    3x3 conv_out  51     31     19     45   gemm
 *   1,128,256,256 -> 3  3x3           31     18     12     42   gemm
 *
 * A second --cpu-time run agreed within ~15%. Wall-clock runs swung 3x with
 * the neighbours' load but ranked the same where the machine was quiet
 * (e.g. 2,320,64,64 3x3 s1: direct 268, wino 642, nchw 229, gemm 263; its
 * 1x1: direct 42, nchw 44, gemm 114 - there the per-call src/dst reorders
 * of `direct` cost more than the conv). So:
 *   1x1 stride-1 unpadded, Ci*kh*kw < 64 (conv_in) or Co < 16 (conv_out): gemm
 *   3x3 stride 1, Ci and Co >= 64, output plane >= 16x16: wino (2-2.8x direct)
 *   3x3 stride 1 on smaller planes (the UNet's 8x8): nchw
 *   otherwise (the stride-2 downsamplers): direct
 *
 * Winograd's price is its weight copies and their one-time transform.
 * F(4x4,3x3) keeps 4x the weight's bytes (F(2x2,3x3), used at 8x8, 1.8x),
 * and oneDNN's wino_reorder is serial and slow: ~100 ns per weight element
 * (1.5 s for 1280x1280x3x3, vs 0.07 s for direct's reorder). At 8x8 that
 * bought only 1.25x over direct, so small planes take nchw (no copy, within
 * 10% of direct). For SD1.5's UNet at 64x64 latents the wino layers hold
 * about 270M weights: ~4.3 GB of copies and ~30 s spent once, on the first
 * step, against ~1.7 s saved per step (~730 GFLOP of such convs per batch-2
 * step, ~250 -> ~600 GFLOP/s): a win from ~20 steps on, and for a server
 * that keeps its model. Accuracy is not the issue: 6e-6 max abs error vs
 * 3.5e-6 for direct on O(1) outputs (tests/test_cpu_gemm.c).
 * The lowmem policy (opts.conv, --low-memory) keeps the rule but never copies weights: gemm as
 * above, nchw otherwise. Without AVX-512 oneDNN has no Winograd and wino
 * falls back to direct (the rule was measured here, with AVX-512 only).
 *
 * bf16 (opts.precision bf16, or auto on a CPU with avx512_bf16/AMX): src
 * and weights in bf16, f32 accumulation and f32 dst (our activations stay
 * f32; the per-call src reorder does the rounding), weights reordered once
 * into a bf16 copy (half of f32's bytes). oneDNN has no bf16 Winograd, and
 * `bench_ops --conv --cpu-time` on a 2-core Zen 4 (avx512_core_bf16, f32
 * sgemm peak 214 GFLOP/s) has f32 Winograd ahead of bf16 direct wherever
 * the f32 rule takes Winograd (GFLOP/s at direct-conv FLOPs):
 *   shape                          f32 wino  bf16 direct  bf16 nchw  f32 rule
 *   2,320,64,64 -> 320 3x3 s1         649        408         322       662
 *   2,1280,16,16 -> 1280 3x3 s1       580        434         251       572
 *   1,512,128,128 -> 512 3x3 s1       646        398         338       591
 *   2,1280,8,8 -> 1280 3x3 s1         316        445         271       183 (nchw)
 *   2,1280,16,16 -> 1280 3x3 s2         -        384         272       181 (direct)
 *   2,320,64,64 -> 320 1x1              -        220         339       204 (gemm)
 *   2,1280,16,16 -> 1280 1x1            -        361         387       209 (gemm)
 * So oneDNN's f32 Winograd is no answer in bf16 mode: its copies are 4x
 * the f32 weight (8x the bf16 copy, ~4.3 GB for the UNet) and its
 * scratchpad for the VAE's 128..512 px planes is GBs. Instead the bf16 rule
 * takes our own bf16 Winograd F(2x2,3x3) (conv_wino_bf16.c: bf16 GEMMs
 * with vdpbf16ps, transformed weights 16/9 of the bf16 copy, scratch a few
 * MB per thread) for 3x3 stride-1 pad-1 convs with >= 64 channels on output
 * planes >= 16x16 (the f32 rule's Winograd shapes; same machine, GFLOP/s at
 * direct-conv FLOPs, vs bf16 direct above):
 *   shape                          sdrt wino bf16
 *   2,320,64,64 -> 320 3x3 s1         707-731
 *   2,640,32,32 -> 640 3x3 s1         821-824
 *   2,1920,32,32 -> 640 3x3 s1            876
 *   2,1280,16,16 -> 1280 3x3 s1           874 (two tile rows per vector)
 *   2,2560,16,16 -> 1280 3x3 s1           926
 *   1,512,128,128 -> 512 3x3 s1           812
 *   1,128,512,512 -> 128 3x3 s1       617-643
 *   2,1280,8,8 -> 1280 3x3 s1             578 (bf16 direct 445: not taken)
 * The 8x8 planes keep bf16 direct (1.3x would cost ~0.35 GB more copies
 * for ~0.03 s per step), so does lowmem (no transformed copies). The
 * rest: tiny convs as above (gemm, f32); pointwise -> our bf16 1x1 GEMM
 * (conv1x1_bf16.c, the same micro-kernel: 370 -> 418 GFLOP/s on
 * 2,640,32,32 1x1 vs oneDNN's nchw); everything else -> direct (bf16).
 * Full-size SD 1.5, 512x512, bf16: UNet CFG step 4.14 -> 3.58 s with
 * planes >= 32x32, 3.41-3.50 s with 16x16 too; VAE decode 6.65 -> 4.17 s.
 * F(4x4,3x3) where the model accepts its rounding (p.wino4: the UNet's
 * convs; conv error ~10x the direct bf16 conv's vs F(2x2)'s ~1.9x) on planes
 * >= 32x32: 36 products per 16 outputs instead of 64, weights 36/9 of the
 * bf16 copy (+0.27 GB for SD 1.5's UNet; the 16x16 planes keep F(2x2): their
 * 1280-channel convs would cost +0.9 GB; so do convs of more than 1920 x
 * 640 channels, such as SDXL's 1280-channel ones at 32x32: +1.3 GiB):
 *   shape                          F(2x2)  F(4x4)
 *   2,320,64,64 -> 320 3x3 s1        618     972
 *   2,960,64,64 -> 320 3x3 s1        725     950
 *   2,640,32,32 -> 640 3x3 s1        737    1250 (two tile rows per vector)
 *   2,1920,32,32 -> 640 3x3 s1       814    1382
 * UNet CFG step 3.50-3.67 -> 3.30-3.45 s (convs 1.28-1.50 -> 1.11 s).
 * opts.conv = wino (`SDRT_CONV_ALGO=wino`) forces ours on any 3x3 s1 pad-1
 * conv, oneDNN's f32 Winograd on other eligible shapes.
 *
 * opts.conv = <name> (or sd_cpu_dnnl_set_conv_algo) forces one
 * algorithm; one that oneDNN cannot build for a shape falls back to direct.
 * `build/bench/bench_ops --conv [--cpu-time]` re-measures the table.
 */
#include "conv1x1.h"
#include "conv_wino.h"
#include "cpu_dnnl.h"
#include "cpu_math.h"
#include "weights.h"

#include <omp.h>
#include <string.h>

#define CONV_TILE_BYTES ((size_t)2 << 20) /* im2col tile per thread (about L2) */

/* Memory slots of a oneDNN conv entry. */
enum { M_SRC_USER, M_SRC, M_BIAS, M_DST, M_DST_USER };

struct conv_shape {
    int64_t N, Ci, H, W, Co, kh, kw, OH, OW;
    int sh, sw, pt, pl, pb, pr, bias, wino4;
};

static int is_pointwise(const struct conv_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && !s->pt && !s->pl && !s->pb && !s->pr;
}

/* Whether our bf16 Winograd (conv_wino.h) runs this conv: 3x3, stride 1,
 * padded by 1 on every side, in a build with AVX-512 BF16. */
static int wino_bf16_fits(const struct conv_shape *s) {
    return sd_bf16_kernels_built() && s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->pt == 1 &&
           s->pl == 1 && s->pb == 1 && s->pr == 1;
}

/* The output tile of our bf16 Winograd: F(4x4,3x3) where the model accepts
 * its rounding (p.wino4) on planes of at least 32x32 for weights of at most
 * 1920 x 640 channels (F(4x4)'s copy is 4x the bf16 weight: 88 MB there;
 * SDXL's 1280-channel convs at 32x32 would add 1.3 GiB for no measurable
 * step time), F(2x2,3x3) otherwise (see "bf16" above). */
static int wino_tile(const struct conv_shape *s) {
    return s->wino4 && s->OH >= 32 && s->OW >= 32 && s->Ci * s->Co <= 1920 * 640 ? 4 : 2;
}

/* The per-shape rule, from the measurements in the header comment.
 * `policy` is SD_CONV_AUTO or SD_CONV_LOWMEM. */
static int conv_pick(const struct conv_shape *s, int policy, int bf16) {
    const int tiny = s->Ci * s->kh * s->kw < 64 || s->Co < 16; /* conv_in / conv_out */
    const int wino = s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->Ci >= 64 && s->Co >= 64 &&
                     s->OH * s->OW >= 256;
    if (tiny) return SD_CONV_GEMM;
    if (bf16) { /* see "bf16" above: our bf16 Winograd from 32x32 planes on, unless lowmem */
        if (wino && policy != SD_CONV_LOWMEM && wino_bf16_fits(s)) return SD_CONV_WINO;
        if (is_pointwise(s)) return sd_bf16_kernels_built() ? SD_CONV_GEMM : SD_CONV_NCHW;
        return SD_CONV_DIRECT;
    }
    if (is_pointwise(s)) return SD_CONV_GEMM;
    if (policy == SD_CONV_LOWMEM) return SD_CONV_NCHW;
    if (wino) return SD_CONV_WINO;
    if (s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->Ci >= 64 && s->Co >= 64) return SD_CONV_NCHW;
    return SD_CONV_DIRECT;
}

/* ---- oneDNN convolution (direct, wino, nchw) ---- */

static int conv_plan_dnnl(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const struct conv_shape *s, int algo) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    int rc = SD_OK;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_dims_t sdims = {s->N, s->Ci, s->H, s->W}, wdims = {s->Co, s->Ci, s->kh, s->kw}, bdims = {s->Co},
                ddims = {s->N, s->Co, s->OH, s->OW};
    dnnl_dims_t strides = {s->sh, s->sw}, pad_l = {s->pt, s->pl}, pad_r = {s->pb, s->pr};
    dnnl_memory_desc_t src_user, dst_user, w_user, b_md, src_md, w_md, dst_md, src_want, dst_want;
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&src_user, 4, sdims, dnnl_f32, dnnl_nchw));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&dst_user, 4, ddims, dnnl_f32, dnnl_nchw));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&w_user, 4, wdims, dnnl_f32, dnnl_oihw));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_x));
    for (;;) {
        /* src and weights in bf16 (dst stays f32), except Winograd: oneDNN
         * has no bf16 Winograd, so a forced wino runs in f32. */
        const dnnl_data_type_t dt = e->key.bf16 && algo != SD_CONV_WINO ? dnnl_bf16 : dnnl_f32;
        SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&w_md, 4, wdims, dt, dnnl_format_tag_any));
        dnnl_format_tag_t act = algo == SD_CONV_NCHW ? dnnl_nchw : dnnl_format_tag_any;
        SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&src_md, 4, sdims, dt, act));
        SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&dst_md, 4, ddims, dnnl_f32, act));
        dnnl_convolution_desc_t cd;
        dnnl_alg_kind_t kind = algo == SD_CONV_WINO ? dnnl_convolution_winograd : dnnl_convolution_direct;
        dnnl_status_t st = dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, kind, &src_md, &w_md,
                                                             s->bias ? &b_md : NULL, &dst_md, strides, pad_l, pad_r);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &cd, NULL, d->engine, NULL);
        if (st == dnnl_success) break;
        if (algo != SD_CONV_DIRECT && st == dnnl_unimplemented) {
            algo = SD_CONV_DIRECT; /* e.g. Winograd asked for a stride-2 conv */
            continue;
        }
        rc = sd_dnnl_check(cpu, st, "dnnl_convolution_forward_desc_init/dnnl_primitive_desc_create");
        goto fail;
    }
    /* Copy the chosen layouts out before pd goes away. */
    src_want = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    dst_want = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    e->weights_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    e->user_weights_md = w_user;
    e->algo = algo;
    rc = sd_dnnl_prim_from_pd(cpu, pd, &e->prim, e->impl, sizeof e->impl);
    pd = NULL;
    if (rc != SD_OK) goto fail;

    SD_TRY(sd_dnnl_mem_new(cpu, &src_user, &e->mem[M_SRC_USER]));
    SD_TRY(sd_dnnl_mem_new(cpu, &dst_user, &e->mem[M_DST_USER]));
    if (s->bias) SD_TRY(sd_dnnl_mem_new(cpu, &b_md, &e->mem[M_BIAS]));
    if (!dnnl_memory_desc_equal(&src_want, &src_user)) {
        SD_TRY(sd_dnnl_mem_new(cpu, &src_want, &e->mem[M_SRC]));
        SD_TRY(sd_dnnl_reorder_new(cpu, &src_user, &src_want, &e->pre));
        e->scratch[0] = (dnnl_memory_desc_get_size(&src_want) + 63) & ~(size_t)63;
    }
    if (!dnnl_memory_desc_equal(&dst_want, &dst_user)) {
        SD_TRY(sd_dnnl_mem_new(cpu, &dst_want, &e->mem[M_DST]));
        SD_TRY(sd_dnnl_reorder_new(cpu, &dst_want, &dst_user, &e->post));
        e->scratch[1] = (dnnl_memory_desc_get_size(&dst_want) + 63) & ~(size_t)63;
    }
    return SD_OK;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int conv_run_dnnl(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const float *x, struct sd_tensor *w,
                         const float *b, float *y) {
    int rc = SD_OK;
    dnnl_memory_t wmem;
    SD_TRY(sd_dnnl_weights_get(cpu, w, &e->user_weights_md, &e->weights_md, &wmem));
    char *scratch = NULL;
    if (e->scratch[0] + e->scratch[1]) {
        scratch = sd_cpu_scratch(cpu, e->scratch[0] + e->scratch[1]);
        if (!scratch) return cpu->ctx ? cpu->ctx->status : SD_ERR_NOMEM;
    }
    dnnl_memory_t src = e->mem[M_SRC_USER], dst = e->mem[M_DST_USER];
    SD_TRY(sd_dnnl_bind(cpu, e->mem[M_SRC_USER], (void *)x));
    SD_TRY(sd_dnnl_bind(cpu, e->mem[M_DST_USER], y));
    if (e->pre) {
        src = e->mem[M_SRC];
        SD_TRY(sd_dnnl_bind(cpu, src, scratch));
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, e->mem[M_SRC_USER]}, {DNNL_ARG_TO, src}};
        SD_TRY(sd_dnnl_exec(cpu, e->pre, 2, a, 0));
    }
    if (e->post) {
        dst = e->mem[M_DST];
        SD_TRY(sd_dnnl_bind(cpu, dst, scratch + e->scratch[0]));
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, dst}};
    int nargs = 3;
    if (b) {
        SD_TRY(sd_dnnl_bind(cpu, e->mem[M_BIAS], (void *)b));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->mem[M_BIAS]};
    }
    SD_TRY(sd_dnnl_exec(cpu, e->prim, nargs, args, !e->post));
    if (e->post) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, dst}, {DNNL_ARG_TO, e->mem[M_DST_USER]}};
        SD_TRY(sd_dnnl_exec(cpu, e->post, 2, a, 1));
    }
fail:
    return rc;
}

/* ---- ours: Winograd F(2x2,3x3) in bf16 (conv_wino_bf16.c) ---- */

static void wino_prep2(const float *src, const dnnl_memory_desc_t *user_md, void *dst) {
    sd_wino_bf16_weights(src, user_md->dims[0], user_md->dims[1], 2, dst);
}

static void wino_prep4(const float *src, const dnnl_memory_desc_t *user_md, void *dst) {
    sd_wino_bf16_weights(src, user_md->dims[0], user_md->dims[1], 4, dst);
}

static struct sd_wino_shape wino_shape(const struct conv_shape *s, int m) {
    return (struct sd_wino_shape){s->N, s->Ci, s->H, s->W, s->Co, m};
}

static int conv_plan_wino_bf16(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const struct conv_shape *s) {
    int rc = SD_OK;
    const int m = wino_tile(s);
    const struct sd_wino_shape ws = wino_shape(s, m);
    /* The prepared layout: [(m+2)^2][Co rounded up to 6][Ci/2] bf16 pairs. */
    const int64_t E = (m + 2) * (m + 2), Ci2 = (s->Ci + 1) / 2;
    const int64_t co6 = sd_wino_bf16_weight_words(s->Co, s->Ci, m) / E / Ci2;
    dnnl_dims_t wdims = {s->Co, s->Ci, 3, 3}, udims = {E, co6, Ci2, 2};
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&e->user_weights_md, 4, wdims, dnnl_f32, dnnl_oihw));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&e->weights_md, 4, udims, dnnl_bf16, dnnl_abcd));
    e->algo = SD_CONV_WINO;
    e->iparam[0] = sd_wino_bf16_chunk_rows(&ws, e->key.n_threads);
    e->iparam[1] = 1; /* ours, not oneDNN's */
    e->iparam[2] = m;
    e->scratch[0] = (sd_wino_bf16_scratch(&ws, e->iparam[0]) + 63) & ~(size_t)63;
    snprintf(e->impl, sizeof e->impl, "sdrt:wino_bf16 F(%dx%d,3x3)", m, m);
fail:
    return rc;
}

/* The prepared weight (through the weights cache) and the per-thread
 * scratch of one of our bf16 kernels' runs. */
static int ours_operands(struct sd_cpu *cpu, struct sd_dnnl_prim *e, struct sd_tensor *w, sd_dnnl_weight_prep_fn *prep,
                         void **weights, void **scratch) {
    int rc = SD_OK;
    dnnl_memory_t wmem;
    SD_TRY(sd_dnnl_weights_get_prep(cpu, w, &e->user_weights_md, &e->weights_md, prep, &wmem));
    SD_DNNL_TRY(cpu, dnnl_memory_get_data_handle(wmem, weights));
    if (!(*scratch = sd_cpu_scratch(cpu, e->scratch[0] * (size_t)e->key.n_threads)))
        rc = cpu->ctx && cpu->ctx->status ? cpu->ctx->status : SD_ERR_NOMEM;
fail:
    return rc;
}

static int conv_run_wino_bf16(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const struct conv_shape *s, const float *x,
                              struct sd_tensor *w, const float *b, float *y) {
    void *u = NULL, *scratch = NULL;
    const int m = (int)e->iparam[2];
    int rc = ours_operands(cpu, e, w, m == 4 ? wino_prep4 : wino_prep2, &u, &scratch);
    if (rc == SD_OK) {
        const struct sd_wino_shape ws = wino_shape(s, m);
        sd_wino_bf16_run(&ws, e->iparam[0], x, u, b, y, scratch, e->key.n_threads);
    }
    return rc;
}

/* ---- ours: 1x1 convolutions as bf16 GEMMs (conv1x1_bf16.c) ---- */

static void c1x1_prep(const float *src, const dnnl_memory_desc_t *user_md, void *dst) {
    sd_conv1x1_bf16_weights(src, user_md->dims[0], user_md->dims[1], dst);
}

static int conv_plan_1x1_bf16(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const struct conv_shape *s) {
    int rc = SD_OK;
    const int64_t Ci2 = (s->Ci + 1) / 2, co6 = sd_conv1x1_bf16_weight_words(s->Co, s->Ci) / Ci2;
    /* The prepared layout: [Co rounded up to 6][Ci/2] bf16 pairs. */
    dnnl_dims_t wdims = {s->Co, s->Ci, 1, 1}, adims = {co6, Ci2, 2};
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&e->user_weights_md, 4, wdims, dnnl_f32, dnnl_oihw));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&e->weights_md, 3, adims, dnnl_bf16, dnnl_abc));
    e->algo = SD_CONV_GEMM;
    e->iparam[0] = sd_conv1x1_bf16_chunk(s->N, s->Ci, s->OH * s->OW, e->key.n_threads);
    e->iparam[1] = 1; /* bf16, ours */
    e->scratch[0] = (sd_conv1x1_bf16_scratch(s->Ci, e->iparam[0]) + 63) & ~(size_t)63;
    snprintf(e->impl, sizeof e->impl, "sdrt:1x1_bf16");
fail:
    return rc;
}

static int conv_run_1x1_bf16(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const struct conv_shape *s, const float *x,
                             struct sd_tensor *w, const float *b, float *y) {
    void *a = NULL, *scratch = NULL;
    int rc = ours_operands(cpu, e, w, c1x1_prep, &a, &scratch);
    if (rc == SD_OK)
        sd_conv1x1_bf16_run(s->N, s->Ci, s->OH * s->OW, s->Co, e->iparam[0], x, a, b, y, scratch, e->key.n_threads);
    return rc;
}

/* ---- ours: tiled im2col + sgemm ---- */

/* Writes rows kk0..kk1 of the im2col matrix of image xn for output rows
 * [oy0, oy1): col[kk][(oy-oy0)*OW + ox] = x[c][oy*sh-pt+ky][ox*sw-pl+kx]
 * (0 outside the image), kk = (c*kh + ky)*kw + kx. */
static void im2col_band(const float *xn, const struct conv_shape *s, int64_t oy0, int64_t oy1, float *col) {
    const int64_t H = s->H, W = s->W, OW = s->OW, kh = s->kh, kw = s->kw, K = s->Ci * kh * kw;
    const int64_t nt = (oy1 - oy0) * OW;
    const int sw = s->sw;
    for (int64_t kk = 0; kk < K; kk++) {
        const int64_t c = kk / (kh * kw), ky = (kk / kw) % kh, kx = kk % kw;
        const float *xc = xn + c * H * W;
        float *dst = col + kk * nt;
        /* Output columns whose input column ox*sw - pl + kx is inside [0, W). */
        const int64_t off = s->pl - kx;
        int64_t lo = off > 0 ? (off + sw - 1) / sw : 0;
        int64_t hi = W - 1 + off >= 0 ? (W - 1 + off) / sw + 1 : 0;
        if (hi > OW) hi = OW;
        if (lo > hi) lo = hi;
        for (int64_t oy = oy0; oy < oy1; oy++, dst += OW) {
            const int64_t iy = oy * s->sh - s->pt + ky;
            if (iy < 0 || iy >= H) {
                memset(dst, 0, (size_t)OW * sizeof *dst);
                continue;
            }
            const float *xr = xc + iy * W - off;
            for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
            if (sw == 1) memcpy(dst + lo, xr + lo, (size_t)(hi - lo) * sizeof *dst);
            else
                for (int64_t ox = lo; ox < hi; ox++) dst[ox] = xr[ox * sw];
            for (int64_t ox = hi; ox < OW; ox++) dst[ox] = 0.0f;
        }
    }
}

static int conv_plan_gemm(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const struct conv_shape *s) {
    if (e->key.bf16 && is_pointwise(s) && sd_bf16_kernels_built() && s->Ci * s->kh * s->kw >= 64 && s->Co >= 16)
        return conv_plan_1x1_bf16(cpu, e, s);
    const int nth = e->key.n_threads;
    const int64_t K = s->Ci * s->kh * s->kw, P = s->OH * s->OW;
    /* Enough jobs (images x bands) for every thread. */
    const int64_t per_image = (nth + s->N - 1) / s->N;
    e->algo = SD_CONV_GEMM;
    snprintf(e->impl, sizeof e->impl, "sdrt:im2col+sgemm");
    if (is_pointwise(s)) {
        int64_t cols = (P + per_image - 1) / per_image;
        e->iparam[0] = (cols + 15) / 16 * 16; /* columns per job, no scratch */
        return SD_OK;
    }
    int64_t rows = (int64_t)(CONV_TILE_BYTES / ((size_t)K * (size_t)s->OW * sizeof(float)));
    int64_t rows_jobs = (s->OH + per_image - 1) / per_image;
    if (rows > rows_jobs) rows = rows_jobs;
    if (rows < 1) rows = 1;
    e->iparam[0] = rows;
    e->scratch[0] = ((size_t)(rows * s->OW * K) * sizeof(float) + 63) & ~(size_t)63;
    return SD_OK;
}

static int conv_run_gemm(struct sd_cpu *cpu, struct sd_dnnl_prim *e, const struct conv_shape *s, const float *x,
                         const float *w, const float *b, float *y) {
    const int nth = e->key.n_threads;
    const int64_t K = s->Ci * s->kh * s->kw, P = s->OH * s->OW, Co = s->Co, N = s->N;
    const int64_t band = e->iparam[0];
    const int pointwise = is_pointwise(s);
    const int64_t per_image = pointwise ? (P + band - 1) / band : (s->OH + band - 1) / band;
    const int64_t jobs = N * per_image;
    char *scratch = NULL;
    if (!pointwise) {
        scratch = sd_cpu_scratch(cpu, e->scratch[0] * (size_t)nth);
        if (!scratch) return cpu->ctx ? cpu->ctx->status : SD_ERR_NOMEM;
    }
    int err = dnnl_success;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
    for (int64_t j = 0; j < jobs; j++) {
        const int64_t n = j / per_image, t = j % per_image;
        const float *xn = x + n * s->Ci * s->H * s->W;
        float *yn = y + n * Co * P;
        int64_t p0, nt;
        const float *bmat;
        int64_t ldb;
        if (pointwise) {
            p0 = t * band;
            nt = P - p0 < band ? P - p0 : band;
            bmat = xn + p0;
            ldb = P;
        } else {
            const int64_t oy0 = t * band, oy1 = oy0 + band < s->OH ? oy0 + band : s->OH;
            float *col = (float *)(scratch + e->scratch[0] * (size_t)omp_get_thread_num());
            im2col_band(xn, s, oy0, oy1, col);
            p0 = oy0 * s->OW;
            nt = (oy1 - oy0) * s->OW;
            bmat = col;
            ldb = nt;
        }
        /* Inside a parallel region dnnl_sgemm runs on the calling thread. */
        dnnl_status_t st = dnnl_sgemm('N', 'N', Co, nt, K, 1.0f, w, K, bmat, ldb, 0.0f, yn + p0, P);
        if (st != dnnl_success) {
#pragma omp atomic write
            err = st;
        }
        if (b)
            for (int64_t co = 0; co < Co; co++) {
                float *yr = yn + co * P + p0;
                const float bv = b[co];
                for (int64_t i = 0; i < nt; i++) yr[i] += bv;
            }
    }
    return sd_dnnl_check(cpu, (dnnl_status_t)err, "dnnl_sgemm");
}

/* ---- entry ---- */

static int conv_check(struct sd_cpu *cpu, const struct sd_tensor *node, struct conv_shape *s) {
    const struct sd_tensor *x = node->src[0], *w = node->src[1], *b = node->src[2];
    char sx[64], sw[64], sy[64];
    if (!x || !w) return sd_errorf(cpu->ctx, SD_ERR_INVALID, "conv2d: missing x or w");
    const struct sd_conv2d_params *p = &node->p.conv2d;
    *s = (struct conv_shape){
        .N = x->ne[0], .Ci = x->ne[1], .H = x->ne[2], .W = x->ne[3], .Co = w->ne[0], .kh = w->ne[2], .kw = w->ne[3],
        .sh = p->stride_h, .sw = p->stride_w, .pt = p->pad_t, .pl = p->pad_l, .pb = p->pad_b, .pr = p->pad_r,
        .bias = b != NULL, .wino4 = p->wino4 != 0,
    };
    int ok = x->type == SD_F32 && w->type == SD_F32 && node->type == SD_F32 && x->n_dims == 4 && w->n_dims == 4 &&
             sd_tensor_is_contiguous(x) && sd_tensor_is_contiguous(w) && sd_tensor_is_contiguous(node) &&
             w->ne[1] == s->Ci && s->sh >= 1 && s->sw >= 1 && s->pt >= 0 && s->pl >= 0 && s->pb >= 0 && s->pr >= 0;
    if (ok) {
        s->OH = (s->H + s->pt + s->pb - s->kh) / s->sh + 1;
        s->OW = (s->W + s->pl + s->pr - s->kw) / s->sw + 1;
        ok = s->OH >= 1 && s->OW >= 1 && node->ne[0] == s->N && node->ne[1] == s->Co && node->ne[2] == s->OH &&
             node->ne[3] == s->OW;
    }
    if (ok && b) ok = b->type == SD_F32 && sd_tensor_nelements(b) == s->Co && sd_tensor_is_contiguous(b);
    if (!ok)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID,
                         "conv2d(%s): x %s, w %s, y %s, stride %dx%d, pad t%d l%d b%d r%d are not a contiguous f32 "
                         "convolution",
                         node->name, sd_tensor_shape_str(x, sx, sizeof sx), sd_tensor_shape_str(w, sw, sizeof sw),
                         sd_tensor_shape_str(node, sy, sizeof sy), p->stride_h, p->stride_w, p->pad_t, p->pad_l,
                         p->pad_b, p->pad_r);
    return SD_OK;
}

int sd_cpu_op_conv2d(struct sd_cpu *cpu, struct sd_tensor *node) {
    struct conv_shape s;
    int rc = conv_check(cpu, node, &s);
    if (rc != SD_OK) return rc;
    const float *x = node->src[0]->data;
    struct sd_tensor *w = node->src[1];
    const float *b = node->src[2] ? node->src[2]->data : NULL;
    float *y = node->data;

    struct sd_dnnl_key key;
    memset(&key, 0, sizeof key);
    key.version = SD_DNNL_KEY_VERSION;
    key.kind = SD_DNNL_CONV;
    key.algo = cpu->dnnl->conv_algo;
    key.flags = s.bias | s.wino4 << 1;
    int64_t dims[] = {s.N, s.Ci, s.H, s.W, s.Co, s.kh, s.kw, s.OH, s.OW};
    memcpy(key.dims, dims, sizeof dims);
    int64_t geo[] = {s.sh, s.sw, s.pt, s.pl, s.pb, s.pr};
    memcpy(key.strides, geo, sizeof geo);
    key.n_threads = omp_get_max_threads();
    key.bf16 = cpu->dnnl->bf16;

    int created;
    struct sd_dnnl_prim *e = sd_dnnl_prim_get(cpu, &key, &created);
    if (!e) return SD_ERR_NOMEM;
    if (created) {
        int algo = key.algo == SD_CONV_AUTO || key.algo == SD_CONV_LOWMEM ? conv_pick(&s, key.algo, key.bf16) : key.algo;
        if (algo == SD_CONV_GEMM) rc = conv_plan_gemm(cpu, e, &s);
        else if (algo == SD_CONV_WINO && key.bf16 && wino_bf16_fits(&s)) rc = conv_plan_wino_bf16(cpu, e, &s);
        else rc = conv_plan_dnnl(cpu, e, &s, algo);
        if (rc != SD_OK) {
            sd_dnnl_prim_drop(cpu, e);
            return rc;
        }
    }
    if (e->algo == SD_CONV_GEMM && e->iparam[1]) return conv_run_1x1_bf16(cpu, e, &s, x, w, b, y);
    if (e->algo == SD_CONV_GEMM) { /* reads w in place */
        if ((rc = sd_weight_materialize(cpu->ctx, w)) != SD_OK) return rc;
        return conv_run_gemm(cpu, e, &s, x, w->data, b, y);
    }
    if (e->algo == SD_CONV_WINO && e->iparam[1]) return conv_run_wino_bf16(cpu, e, &s, x, w, b, y);
    return conv_run_dnnl(cpu, e, x, w, b, y);
}
