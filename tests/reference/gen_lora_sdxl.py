#!/usr/bin/env python3
"""gen_lora_sdxl.py - tiny SDXL LoRA files for tests/models/tiny-sdxl and their
diffusers goldens -> tests/lora/sdxl_*.safetensors, tests/golden/lora_sdxl.safetensors.

Run from the repository root with the reference venv (peft from
requirements-nodeps.txt) after `make vocab`:
    .venv/bin/python tests/reference/gen_lora_sdxl.py

Files (random factors, seeded, exact in f16; rank 4):
  sdxl_kohya   kohya/A1111 SDXL LoRA: lora_te1_* (CLIP ViT-L q/k/v/out_proj, fc1, fc2),
               lora_te2_* (the bigG encoder, same modules) and every UNet transformer
               Linear with SGM (LDM) names, lora_unet_input_blocks_4_1_..., alpha 2
  sdxl_peft    diffusers/PEFT keys: unet.*, text_encoder.*, text_encoder_2.* lora_A/lora_B
               (no alpha: scale 1)
Goldens, txt2img 64x64 "a photo of a cat", Euler 4 steps (the folder's leading spacing),
CFG 7.5, seed 41 (test_sdxl.c's xl_t2i_euler) after diffusers load_lora_weights +
fuse_lora(lora_scale=m): <case>.latents [1,4,8,8], <case>.image [1,3,64,64] in [0, 1].
"""
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_lora as gl  # noqa: E402  (targets, lora_pair, kohya)
import gen_sdxl_pipeline_goldens as gx  # noqa: E402  (tokenizers; attention fix)
import ldm_keys  # noqa: E402
import model_io  # noqa: E402

OUT = os.path.join(gl.ROOT, "tests/golden/lora_sdxl.safetensors")
CASES = [("sdxl_kohya", "sdxl_kohya", 0.8), ("sdxl_peft", "sdxl_peft", 0.7)]


def sgm_names(unet):
    """diffusers UNet parameter name -> SGM/LDM name (without model.diffusion_model.)."""
    sd = {k: v for k, v in unet.state_dict().items() if not k.startswith("add_embedding.")}
    by_ptr = {v.data_ptr(): k for k, v in sd.items()}
    ldm = ldm_keys.unet_to_ldm(sd, unet.config)
    return {by_ptr[v.data_ptr()]: k[len(ldm_keys.UNET_PREFIX):] for k, v in ldm.items()}


def kohya_file(pipe, path):
    sd, names = {}, sgm_names(pipe.unet)
    mods = [("lora_te1_" + gl.kohya(n), m) for n, m in gl.targets(pipe.text_encoder, {"attn"})]
    mods += [("lora_te2_" + gl.kohya(n), m) for n, m in gl.targets(pipe.text_encoder_2, {"attn"})]
    mods += [("lora_unet_" + gl.kohya(names[n + ".weight"][:-len(".weight")]), m)
             for n, m in gl.targets(pipe.unet, {"attn"})]
    for k, m in mods:
        down, up = gl.lora_pair(m, 4)
        sd[k + ".lora_down.weight"] = down.half()
        sd[k + ".lora_up.weight"] = up
        sd[k + ".alpha"] = torch.tensor(2.0).half()
    save_file(sd, path, {"ss_output_name": "sdxl_kohya_alias"})


def peft_file(pipe, path):
    sd = {}
    for prefix, model in (("unet.", pipe.unet), ("text_encoder.", pipe.text_encoder),
                          ("text_encoder_2.", pipe.text_encoder_2)):
        for n, m in gl.targets(model, {"attn"}):
            down, up = gl.lora_pair(m, 4)
            sd[prefix + n + ".lora_A.weight"], sd[prefix + n + ".lora_B.weight"] = down, up
    save_file(sd, path)


def main():
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="sdrt-xl-lora-")
    out = {}
    try:
        t1, t2 = gx.tokenizer("tokenizer", tmp), gx.tokenizer("tokenizer_2", tmp)

        def load():
            p = StableDiffusionXLPipeline.from_pretrained(gx.MODEL, tokenizer=t1, tokenizer_2=t2, torch_dtype=torch.float32)
            p.set_progress_bar_config(disable=True)
            p.scheduler = EulerDiscreteScheduler.from_config(p.scheduler.config, steps_offset=1)
            return p
        base = load()
        kohya_file(base, os.path.join(gl.LORA_DIR, "sdxl_kohya.safetensors"))
        peft_file(base, os.path.join(gl.LORA_DIR, "sdxl_peft.safetensors"))
        for case, f, scale in CASES:
            pipe = load()
            pipe.load_lora_weights(gl.LORA_DIR, weight_name=f + ".safetensors", adapter_name=f)
            pipe.fuse_lora(lora_scale=scale, adapter_names=[f])
            kw = dict(prompt=gl.PROMPT, num_inference_steps=4, guidance_scale=7.5, height=64, width=64)
            with torch.no_grad():
                lat = pipe(**kw, generator=torch.Generator("cpu").manual_seed(41), output_type="latent").images
                img = pipe(**kw, generator=torch.Generator("cpu").manual_seed(41), output_type="np").images
            out[f"{case}.latents"] = lat.float().contiguous()
            out[f"{case}.image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2)))
            print(f"{case}: latents |max| {lat.abs().max():.3f}")
    finally:
        shutil.rmtree(tmp)
    model_io.save_golden(OUT, out, "diffusers SDXL txt2img with fused LoRAs on tiny-sdxl",
                         {"generator": "tests/reference/gen_lora_sdxl.py"})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
