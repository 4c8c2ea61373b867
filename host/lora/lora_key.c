/* lora_key.c - one LoRA tensor name -> (module kohya name, role, style)
 * (see lora.h). Every known naming is brought to kohya's: a prefix
 * (lora_unet_ / lora_te_) and the module's diffusers / HF CLIP path with
 * every '.' replaced by '_', so that lora_keys.c matches one naming. */
#include "lora.h"

#include <stdio.h>
#include <string.h>

static const struct { const char *suffix; enum sd_lora_role role; int style; } suffixes[] = {
    {".lora_down.weight", SD_LR_DOWN, SD_LS_KOHYA},    {".lora_up.weight", SD_LR_UP, SD_LS_KOHYA},
    {".lora_mid.weight", SD_LR_MID, SD_LS_KOHYA},      {".alpha", SD_LR_ALPHA, SD_LS_KOHYA},
    {".scale", SD_LR_SCALE, SD_LS_KOHYA},              {".diff", SD_LR_DIFF, SD_LS_KOHYA},
    {".diff_b", SD_LR_DIFF_B, SD_LS_KOHYA},            {".hada_w1_a", SD_LR_HADA_W1A, SD_LS_KOHYA},
    {".hada_w1_b", SD_LR_HADA_W1B, SD_LS_KOHYA},       {".hada_w2_a", SD_LR_HADA_W2A, SD_LS_KOHYA},
    {".hada_w2_b", SD_LR_HADA_W2B, SD_LS_KOHYA},       {".hada_t1", SD_LR_HADA_T1, SD_LS_KOHYA},
    {".hada_t2", SD_LR_HADA_T2, SD_LS_KOHYA},          {".lokr_w1", SD_LR_LOKR_W1, SD_LS_KOHYA},
    {".lokr_w1_a", SD_LR_LOKR_W1A, SD_LS_KOHYA},       {".lokr_w1_b", SD_LR_LOKR_W1B, SD_LS_KOHYA},
    {".lokr_w2", SD_LR_LOKR_W2, SD_LS_KOHYA},          {".lokr_w2_a", SD_LR_LOKR_W2A, SD_LS_KOHYA},
    {".lokr_w2_b", SD_LR_LOKR_W2B, SD_LS_KOHYA},       {".lokr_t2", SD_LR_LOKR_T2, SD_LS_KOHYA},
    {".dora_scale", SD_LR_DORA, SD_LS_KOHYA},
    {".lora_A.weight", SD_LR_DOWN, SD_LS_PEFT},        {".lora_B.weight", SD_LR_UP, SD_LS_PEFT},
    {".lora_A.default.weight", SD_LR_DOWN, SD_LS_PEFT}, {".lora_B.default.weight", SD_LR_UP, SD_LS_PEFT},
    {".lora_magnitude_vector", SD_LR_DORA, SD_LS_PEFT}, {".lora_magnitude_vector.weight", SD_LR_DORA, SD_LS_PEFT},
    {".lora_magnitude_vector.default.weight", SD_LR_DORA, SD_LS_PEFT},
    {"_lora.down.weight", SD_LR_DOWN, SD_LS_DIFFUSERS_OLD}, {"_lora.up.weight", SD_LR_UP, SD_LS_DIFFUSERS_OLD},
    {".lora_linear_layer.down.weight", SD_LR_DOWN, SD_LS_DIFFUSERS_OLD},
    {".lora_linear_layer.up.weight", SD_LR_UP, SD_LS_DIFFUSERS_OLD},
};

static int ends(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n > k && memcmp(s + n - k, suf, k) == 0;
}

/* Appends src[0..len) to out with '.' -> '_'; returns 0 on overflow. */
static int put(char *out, size_t n, size_t *o, const char *src, size_t len, int dots) {
    if (*o + len + 1 > n) return 0;
    for (size_t i = 0; i < len; i++) out[(*o)++] = dots && src[i] == '.' ? '_' : src[i];
    out[*o] = 0;
    return 1;
}

/* Old diffusers attention-processor names: "<attn>.processor.to_q" (UNet)
 * or "<attn>.to_q" (text encoder) -> the module path. */
static int old_path(const char *p, size_t len, int te, char *buf, size_t n) {
    static const char *unet[][2] = {{"to_q", "to_q"}, {"to_k", "to_k"}, {"to_v", "to_v"}, {"to_out", "to_out.0"}};
    static const char *clip[][2] = {{"to_q", "q_proj"}, {"to_k", "k_proj"}, {"to_v", "v_proj"}, {"to_out", "out_proj"}};
    const char *dot = NULL;
    for (size_t i = len; i > 0 && !dot; i--)
        if (p[i - 1] == '.') dot = p + i - 1;
    if (!dot) return snprintf(buf, n, "%.*s", (int)len, p) < (int)n;
    size_t head = (size_t)(dot - p), tl = len - head - 1;
    for (int i = 0; i < 4; i++) {
        const char *from = te ? clip[i][0] : unet[i][0];
        if (tl == strlen(from) && !memcmp(dot + 1, from, tl)) {
            if (!te && head >= 10 && !memcmp(p + head - 10, ".processor", 10)) head -= 10;
            return snprintf(buf, n, "%.*s.%s", (int)head, p, te ? clip[i][1] : unet[i][1]) < (int)n;
        }
    }
    return snprintf(buf, n, "%.*s", (int)len, p) < (int)n;
}

int sd_lora_parse_key(const char *key, char *module, size_t n, enum sd_lora_role *role, enum sd_lora_style *style) {
    if (!key || !module || n < 2) return 0;
    size_t len = strlen(key), best = 0;
    int hit = -1;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (ends(key, len, suffixes[i].suffix) && strlen(suffixes[i].suffix) > best)
            best = strlen(suffixes[i].suffix), hit = (int)i;
    if (hit < 0) return 0;
    size_t stem = len - best, o = 0;
    enum sd_lora_style st = suffixes[hit].style;
    module[0] = 0;
    if (!strncmp(key, "lora_unet_", 10) || !strncmp(key, "lora_te_", 8) || !strncmp(key, "lora_te1_", 9) ||
        !strncmp(key, "lora_te2_", 9)) { /* te1 / te2: SDXL's CLIP ViT-L / bigG */
        if (st == SD_LS_PEFT && memchr(key, '.', stem)) return 0; /* dots inside a kohya name */
        if (st == SD_LS_DIFFUSERS_OLD) return 0;
        if (!put(module, n, &o, key, stem, 1)) return 0;
        st = SD_LS_KOHYA;
    } else {
        /* te: 1 = text encoder (lora_te_), 2 = SDXL's second (lora_te2_) */
        static const struct { const char *prefix; int te; } pre[] = {
            {"unet.", 0}, {"base_model.model.", 0}, {"text_encoder.", 1}, {"text_encoder_2.", 2}, {"lora_unet.", 0},
            {"lora_te.", 1}};
        int p = -1;
        for (int i = 0; i < 6 && p < 0; i++)
            if (!strncmp(key, pre[i].prefix, strlen(pre[i].prefix))) p = i;
        if (p < 0) return 0;
        size_t pl = strlen(pre[p].prefix);
        if (stem <= pl) return 0;
        const char *path = key + pl;
        size_t plen = stem - pl;
        char buf[512];
        if (st == SD_LS_DIFFUSERS_OLD) {
            if (!old_path(path, plen, pre[p].te, buf, sizeof buf)) return 0;
            path = buf, plen = strlen(buf);
        } else if (st == SD_LS_KOHYA) {
            st = SD_LS_PEFT; /* diffusers-converted kohya keys (".alpha", LyCORIS) with a dotted path */
        }
        const char *mp = pre[p].te == 2 ? "lora_te2_" : pre[p].te ? "lora_te_" : "lora_unet_";
        if (!put(module, n, &o, mp, strlen(mp), 0)) return 0;
        if (!put(module, n, &o, path, plen, 1)) return 0;
    }
    if (role) *role = suffixes[hit].role;
    if (style) *style = st;
    return 1;
}
