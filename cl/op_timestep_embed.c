/* op_timestep_embed.c - sinusoidal timestep embedding on OpenCL
 * (sd-reference 3.2), computed in float32 like diffusers. */
#include "cl_impl.h"

#include <math.h>

int sd_cl_op_timestep_embedding(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_timestep_params p = t->p.timestep;
    const size_t B = t->src[0]->ne[3], half = p.dim / 2;
    cl_kernel k = sd_cl_kernel(cl, "timestep_embed", "kernel_timestep_embed_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, t->src[0], &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    size_t n = B * half;
    float log_mp = (float)log(p.max_period > 0 ? (double)p.max_period : 10000.0);
    struct sd_cl_arg args[] = {SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_I32(n), SD_CL_I32(half), SD_CL_I32(p.dim),
                               SD_CL_I32(p.flip_sin_to_cos), SD_CL_F32(p.shift), SD_CL_F32(log_mp)};
    size_t global = sd_cl_round_up(n, 64);
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
}
