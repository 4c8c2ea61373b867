#!/usr/bin/env python3
"""gen_sdxl_pipeline_goldens.py - end-to-end generations with diffusers'
StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline on
tests/models/tiny-sdxl -> tests/golden/sdxl_pipeline.safetensors.

Run from the repository root with the reference venv after `make vocab`:
    .venv/bin/python tests/reference/gen_sdxl_pipeline_goldens.py

As gen_pipeline_goldens.py (whose tokenizer builder, init image, sampler
table and attention fix this imports): CPU, float32, generator =
torch.Generator("cpu").manual_seed(seed), plain prompts of <= 75 tokens (so
diffusers' truncation and A1111's chunking give the same ids to both
encoders). Schedulers: XScheduler.from_config(pipe.scheduler.config) with the
folder's timestep_spacing ("leading", as SDXL's own scheduler config, which
sdrt takes from the folder too), steps_offset 1. SDXL conditioning is
diffusers' default, which is A1111's: original size = target size = (height,
width), crop (0, 0), the same for the negative; an empty negative prompt is
zeros (force_zeros_for_empty_prompt).

Refiner hand-off ("refiner" cases): diffusers' documented ensemble of experts, the base with
denoising_end = switch and output_type="latent", then StableDiffusionXLImg2ImgPipeline on
tests/models/tiny-sdxl-refiner with denoising_start = switch on those latents. With Euler
(no sampler history, no noise draws after the start) that is exactly A1111's hand-off, which
swaps the model inside one sampling run at the first call whose timestep t has
(999 - t) / 1000 >= switch: both split the timesteps at t < round(1000 * (1 - switch)). The
negative prompt is not empty (diffusers' refiner config encodes "" where A1111 gives zeros).
Turbo ("turbo"): SDXL-Turbo's scheduler setting, Euler a with timestep_spacing "trailing",
guidance_scale 0, 1 step.

Entries per case <c>: <c>.latents [B, 4, H/8, W/8] (output_type="latent"),
<c>.image [B, 3, H, W] in [0, 1] (output_type="np", NCHW); init_image.<W>x<H>
[3, H, W] in [-1, 1]. Case parameters are in the metadata ("cases") and in
tests/test_sdxl.c.
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline
from transformers import CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_pipeline_goldens as gp  # noqa: E402  (also patches the attention scores)
import model_io  # noqa: E402

OUT = os.path.join(gp.ROOT, "tests/golden/sdxl_pipeline.safetensors")
MODEL = os.path.join(gp.MODELS, "tiny-sdxl")

# name, mode, sampler, steps, width, height, cfg, prompt, negative, batch, strength, seed
CASES = [
    ("xl_t2i_euler", "txt2img", "Euler", 4, 64, 64, 7.5, gp.P_CAT, "", 1, 1.0, 41),
    ("xl_t2i_dpmpp_2m_neg", "txt2img", "DPM++ 2M", 4, 64, 48, 5.0, gp.P_LIGHT, gp.NEG, 1, 1.0, 42),
    ("xl_t2i_euler_a_b2", "txt2img", "Euler a", 3, 48, 64, 7.5, gp.P_ROBOT, gp.NEG, 2, 1.0, 43),
    ("xl_t2i_nocfg", "txt2img", "Euler", 3, 64, 64, 1.0, gp.P_CAT, "", 1, 1.0, 44),
    ("xl_i2i_euler_a_s06", "img2img", "Euler a", 5, 64, 48, 7.5, gp.P_LIGHT, "", 1, 0.6, 45),
    # base + refiner hand-off at 0.8 (strength column: the switch), Turbo-style 1 step (trailing, no CFG)
    ("xl_refiner_euler", "refiner", "Euler", 10, 64, 64, 7.5, gp.P_CAT, gp.NEG, 1, 0.8, 46),
    ("xl_turbo_1step", "turbo", "Euler a", 1, 64, 64, 0.0, gp.P_CAT, "", 1, 1.0, 47),
    # the 9-channel SDXL inpainting UNet (tests/models/tiny-sdxl-inpaint)
    ("xl_inp9_euler_a", "inpaint", "Euler a", 4, 64, 64, 7.5, gp.P_CAT, gp.NEG, 1, 1.0, 48),
    ("xl_inp9_ddim_s075", "inpaint", "DDIM", 4, 64, 64, 7.5, gp.P_ROBOT, "", 1, 0.75, 49),
]
INPAINT = os.path.join(gp.MODELS, "tiny-sdxl-inpaint")
REFINER = os.path.join(gp.MODELS, "tiny-sdxl-refiner")


def tokenizer(sub, tmp):
    d = os.path.join(tmp, sub)
    os.makedirs(d)
    for f in os.listdir(os.path.join(MODEL, sub)):
        shutil.copy(os.path.join(MODEL, sub, f), d)
    gp.build_vocab(d)
    return CLIPTokenizer.from_pretrained(d)


def main():
    torch.set_num_threads(1)
    if not os.path.exists(gp.GZ):
        sys.exit(f"{gp.GZ} is missing: run `make vocab`")
    out, meta = {}, []
    tmp = tempfile.mkdtemp(prefix="sdrt-xl-")
    try:
        t1, t2 = tokenizer("tokenizer", tmp), tokenizer("tokenizer_2", tmp)
        if t1.pad_token_id != 49407 or t2.pad_token_id != 0:
            sys.exit(f"tokenizer pads {t1.pad_token_id}, {t2.pad_token_id}: expected 49407, 0")
        base = StableDiffusionXLPipeline.from_pretrained(MODEL, tokenizer=t1, tokenizer_2=t2, torch_dtype=torch.float32)
        refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(REFINER, tokenizer_2=t2, torch_dtype=torch.float32)
        refiner.set_progress_bar_config(disable=True)
        inpaint = StableDiffusionXLInpaintPipeline.from_pretrained(INPAINT, tokenizer=t1, tokenizer_2=t2,
                                                                   torch_dtype=torch.float32)
        for name, mode, sampler, steps, w, h, cfg, prompt, neg, batch, strength, seed in CASES:
            cls, extra, _ = gp.SAMPLERS[sampler]
            comps = dict((inpaint if mode == "inpaint" else base).components)
            sched = dict(extra, timestep_spacing="trailing") if mode == "turbo" else extra
            comps["scheduler"] = cls.from_config(base.scheduler.config, steps_offset=1, **sched)
            cls_p = {"img2img": StableDiffusionXLImg2ImgPipeline, "inpaint": StableDiffusionXLInpaintPipeline}
            pipe = cls_p.get(mode, StableDiffusionXLPipeline)(**comps)
            pipe.set_progress_bar_config(disable=True)
            kw = dict(prompt=prompt, negative_prompt=neg or None, num_inference_steps=steps, guidance_scale=cfg,
                      num_images_per_prompt=batch)
            if mode != "img2img":
                kw.update(height=h, width=w)
            if mode in ("img2img", "inpaint"):
                img = gp.init_image(w, h)
                kw.update(image=img, strength=strength)
                out[f"init_image.{w}x{h}"] = pipe.image_processor.preprocess(img, height=h, width=w)[0].float()
            if mode == "inpaint":
                mk = gp.mask_image(w, h)
                kw.update(mask_image=mk)
                out[f"mask.{w}x{h}"] = torch.from_numpy(np.asarray(mk, dtype=np.float32) / np.float32(255.0))
            with torch.no_grad():
                if mode == "refiner":
                    rc = dict(refiner.components)
                    rc["scheduler"] = cls.from_config(refiner.scheduler.config, steps_offset=1, **extra)
                    rp = StableDiffusionXLImg2ImgPipeline(**rc, requires_aesthetics_score=True,
                                                          force_zeros_for_empty_prompt=False)
                    rp.set_progress_bar_config(disable=True)
                    mid = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), denoising_end=strength,
                               output_type="latent").images
                    rkw = dict(prompt=prompt, negative_prompt=neg, num_inference_steps=steps, guidance_scale=cfg,
                               image=mid, denoising_start=strength)
                    lat = rp(**rkw, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
                    img = rp(**rkw, generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
                else:
                    lat = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
                    img = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
            if not torch.isfinite(lat).all() or not np.isfinite(img).all():
                sys.exit(f"{name}: non-finite output")
            out[f"{name}.latents"] = lat.float().contiguous()
            out[f"{name}.image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2)))
            meta.append(dict(name=name, mode=mode, sampler=sampler, steps=steps, width=w, height=h, cfg=cfg,
                             prompt=prompt, negative=neg, batch=batch, strength=strength, seed=seed))
            print(f"{name}: latents {tuple(lat.shape)} |max| {lat.abs().max():.3f}")
    finally:
        shutil.rmtree(tmp)
    model_io.save_golden(OUT, out, "diffusers SDXL pipeline generations on tiny-sdxl",
                         {"generator": "tests/reference/gen_sdxl_pipeline_goldens.py", "cases": json.dumps(meta)})
    print("wrote", OUT, len(out), "tensors,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
