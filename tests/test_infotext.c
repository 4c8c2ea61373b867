/* test_infotext.c - A1111 parameters text: expected strings written from
 * A1111's create_infotext rules (key order, quote(), Python float str). */
#include "infotext.h"
#include "test.h"

int main(void) {
    struct sd_infotext it;
    sd_infotext_init(&it);
    it.prompt = "a photo of a cat";
    it.negative_prompt = "blurry, low quality";
    it.steps = 20;
    it.sampler = "DPM++ 2M Karras";
    it.cfg_scale = 7;
    it.seed = 1234567890123ull;
    it.width = 512, it.height = 768;
    it.model = "v1-5-pruned-emaonly";
    it.rng = "CPU";
    char *s = sd_infotext_format(&it);
    const char *ref = "a photo of a cat\nNegative prompt: blurry, low quality\nSteps: 20, Sampler: DPM++ 2M Karras, "
                      "CFG scale: 7.0, Seed: 1234567890123, Size: 512x768, Model: v1-5-pruned-emaonly, RNG: CPU";
    CHECK(s && !strcmp(s, ref), "txt2img infotext:\n%s", s ? s : "(null)");
    free(s);
    sd_infotext_init(&it);
    it.prompt = "  (cat:1.2), dog\n";
    it.steps = 30;
    it.sampler = "Euler a";
    it.cfg_scale = 7.5;
    it.seed = 1;
    it.width = it.height = 512;
    it.model = "my, model: v2";
    it.denoising_strength = 0.75;
    it.clip_skip = 2;
    it.lora_hashes = "detail: abc123";
    s = sd_infotext_format(&it);
    ref = "(cat:1.2), dog\n\nSteps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512, "
          "Model: \"my, model: v2\", Denoising strength: 0.75, Clip skip: 2, Lora hashes: \"detail: abc123\"";
    CHECK(s && !strcmp(s, ref), "img2img infotext: no negative line, quoted values, only the ends stripped:\n%s", s ? s : "(null)");
    free(s);
    char buf[64];
    const double v[] = {7, 7.5, 0.1, 1.0 / 3, 1e-5, 12.25};
    const char *pv[] = {"7.0", "7.5", "0.1", "0.3333333333333333", "1e-05", "12.25"};
    int bad = 0;
    for (int i = 0; i < 6; i++) {
        sd_infotext_float(v[i], buf, sizeof buf);
        if (strcmp(buf, pv[i])) printf("  %.17g -> %s (want %s)\n", v[i], buf, pv[i]), bad++;
    }
    CHECK(!bad, "floats print like Python str()");
    return test_summary();
}
