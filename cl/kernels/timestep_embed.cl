/* timestep_embed.cl - sinusoidal embedding (sd-reference 3.2), in float32 as
 * diffusers: e = -ln(max_period) * j; e /= (half - shift); arg = t * exp(e);
 * y = [cos(arg), sin(arg)] if flip_sin_to_cos else [sin(arg), cos(arg)]. */
kernel void kernel_timestep_embed_f32(global const float *tb, ulong to, global float *yb, ulong yo, uint n,
                                      int half_dim, int dim, int flip, float shift, float log_max_period) {
    uint i = get_global_id(0);
    if (i >= n) return;
    int b = i / half_dim, j = i % half_dim;
    float e = -log_max_period * (float)j;
    e = e / ((float)half_dim - shift);
    float arg = CPTR(float, tb, to)[b] * exp(e);
    float c = cos(arg), s = sin(arg);
    global float *y = GPTR(float, yb, yo) + (size_t)b * dim;
    y[j] = flip ? c : s;
    y[half_dim + j] = flip ? s : c;
}
