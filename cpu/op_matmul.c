/* op_matmul.c - batched matrix product on the CPU: out = alpha · op(a) · op(b).
 *
 * Contract: a [B.., M, K] (stored [B.., K, M] when trans_a), b [B.., K, N]
 * (stored [B.., N, K] when trans_b), out [B.., M, N]; the batch dims (the
 * two outer slots, ne[0] and ne[1]) are equal in a, b and out (no
 * broadcasting); contiguous f32. alpha is node->p.matmul.alpha.
 * Returns SD_OK or SD_ERR_* on cpu->ctx.
 *
 * One oneDNN matmul primitive per (B, M, K, N, transposes, alpha): both
 * operands are activations, so the transposes are expressed as strides of
 * plain 3-d memory descriptors (no copies) and alpha as the primitive's
 * output scale. oneDNN parallelises over the batch and the matrix blocks
 * itself, which a loop of dnnl_sgemm calls would not do for small matrices.
 */
#include "cpu_dnnl.h"

#include <omp.h>
#include <string.h>

enum { M_A, M_B, M_DST };

static int matmul_plan(struct sd_cpu *cpu, struct sd_dnnl_prim *e, int64_t B, int64_t M, int64_t K, int64_t N,
                       int ta, int tb, float alpha) {
    int rc = SD_OK;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_dims_t adims = {B, M, K}, bdims = {B, K, N}, ddims = {B, M, N};
    dnnl_dims_t astr = {M * K, ta ? 1 : K, ta ? M : 1};
    dnnl_dims_t bstr = {K * N, tb ? 1 : N, tb ? K : 1};
    dnnl_memory_desc_t a_md, b_md, d_md;
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_strides(&a_md, 3, adims, dnnl_f32, astr));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_strides(&b_md, 3, bdims, dnnl_f32, bstr));
    SD_DNNL_TRY(cpu, dnnl_memory_desc_init_by_tag(&d_md, 3, ddims, dnnl_f32, dnnl_abc));
    dnnl_matmul_desc_t md;
    SD_DNNL_TRY(cpu, dnnl_matmul_desc_init(&md, &a_md, &b_md, NULL, &d_md));
    if (alpha != 1.0f) {
        SD_DNNL_TRY(cpu, dnnl_primitive_attr_create(&attr));
        SD_DNNL_TRY(cpu, dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha));
    }
    SD_DNNL_TRY(cpu, dnnl_primitive_desc_create(&pd, &md, attr, cpu->dnnl->engine, NULL));
    rc = sd_dnnl_prim_from_pd(cpu, pd, &e->prim, e->impl, sizeof e->impl);
    pd = NULL;
    if (rc != SD_OK) goto fail;
    SD_TRY(sd_dnnl_mem_new(cpu, &a_md, &e->mem[M_A]));
    SD_TRY(sd_dnnl_mem_new(cpu, &b_md, &e->mem[M_B]));
    SD_TRY(sd_dnnl_mem_new(cpu, &d_md, &e->mem[M_DST]));
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return rc;
}

int sd_cpu_op_matmul(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *a = node->src[0], *b = node->src[1];
    const struct sd_matmul_params *p = &node->p.matmul;
    char sa[64], sb[64], sy[64];
    int rc = SD_OK;
    if (!a || !b) return sd_errorf(cpu->ctx, SD_ERR_INVALID, "matmul(%s): missing a or b", node->name);
    const int ta = p->trans_a != 0, tb = p->trans_b != 0;
    const int64_t B = a->ne[0] * a->ne[1];
    const int64_t M = ta ? a->ne[3] : a->ne[2], K = ta ? a->ne[2] : a->ne[3];
    const int64_t Kb = tb ? b->ne[3] : b->ne[2], N = tb ? b->ne[2] : b->ne[3];
    int ok = a->type == SD_F32 && b->type == SD_F32 && node->type == SD_F32 && sd_tensor_is_contiguous(a) &&
             sd_tensor_is_contiguous(b) && sd_tensor_is_contiguous(node) && K == Kb && a->ne[0] == b->ne[0] &&
             a->ne[1] == b->ne[1] && node->ne[0] == a->ne[0] && node->ne[1] == a->ne[1] && node->ne[2] == M &&
             node->ne[3] == N && B * M * N > 0 && K > 0;
    if (!ok)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "matmul(%s): a %s%s x b %s%s -> %s is not a contiguous f32 matmul",
                         node->name, sd_tensor_shape_str(a, sa, sizeof sa), ta ? "^T" : "",
                         sd_tensor_shape_str(b, sb, sizeof sb), tb ? "^T" : "", sd_tensor_shape_str(node, sy, sizeof sy));

    struct sd_dnnl_key key;
    memset(&key, 0, sizeof key);
    key.version = SD_DNNL_KEY_VERSION;
    key.kind = SD_DNNL_MATMUL;
    key.flags = ta | tb << 1;
    key.dims[0] = B, key.dims[1] = M, key.dims[2] = K, key.dims[3] = N;
    key.alpha = p->alpha;
    key.n_threads = omp_get_max_threads();
    int created;
    struct sd_dnnl_prim *e = sd_dnnl_prim_get(cpu, &key, &created);
    if (!e) return SD_ERR_NOMEM;
    if (created && (rc = matmul_plan(cpu, e, B, M, K, N, ta, tb, p->alpha)) != SD_OK) {
        sd_dnnl_prim_drop(cpu, e);
        return rc;
    }
    SD_TRY(sd_dnnl_bind(cpu, e->mem[M_A], a->data));
    SD_TRY(sd_dnnl_bind(cpu, e->mem[M_B], b->data));
    SD_TRY(sd_dnnl_bind(cpu, e->mem[M_DST], node->data));
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, e->mem[M_A]}, {DNNL_ARG_WEIGHTS, e->mem[M_B]}, {DNNL_ARG_DST, e->mem[M_DST]}};
    SD_TRY(sd_dnnl_exec(cpu, e->prim, 3, args, 1));
fail:
    return rc;
}
