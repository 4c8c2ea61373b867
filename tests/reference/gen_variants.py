#!/usr/bin/env python3
"""gen_variants.py: tiny model variants that the first tiny models never exercised
(issue 8 item 6) and their diffusers goldens -> tests/models/, tests/golden/variants.safetensors.

Run from the repository root after `make vocab` (gen_tiny.py runs it at its end):
    .venv/bin/python tests/reference/gen_variants.py

Models (seeded, deterministic; components shared with tiny-sd1 are relative symlinks):
  tiny-vae3/            a VAE with 3 levels (block_out [8, 12, 16]: latent = image / 4);
                        unet, text_encoder -> ../tiny-sd1
  tiny-sd1-linear/      an SD1 pipeline (CLIP ViT-L style text encoder: quick_gelu,
                        pad = eos) whose UNet uses linear proj_in/proj_out
                        (use_linear_projection=True), and no tokenizer/ folder;
                        text_encoder, vae -> ../tiny-sd1
  tiny-sd1-sched/       tiny-sd1 (all symlinks) with a scheduler_config.json that says
                        timestep_spacing "leading", steps_offset 0
  tiny-sd2-v.safetensors, tiny-sd2-eps.safetensors
                        LDM single files (F16) of a narrower SD2 (OpenCLIP text encoder
                        of width 8, 3 stored resblocks; UNet as tiny-sd2 with context 8;
                        the v file also holds the tiny VAE). Identical except for the
                        UNet weights (seeds) and the statistic the v-prediction detector
                        reads: ComfyUI's rule (supported_models.SD20.model_type) calls an
                        SD2 UNet v-prediction when the population std of
                        output_blocks.11.1.transformer_blocks.0.norm1.bias exceeds 0.09.
                        Random weights carry no such training signature, so that one
                        LayerNorm bias is generated with std 0.2 (v) or 0.04 (eps): the
                        detector's decision on these files is by construction, which is
                        what the tests check (the pipeline then follows it).
  tiny-sd2-small-config/  config.json files (unet, vae, text_encoder; no scheduler/) for
                        the two single files: what shapes cannot tell (heads, groups).

Goldens (variants.safetensors, float32; diffusers 0.31 on CPU):
  vae3.*                as vae.safetensors (gen_tiny.vae_golden) for the 3-level VAE
  <case>.latents / <case>.image for the pipeline CASES below (as pipeline.safetensors)
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_pipeline_goldens as gp  # noqa: E402  (patches diffusers' attention scores, see there)
import gen_tiny  # noqa: E402
import ldm_keys  # noqa: E402
import model_io  # noqa: E402
from model_io import round_exact  # noqa: E402

from diffusers import (AutoencoderKL, DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,  # noqa: E402
                       StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

MODELS, GOLDEN = gp.MODELS, os.path.join(gp.ROOT, "tests/golden/variants.safetensors")
SEEDS = dict(vae3=501, linear_unet=502, sd2s_text=503, sd2s_unet_v=504, sd2s_unet_eps=505, sd2s_proj=506)

VAE3 = dict(gen_tiny.VAE, down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
            block_out_channels=[8, 12, 16])
UNET_SD1_LINEAR = dict(gen_tiny.UNET_SD1, use_linear_projection=True)
SD2S_WIDTH = 8
UNET_SD2S = dict(gen_tiny.UNET_SD2, cross_attention_dim=SD2S_WIDTH)
DETECT_KEY = "up_blocks.3.attentions.2.transformer_blocks.0.norm1.bias"  # LDM output_blocks.11.1...
DETECT_STD = {"v": 0.2, "eps": 0.04}
SCHED_FOLDER = dict(model_io.SCHEDULER_SD15, timestep_spacing="leading", steps_offset=0)

P_CAT, P_LIGHT, P_ROBOT = gp.P_CAT, gp.P_LIGHT, gp.P_ROBOT
# name, mode, model, sampler, steps, width, height, cfg, prompt, batch, strength, seed, spacing
# (spacing None: the folder's scheduler config, else the class default as in gen_pipeline_goldens)
CASES = [
    ("vae3_t2i_euler", "txt2img", "tiny-vae3", "Euler", 4, 64, 48, 7.5, P_CAT, 1, 1.0, 41, None),
    ("vae3_i2i_euler_a", "img2img", "tiny-vae3", "Euler a", 4, 48, 32, 7.5, P_LIGHT, 1, 0.5, 42, None),
    ("vae3_inp4_ddim", "inpaint", "tiny-vae3", "DDIM", 4, 64, 64, 7.5, P_ROBOT, 1, 1.0, 43, None),
    ("linear_t2i_euler", "txt2img", "tiny-sd1-linear", "Euler", 4, 64, 64, 7.5, P_CAT, 1, 1.0, 44, None),
    ("sd2v_t2i_euler", "txt2img", "tiny-sd2-v.safetensors", "Euler", 4, 64, 64, 7.5, P_LIGHT, 1, 1.0, 45, None),
    ("sp_euler_leading", "txt2img", "tiny-sd1", "Euler", 4, 32, 32, 7.5, P_CAT, 1, 1.0, 46, "leading"),
    ("sp_euler_linspace", "txt2img", "tiny-sd1", "Euler", 4, 32, 32, 7.5, P_CAT, 1, 1.0, 46, "linspace"),
    ("sp_euler_trailing", "txt2img", "tiny-sd1", "Euler", 4, 32, 32, 7.5, P_CAT, 1, 1.0, 46, "trailing"),
    ("sp_ddim_leading", "txt2img", "tiny-sd1", "DDIM", 5, 32, 32, 7.5, P_ROBOT, 1, 1.0, 47, "leading"),
    ("sp_ddim_linspace", "txt2img", "tiny-sd1", "DDIM", 5, 32, 32, 7.5, P_ROBOT, 1, 1.0, 47, "linspace"),
    ("sp_ddim_trailing", "txt2img", "tiny-sd1", "DDIM", 5, 32, 32, 7.5, P_ROBOT, 1, 1.0, 47, "trailing"),
    ("sp_folder_euler", "txt2img", "tiny-sd1-sched", "Euler", 4, 32, 32, 7.5, P_CAT, 1, 1.0, 48, None),
    ("sp_folder_ddim", "txt2img", "tiny-sd1-sched", "DDIM", 5, 32, 32, 7.5, P_ROBOT, 1, 1.0, 48, None),
]
CLASSES = {"Euler": EulerDiscreteScheduler, "Euler a": EulerAncestralDiscreteScheduler, "DDIM": DDIMScheduler}


def folder(name, sched, pad, own, links, tokenizer=True):
    """A diffusers folder: `own` components saved, `links` symlinked to tiny-sd1."""
    d = os.path.join(MODELS, name)
    if os.path.lexists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for sub, comp in own.items():
        comp.save_pretrained(os.path.join(d, sub), safe_serialization=True)
    for sub in links:
        os.symlink(os.path.join("..", "tiny-sd1", sub), os.path.join(d, sub))
    model_io.write_pipeline_meta(d, sched, pad)
    if not tokenizer:
        shutil.rmtree(os.path.join(d, "tokenizer"))
    return d


def sd2_small(base_vae):
    """Text encoder (3 stored layers, 2 used), v and eps UNets, configs folder, single files."""
    torch.manual_seed(0)
    cfg = lambda n: CLIPTextConfig(vocab_size=49408, hidden_size=SD2S_WIDTH, intermediate_size=32,  # noqa: E731
                                   num_hidden_layers=n, num_attention_heads=2, max_position_embeddings=77,
                                   hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=SD2S_WIDTH,
                                   bos_token_id=0, eos_token_id=2, pad_token_id=1)
    full = model_io.randomise(CLIPTextModel(cfg(3)), SEEDS["sd2s_text"]).eval()
    text = CLIPTextModel(cfg(2)).eval()
    text.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("text_model.encoder.layers.2.")})
    g = torch.Generator().manual_seed(SEEDS["sd2s_proj"])
    proj = round_exact(torch.randn(SD2S_WIDTH, SD2S_WIDTH, generator=g) / SD2S_WIDTH ** 0.5)
    unets = {}
    for kind in ("v", "eps"):
        u = model_io.randomise(UNet2DConditionModel(**UNET_SD2S), SEEDS["sd2s_unet_" + kind]).eval()
        with torch.no_grad():
            b = dict(u.named_parameters())[DETECT_KEY]
            r = b - b.mean()
            b.copy_(round_exact(r / r.pow(2).mean().sqrt() * DETECT_STD[kind]))
        unets[kind] = u
    cdir = os.path.join(MODELS, "tiny-sd2-small-config")
    if os.path.lexists(cdir):
        shutil.rmtree(cdir)
    for sub, comp in (("unet", unets["v"]), ("vae", base_vae), ("text_encoder", text)):
        os.makedirs(os.path.join(cdir, sub))
        if isinstance(comp, CLIPTextModel):
            comp.config.to_json_file(os.path.join(cdir, sub, "config.json"))
        else:
            comp.save_config(os.path.join(cdir, sub))
    t = gen_tiny.text_tensors(full)
    t = ldm_keys.sd2_clip_to_openclip(t, 3, proj, torch.tensor(2.6592600345611572))
    meta = {"sdrt_note": "tiny random-weight SD2 model for tests (tests/reference/gen_variants.py)"}
    for kind, u in unets.items():
        sd = {**ldm_keys.unet_to_ldm(u.state_dict(), u.config), **t}
        if kind == "v":
            sd.update(ldm_keys.vae_to_ldm(base_vae.state_dict(), base_vae.config))
        sd = model_io.cast_floats(sd, torch.float16)
        path = os.path.join(MODELS, f"tiny-sd2-{kind}.safetensors")
        model_io.save_tensors(path, sd, dict(meta, prediction=kind))
        std = u.state_dict()[DETECT_KEY].std(unbiased=False).item()
        print(f"gen_variants: {path}: {DETECT_KEY} std {std:.4f} ({kind})")
        if kind == "v":
            gen_tiny.verify_single(path, u, base_vae, text, sd2=True, text_full=full)
    return text, unets


def make_scheduler(raw, sampler, spacing, prediction):
    """spacing None: the folder's scheduler_config.json as written (keys it lacks take the
    class defaults), else the explicit spacing with steps_offset 1 (gen_pipeline_goldens)."""
    cls = CLASSES[sampler]
    extra = {"clip_sample": False} if sampler == "DDIM" else {}
    if spacing is None:
        return cls.from_config(raw, prediction_type=prediction, **extra)
    return cls.from_config(raw, timestep_spacing=spacing, prediction_type=prediction, steps_offset=1, **extra)


def run_case(case, base, raw, out):
    name, mode, model, sampler, steps, w, h, cfg, prompt, batch, strength, seed, spacing = case
    prediction = raw.get("prediction_type", "epsilon")
    cls = {"txt2img": StableDiffusionPipeline, "img2img": StableDiffusionImg2ImgPipeline,
           "inpaint": StableDiffusionInpaintPipeline}[mode]
    pipe = cls(**base.components)
    # The pipeline constructor rewrites a scheduler's steps_offset != 1 to 1 (a
    # deprecation path); the scheduler itself honours the file: set it afterwards.
    pipe.scheduler = make_scheduler(raw, sampler, spacing, prediction)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(prompt=prompt, num_inference_steps=steps, guidance_scale=cfg, num_images_per_prompt=batch)
    if mode != "img2img":
        kw.update(height=h, width=w)
    if mode != "txt2img":
        img = gp.init_image(w, h)
        kw.update(image=img, strength=strength)
        out[f"init_image.{w}x{h}"] = pipe.image_processor.preprocess(img, height=h, width=w)[0].float()
    if mode == "inpaint":
        mk = gp.mask_image(w, h)
        kw.update(mask_image=mk)
        out[f"mask.{w}x{h}"] = torch.from_numpy(np.asarray(mk, dtype=np.float32) / np.float32(255.0))
    with torch.no_grad():
        lat = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
        img = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
    ts = [float(t) for t in pipe.scheduler.timesteps]
    out[f"{name}.latents"] = lat.float().contiguous()
    out[f"{name}.image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2)))
    out[f"{name}.timesteps"] = torch.tensor(ts, dtype=torch.float32)
    print(f"gen_variants: {name}: latents {tuple(lat.shape)} |max| {lat.abs().max():.3f} timesteps {ts}")
    return dict(name=name, mode=mode, model=model, sampler=sampler, steps=steps, width=w, height=h, cfg=cfg,
                prompt=prompt, batch=batch, strength=strength, seed=seed, spacing=spacing, prediction=prediction)


def main():
    torch.set_num_threads(1)
    if not os.path.exists(gp.GZ):
        sys.exit(f"{gp.GZ} is missing: run `make vocab`")
    m = gen_tiny.build_models()
    torch.manual_seed(0)
    vae3 = model_io.randomise(AutoencoderKL(**VAE3), SEEDS["vae3"]).eval()
    torch.manual_seed(0)
    lin = model_io.randomise(UNet2DConditionModel(**UNET_SD1_LINEAR), SEEDS["linear_unet"]).eval()
    folder("tiny-vae3", model_io.SCHEDULER_SD15, "<|endoftext|>", {"vae": vae3}, ("unet", "text_encoder"))
    folder("tiny-sd1-linear", model_io.SCHEDULER_SD15, "<|endoftext|>", {"unet": lin}, ("text_encoder", "vae"),
           tokenizer=False)
    folder("tiny-sd1-sched", SCHED_FOLDER, "<|endoftext|>", {}, ("unet", "text_encoder", "vae"))
    text2, unets2 = sd2_small(m["vae"])

    out, meta = {}, []
    tmp = tempfile.mkdtemp(prefix="sdrt-var-")
    try:
        v3 = AutoencoderKL.from_pretrained(os.path.join(MODELS, "tiny-vae3", "vae")).eval()
        gen_tiny.check_equal("tiny-vae3 reload", v3.state_dict(), vae3.state_dict())
        out.update({f"vae3.{k}": v for k, v in gen_tiny.vae_golden(v3).items()})
        tok1 = gp.tokenizer_for("tiny-sd1", tmp)
        tok2 = gp.tokenizer_for("tiny-sd2", tmp)
        kw = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                  torch_dtype=torch.float32)
        bases = {n: StableDiffusionPipeline.from_pretrained(os.path.join(MODELS, n), tokenizer=tok1, **kw)
                 for n in ("tiny-sd1", "tiny-vae3", "tiny-sd1-linear", "tiny-sd1-sched")}
        sched = EulerDiscreteScheduler.from_config(dict(model_io.SCHEDULER_SD21))
        bases["tiny-sd2-v.safetensors"] = StableDiffusionPipeline(
            vae=m["vae"], text_encoder=text2, tokenizer=tok2, unet=unets2["v"], scheduler=sched, **{
                k: v for k, v in kw.items() if k != "torch_dtype"})
        raws = {n: json.load(open(os.path.join(MODELS, n, "scheduler", "scheduler_config.json")))
                for n in bases if not n.endswith(".safetensors")}
        raws["tiny-sd2-v.safetensors"] = dict(model_io.SCHEDULER_SD21)
        for case in CASES:
            meta.append(run_case(case, bases[case[2]], raws[case[2]], out))
    finally:
        shutil.rmtree(tmp)
    model_io.save_golden(GOLDEN, out, "variant models: 3-level VAE, SD1 with linear projections, "
                         "SD2 v single file, timestep spacings",
                         {"generator": "tests/reference/gen_variants.py", "cases": json.dumps(meta)})
    print("gen_variants: wrote", GOLDEN, len(out), "tensors,", os.path.getsize(GOLDEN), "bytes")


if __name__ == "__main__":
    main()
