#!/usr/bin/env python3
"""gen_tiny_defaults.py: a tiny SD1 single-file checkpoint whose configuration is
exactly what sdrt derives for a single file with no --config: the SD1 family
defaults (host/model/model_config.c: GroupNorm 32 groups, eps 1e-5, 8 attention
heads per UNet level, CLIP 12 heads with quick_gelu and eps 1e-5, VAE 32 groups,
scaling factor 0.18215) plus what the shapes tell (widths, levels, layers). It
reuses gen_tiny.py's builders, key converters and golden functions.

Writes tests/models/tiny-sd1-defaults-f16.safetensors (weights f16-exact, stored
as f16) and tests/golden/{clip,unet,vae}_sd1_defaults.safetensors, computed in
f32 by transformers/diffusers. Deterministic. Run from the repository root:
    .venv/bin/python tests/reference/gen_tiny_defaults.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tiny as gt  # noqa: E402
import model_io  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

SEEDS = dict(text=501, unet=502, vae=503)
# The SD1 family defaults sdrt applies to a single file (model_config.c).
DEFAULTS = dict(unet_groups=32, unet_eps=1e-5, unet_heads=8, clip_heads=12, clip_act="quick_gelu",
                clip_eps=1e-5, vae_groups=32, scaling=0.18215)


def build():
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=24, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=DEFAULTS["clip_heads"], max_position_embeddings=77,
        hidden_act=DEFAULTS["clip_act"], layer_norm_eps=DEFAULTS["clip_eps"], projection_dim=24,
        bos_token_id=0, eos_token_id=2, pad_token_id=1))
    unet = UNet2DConditionModel(**dict(
        gt.UNET_COMMON, block_out_channels=[32, 32, 32, 32], norm_num_groups=DEFAULTS["unet_groups"],
        norm_eps=DEFAULTS["unet_eps"], cross_attention_dim=24,
        attention_head_dim=DEFAULTS["unet_heads"], use_linear_projection=False))
    vae = AutoencoderKL(**dict(gt.VAE, block_out_channels=[32, 32, 32, 32],
                               norm_num_groups=DEFAULTS["vae_groups"], scaling_factor=DEFAULTS["scaling"]))
    return (model_io.randomise(text, SEEDS["text"]).eval(), model_io.randomise(unet, SEEDS["unet"]).eval(),
            model_io.randomise(vae, SEEDS["vae"]).eval())


def main():
    torch.set_num_threads(1)
    text, unet, vae = build()
    sd = model_io.cast_floats(gt.sd1_single(text, unet, vae), torch.float16)
    path = "tests/models/tiny-sd1-defaults-f16.safetensors"
    model_io.save_tensors(path, sd, {"sdrt_note": "tiny SD1 single file whose config is the SD1 family defaults "
                                                  "(tests/reference/gen_tiny_defaults.py)"})
    gen = {"generator": "tests/reference/gen_tiny_defaults.py"}
    with torch.no_grad():
        c = gt.clip_golden(text, gt.token_ids(49407))
        c = {k: v for k, v in c.items() if not k.startswith("hidden_states.")}
        u = {k: v for k, v in gt.unet_golden(unet, c["last_hidden_state"], 4).items() if ".inter." not in k}
        v = {k: x for k, x in gt.vae_golden(vae).items() if ".inter." not in k}
    model_io.save_golden("tests/golden/clip_sd1_defaults.safetensors", c,
                         "tiny-sd1-defaults CLIPTextModel", dict(gen, pad_id="49407"))
    model_io.save_golden("tests/golden/unet_sd1_defaults.safetensors", u, "tiny-sd1-defaults UNet", gen)
    model_io.save_golden("tests/golden/vae_sd1_defaults.safetensors", v, "tiny-sd1-defaults VAE", gen)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and 3 goldens")


if __name__ == "__main__":
    main()
