#!/usr/bin/env python3
"""gen_bf16_goldens.py: diffusers/transformers run in bf16 on the tiny SD1 model, the
reference for sdrt's `--precision bf16` (tests/test_bf16.c) -> tests/golden/bf16.safetensors.

Two bf16 runs of the same inputs as the f32 goldens (tests/golden/{clip_sd1,unet_sd1,vae}):
  autocast.*  torch.autocast("cpu", dtype=torch.bfloat16): convolutions, linears and the
              attention matmuls in bf16, norms in f32 - the closest to what sdrt does
              (sdrt keeps every activation in f32 and rounds only the GEMM operands).
  cast.*      the models cast with .to(torch.bfloat16) (weights and every activation in
              bf16, as `pipe.to(torch.bfloat16)` does).
Both are stored as f32. The script prints each run's max abs error against the f32
goldens: the error diffusers itself makes in bf16, which the C test compares with ours.
Deterministic; run from the repo root with the reference venv:
    .venv/bin/python tests/reference/gen_bf16_goldens.py
"""
import os
import sys

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_io  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()

MODEL = "tests/models/tiny-sd1"
GOLDEN = "tests/golden"


def golden(name):
    with safe_open(os.path.join(GOLDEN, name + ".safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@torch.no_grad()
def run(text, unet, vae, dt, g_clip, g_unet, g_vae):
    """Outputs (f32) of CLIP, UNet cases a/b, VAE decode and encode moments, with inputs
    cast to dt (the models' dtype, or f32 under autocast)."""
    out = {"clip.last_hidden_state": text(input_ids=g_clip["input_ids"].long()).last_hidden_state}
    for c in ("a", "b"):
        out[f"unet.{c}.out"] = unet(g_unet[f"{c}.sample"].to(dt), g_unet[f"{c}.timestep"],
                                    encoder_hidden_states=g_unet[f"{c}.context"].to(dt)).sample
    out["vae.decode.image"] = vae.decode(g_vae["decode.z"].to(dt)).sample
    out["vae.encode.moments"] = vae.quant_conv(vae.encoder(g_vae["encode.image"].to(dt)))
    return {k: v.float().contiguous() for k, v in out.items()}


def main():
    torch.set_num_threads(2)
    g_clip, g_unet, g_vae = golden("clip_sd1"), golden("unet_sd1"), golden("vae")
    ref = {"clip.last_hidden_state": g_clip["last_hidden_state"], "unet.a.out": g_unet["a.out"],
           "unet.b.out": g_unet["b.out"], "vae.decode.image": g_vae["decode.image"],
           "vae.encode.moments": g_vae["encode.moments"]}

    def load():
        return (CLIPTextModel.from_pretrained(os.path.join(MODEL, "text_encoder")).eval(),
                UNet2DConditionModel.from_pretrained(os.path.join(MODEL, "unet")).eval(),
                AutoencoderKL.from_pretrained(os.path.join(MODEL, "vae")).eval())

    text, unet, vae = load()
    f32 = run(text, unet, vae, torch.float32, g_clip, g_unet, g_vae)
    for k, v in f32.items():  # the f32 rerun must reproduce the committed goldens
        err = (v - ref[k]).abs().max().item()
        if err > 1e-5:
            raise RuntimeError(f"{k}: f32 rerun differs from the committed golden by {err:.3g}")
    # torch 1.13's CPU autocast has no f32 rule for group_norm (it fails on a bf16 input
    # with f32 weights): compute the norms in f32 as autocast means to.
    gn, ln = torch.nn.GroupNorm.forward, torch.nn.LayerNorm.forward
    torch.nn.GroupNorm.forward = lambda self, x: gn(self, x.float())
    torch.nn.LayerNorm.forward = lambda self, x: ln(self, x.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = run(text, unet, vae, torch.float32, g_clip, g_unet, g_vae)
    torch.nn.GroupNorm.forward, torch.nn.LayerNorm.forward = gn, ln
    cast = run(text.to(torch.bfloat16), unet.to(torch.bfloat16), vae.to(torch.bfloat16), torch.bfloat16,
               g_clip, g_unet, g_vae)
    tensors = {}
    for k in ref:
        tensors["autocast." + k] = auto[k]
        tensors["cast." + k] = cast[k]
        print(f"{k:24s} |ref| max {ref[k].abs().max().item():7.3f}   max abs err vs f32: "
              f"autocast {(auto[k] - ref[k]).abs().max().item():.3g}, "
              f"cast {(cast[k] - ref[k]).abs().max().item():.3g}")
    path = os.path.join(GOLDEN, "bf16.safetensors")
    model_io.save_golden(path, tensors, "tiny-sd1 CLIP/UNet/VAE in bf16 (autocast and cast) on the "
                         "inputs of clip_sd1/unet_sd1/vae", {"generator": "tests/reference/gen_bf16_goldens.py"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
