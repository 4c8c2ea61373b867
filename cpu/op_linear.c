/* op_linear.c - fully connected layer on the CPU: y = x·wᵀ + b.
 *
 * Contract: x [..., in] (rows = product of the leading dims), w [out, in]
 * (PyTorch's Linear layout), optional b [out], y [..., out]; contiguous f32.
 * Returns SD_OK or SD_ERR_* on cpu->ctx.
 *
 * One oneDNN matmul primitive per (rows, in, out, bias): src [rows, in],
 * weights [in, out] described as the transposed view of w and requested in
 * layout `any`, so the weights are reordered once into oneDNN's packed
 * layout through the weights cache (a copy the size of w); the bias is
 * fused. Against dnnl_sgemm('N','T') + a bias pass (`bench_ops --linear
 * --cpu-time`, GFLOP/s, best of interleaved rounds, sgemm peak 272):
 *
 *   x [rows, in] · w [out, in]ᵀ     matmul   sgemm+bias
 *   8192 x 320  -> 320               250       233
 *   8192 x 320  -> 2560              287       281
 *   8192 x 1280 -> 320               300       273
 *   4096 x 320  -> 1280              286       276
 *   154 x 768   -> 1280              311       275
 *   154 x 3072  -> 768               284       226
 *   2 x 320     -> 1280               54        51
 *
 * The primitive wins everywhere (sgemm re-packs w on every call), by 2-25%;
 * a wall-clock run in a quiet stretch ranked the same.
 *
 * bf16 (cpu->dnnl->bf16): src and weights in bf16, f32 accumulation, f32
 * bias and dst; x is converted per call into scratch by a reorder, the
 * weights once into a packed bf16 copy. `bench_ops --linear --precision
 * bf16 --cpu-time` on a 2-core Zen 4 (avx512_core_bf16, sgemm peak 205):
 * 364-426 GFLOP/s on the shapes above (sgemm+bias 110-212 in the same run),
 * 111-140 at 2 rows.
 */
#include "cpu_dnnl.h"

#include <omp.h>
#include <string.h>

enum { M_SRC, M_BIAS, M_DST, M_SRC_USER };

static int linear_plan(struct sd_cpu *cpu, struct sd_dnnl_prim *e, int64_t rows, int64_t in, int64_t out, int bias) {
    int rc = SD_OK;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_dims_t sdims = {rows, in}, wdims = {in, out}, bdims = {1, out}, ddims = {rows, out};
    dnnl_dims_t w_strides = {1, in}; /* w is [out, in] row-major = [in, out] column-major */
    dnnl_memory_desc_t src_md, src_user, w_user, w_any, b_md, dst_md;
    const dnnl_data_type_t dt = e->key.bf16 ? dnnl_bf16 : dnnl_f32; /* src and weights; dst stays f32 */
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&src_user, 2, sdims, dnnl_f32, dnnl_ab));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&src_md, 2, sdims, dt, dnnl_ab));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_strides(&w_user, 2, wdims, dnnl_f32, w_strides));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&w_any, 2, wdims, dt, dnnl_format_tag_any));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&b_md, 2, bdims, dnnl_f32, dnnl_ab));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&dst_md, 2, ddims, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    SD_DNNL_TRY(cpu, dnnl_matmul_desc_init(&md, &src_md, &w_any, bias ? &b_md : NULL, &dst_md));
    SD_DNNL_TRY(cpu, dnnl_primitive_desc_create(&pd, &md, NULL, cpu->dnnl->engine, NULL));
    e->weights_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    e->user_weights_md = w_user;
    rc = sd_dnnl_prim_from_pd(cpu, pd, &e->prim, e->impl, sizeof e->impl);
    pd = NULL;
    if (rc != SD_OK) goto fail;
    SD_TRY(sd_dnnl_mem_new(cpu, &src_md, &e->mem[M_SRC]));
    SD_TRY(sd_dnnl_mem_new(cpu, &dst_md, &e->mem[M_DST]));
    if (bias) SD_TRY(sd_dnnl_mem_new(cpu, &b_md, &e->mem[M_BIAS]));
    if (e->key.bf16) { /* x is converted to bf16 per call, into scratch */
        SD_TRY(sd_dnnl_mem_new(cpu, &src_user, &e->mem[M_SRC_USER]));
        SD_TRY(sd_dnnl_reorder_new(cpu, &src_user, &src_md, &e->pre));
        e->scratch[0] = (dnnl_memory_desc_get_size(&src_md) + 63) & ~(size_t)63;
    }
    return SD_OK;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    return rc;
}

int sd_cpu_op_linear(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *x = node->src[0], *b = node->src[2];
    struct sd_tensor *w = node->src[1];
    char sx[64], sw[64], sy[64];
    int rc = SD_OK;
    if (!x || !w) return sd_errorf(cpu->ctx, SD_ERR_INVALID, "linear(%s): missing x or w", node->name);
    const int64_t in = x->ne[3], out = w->ne[2], rows = in ? sd_tensor_nelements(x) / in : 0;
    int ok = x->type == SD_F32 && w->type == SD_F32 && node->type == SD_F32 && sd_tensor_is_contiguous(x) &&
             sd_tensor_is_contiguous(w) && sd_tensor_is_contiguous(node) && w->ne[0] * w->ne[1] == 1 &&
             w->ne[3] == in && node->ne[3] == out && sd_tensor_nelements(node) == rows * out && rows > 0;
    if (ok && b) ok = b->type == SD_F32 && sd_tensor_nelements(b) == out && sd_tensor_is_contiguous(b);
    if (!ok)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "linear(%s): x %s, w %s, y %s%s are not a contiguous f32 linear",
                         node->name, sd_tensor_shape_str(x, sx, sizeof sx), sd_tensor_shape_str(w, sw, sizeof sw),
                         sd_tensor_shape_str(node, sy, sizeof sy), b ? " (with bias)" : "");

    struct sd_dnnl_key key;
    memset(&key, 0, sizeof key);
    key.version = SD_DNNL_KEY_VERSION;
    key.kind = SD_DNNL_LINEAR;
    key.flags = b != NULL;
    key.dims[0] = rows, key.dims[1] = in, key.dims[2] = out;
    key.n_threads = omp_get_max_threads();
    key.bf16 = cpu->dnnl->bf16;
    int created;
    struct sd_dnnl_prim *e = sd_dnnl_prim_get(cpu, &key, &created);
    if (!e) return SD_ERR_NOMEM;
    if (created && (rc = linear_plan(cpu, e, rows, in, out, b != NULL)) != SD_OK) {
        sd_dnnl_prim_drop(cpu, e);
        return rc;
    }
    dnnl_memory_t wmem;
    SD_TRY(sd_dnnl_weights_get(cpu, w, &e->user_weights_md, &e->weights_md, &wmem));
    if (e->pre) {
        void *xs = sd_cpu_scratch(cpu, e->scratch[0]);
        if (!xs) return cpu->ctx ? cpu->ctx->status : SD_ERR_NOMEM;
        SD_TRY(sd_dnnl_bind(cpu, e->mem[M_SRC], xs));
        /* The node before converted this x into this scratch (q, k and v
         * read one x): no second conversion. */
        const int64_t n = rows * in;
        if (cpu->xbf16_src != x->data || cpu->xbf16_n != n || cpu->xbf16_serial + 1 != cpu->op_serial) {
            SD_TRY(sd_dnnl_bind(cpu, e->mem[M_SRC_USER], x->data));
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, e->mem[M_SRC_USER]}, {DNNL_ARG_TO, e->mem[M_SRC]}};
            SD_TRY(sd_dnnl_exec(cpu, e->pre, 2, a, 0));
        }
        cpu->xbf16_src = x->data, cpu->xbf16_n = n, cpu->xbf16_serial = cpu->op_serial;
    } else {
        SD_TRY(sd_dnnl_bind(cpu, e->mem[M_SRC], x->data));
    }
    SD_TRY(sd_dnnl_bind(cpu, e->mem[M_DST], node->data));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem[M_SRC]}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, e->mem[M_DST]}};
    int nargs = 3;
    if (b) {
        SD_TRY(sd_dnnl_bind(cpu, e->mem[M_BIAS], b->data));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->mem[M_BIAS]};
    }
    SD_TRY(sd_dnnl_exec(cpu, e->prim, nargs, args, 1));
fail:
    return rc;
}
