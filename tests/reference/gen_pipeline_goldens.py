"""gen_pipeline_goldens.py - end-to-end generations with diffusers' Stable
Diffusion pipelines on the tiny models -> tests/golden/pipeline.safetensors.

Run from the repository root with the reference venv (requirements.txt) after
`make vocab`:
    .venv/bin/python tests/reference/gen_pipeline_goldens.py

What runs: StableDiffusionPipeline, StableDiffusionImg2ImgPipeline and
StableDiffusionInpaintPipeline (diffusers 0.31, CPU, float32, no safety
checker) on tests/models/tiny-sd1 (also the 4-channel inpaint cases),
tiny-sd1-inpaint (9-channel UNet) and tiny-sd2 (v prediction), with
generator=torch.Generator("cpu").manual_seed(seed), text prompts (plain, <= 75
tokens, so diffusers' truncating tokenizer and sdrt's A1111 chunking give the
same 77 ids) and num_images_per_prompt = batch.

Tokenizer: the model folders carry only the tokenizer configs; vocab.json and
merges.txt are built in a temporary folder from build/vocab/
bpe_simple_vocab_16e6.txt.gz (sd-reference 1.1, as gen_tokenizer_goldens.py
does) and a slow CLIPTokenizer from it is passed to from_pretrained. The
vocabulary is never written into the repository.

Schedulers are defined the way sdrt's struct sd_sampler_params defaults define
them (host/gen/sampler.c): XScheduler.from_config(pipe.scheduler.config, ...)
with timestep_spacing = the class default (sd_sampler_default_spacing:
leading for DDIM, PLMS and LCM, linspace for the others; the folder's PNDM
config would otherwise hand `leading` to every class, sd-reference 11.3),
steps_offset 1 and the schedule from the folder's config, DPM++ 2M =
dpmsolver++ order 2 (Karras: use_karras_sigmas), DDIM eta 0, LCM original
steps 50, and the model's prediction type.

Entries per case <c> (all float32):
  <c>.latents   [B, 4, H/8, W/8]  output_type="latent": the final latents in
                                  UNet space (before 1/scaling_factor)
  <c>.image     [B, 3, H, W]      output_type="np": clamp(decode/2 + 0.5, 0, 1),
                                  i.e. in [0, 1] before 8-bit quantisation,
                                  transposed from NHWC to NCHW
Shared inputs:
  init_image.<W>x<H>  [3, H, W]   the init image as the pipelines see it after
                                  preprocessing (PIL RGB /255 * 2 - 1), in [-1, 1]
  mask.<W>x<H>        [H, W]      the mask PIL "L" image / 255, in [0, 1] (the
                                  pipeline binarises it at 0.5)
The case parameters are in the metadata ("cases", a JSON list) and repeated
in tests/test_pipeline.c, which looks every tensor up by name.
"""
import gzip
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import PIL.Image
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler, PNDMScheduler,
                       StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline)
from diffusers.models.attention_processor import Attention
from transformers import CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GZ = os.path.join(ROOT, "build/vocab/bpe_simple_vocab_16e6.txt.gz")
OUT = os.path.join(ROOT, "tests/golden/pipeline.safetensors")
MODELS = os.path.join(ROOT, "tests/models")

# sampler name (sdrt) -> (class, extra config, timestep_spacing = sdrt's class default)
SAMPLERS = {
    "Euler": (EulerDiscreteScheduler, {}, "linspace"),
    "Euler a": (EulerAncestralDiscreteScheduler, {}, "linspace"),
    "DDIM": (DDIMScheduler, {"clip_sample": False}, "leading"),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, "linspace"),
    "DPM++ 2M Karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}, "linspace"),
    "LMS": (LMSDiscreteScheduler, {}, "linspace"),
    "PLMS": (PNDMScheduler, {"skip_prk_steps": True}, "leading"),
    "LCM": (LCMScheduler, {"clip_sample": False, "original_inference_steps": 50}, "leading"),
}

P_CAT = "a photo of a cat"
P_LIGHT = "a watercolor painting of a lighthouse at dawn, soft light"
P_ROBOT = "a small robot reading a book in a library"
NEG = "blurry, low quality, watermark"

# name, mode, model, sampler, steps, width, height, cfg, prompt, negative, batch, strength, seed
CASES = [
    ("t2i_euler", "txt2img", "tiny-sd1", "Euler", 4, 64, 64, 7.5, P_CAT, "", 1, 1.0, 11),
    ("t2i_euler_a", "txt2img", "tiny-sd1", "Euler a", 4, 64, 48, 7.5, P_LIGHT, "", 1, 1.0, 12),
    ("t2i_ddim", "txt2img", "tiny-sd1", "DDIM", 5, 48, 64, 5.0, P_ROBOT, "", 1, 1.0, 13),
    ("t2i_dpmpp_2m", "txt2img", "tiny-sd1", "DPM++ 2M", 4, 64, 64, 7.5, P_CAT, "", 1, 1.0, 14),
    ("t2i_dpmpp_2m_karras", "txt2img", "tiny-sd1", "DPM++ 2M Karras", 5, 64, 64, 7.5, P_CAT, "", 1, 1.0, 15),
    ("t2i_lms", "txt2img", "tiny-sd1", "LMS", 5, 64, 48, 7.5, P_LIGHT, "", 1, 1.0, 16),
    ("t2i_plms", "txt2img", "tiny-sd1", "PLMS", 4, 64, 64, 7.5, P_ROBOT, "", 1, 1.0, 17),
    ("t2i_lcm", "txt2img", "tiny-sd1", "LCM", 4, 64, 64, 1.0, P_CAT, "", 1, 1.0, 18),
    ("t2i_euler_a_nocfg", "txt2img", "tiny-sd1", "Euler a", 4, 64, 64, 1.0, P_LIGHT, "", 1, 1.0, 19),
    ("t2i_neg", "txt2img", "tiny-sd1", "DPM++ 2M", 4, 64, 64, 7.5, P_ROBOT, NEG, 1, 1.0, 20),
    ("t2i_batch2", "txt2img", "tiny-sd1", "Euler a", 3, 64, 48, 7.5, P_CAT, NEG, 2, 1.0, 21),
    ("t2i_sd2_v", "txt2img", "tiny-sd2", "Euler", 4, 64, 64, 7.5, P_LIGHT, "", 1, 1.0, 22),
    ("t2i_clip_skip2", "txt2img", "tiny-sd1", "Euler", 4, 64, 64, 1.0, P_ROBOT, "", 1, 1.0, 32),
    ("i2i_euler_a_s05", "img2img", "tiny-sd1", "Euler a", 6, 64, 48, 7.5, P_LIGHT, "", 1, 0.5, 23),
    ("i2i_euler_a_s10", "img2img", "tiny-sd1", "Euler a", 4, 64, 48, 7.5, P_LIGHT, "", 1, 1.0, 24),
    ("i2i_ddim_s05", "img2img", "tiny-sd1", "DDIM", 6, 64, 48, 7.5, P_CAT, "", 1, 0.5, 25),
    ("i2i_ddim_s10", "img2img", "tiny-sd1", "DDIM", 4, 64, 48, 7.5, P_CAT, "", 1, 1.0, 26),
    ("i2i_euler_a_s05_b2", "img2img", "tiny-sd1", "Euler a", 6, 64, 48, 7.5, P_ROBOT, "", 2, 0.5, 27),
    ("inp9_euler_a", "inpaint", "tiny-sd1-inpaint", "Euler a", 4, 64, 64, 7.5, P_CAT, "", 1, 1.0, 28),
    ("inp9_ddim_s075", "inpaint", "tiny-sd1-inpaint", "DDIM", 4, 64, 64, 7.5, P_ROBOT, "", 1, 0.75, 29),
    ("inp4_ddim", "inpaint", "tiny-sd1", "DDIM", 4, 64, 64, 7.5, P_LIGHT, "", 1, 1.0, 30),
    ("inp4_euler_a_s075", "inpaint", "tiny-sd1", "Euler a", 4, 64, 64, 7.5, P_CAT, NEG, 2, 0.75, 31),
]


_get_attention_scores = Attention.get_attention_scores


def _get_attention_scores_zeroed(self, query, key, attention_mask=None):
    """diffusers' AttnProcessor calls baddbmm(torch.empty(...), q, k^T, beta=0);
    torch 1.13's CPU baddbmm still multiplies the input by beta when the
    matrices are 1x1 (self-attention over one token: the tiny UNet's deepest
    level at 64x64), so garbage NaNs in the empty buffer made whole runs NaN
    now and then. A zero buffer with beta=1 gives the same numbers (q k^T *
    scale + 0) every time."""
    if attention_mask is None:
        attention_mask = torch.zeros(query.shape[0], query.shape[1], key.shape[1], dtype=query.dtype)
    return _get_attention_scores(self, query, key, attention_mask)


Attention.get_attention_scores = _get_attention_scores_zeroed


# A1111 "Clip skip" per case (default 1 = last layer). diffusers' clip_skip=k is
# A1111's k+1, and diffusers does not apply it to the negative prompt while
# A1111 (and sdrt) do, so the clip-skip case runs without CFG.
CLIP_SKIP = {"t2i_clip_skip2": 2}


def build_vocab(folder):
    """vocab.json + merges.txt from the OpenAI BPE file (sd-reference 1.1)."""
    lines = gzip.open(GZ).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1: 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    enc = dict(zip(vocab, range(len(vocab))))
    assert len(enc) == 49408
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(enc, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))


def tokenizer_for(model, tmp):
    """The model folder's tokenizer configs (pad <|endoftext|> or "!") plus the
    built vocabulary, loaded as a slow CLIPTokenizer."""
    d = os.path.join(tmp, model)
    os.makedirs(d)
    src = os.path.join(MODELS, model, "tokenizer")
    for f in os.listdir(src):
        shutil.copy(os.path.join(src, f), d)
    build_vocab(d)
    return CLIPTokenizer.from_pretrained(d)


def init_image(w, h):
    """A smooth seeded RGB picture (8-bit values, as a PNG would give)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    g = 40 + 180 * x / w
    b = 220 - 150 * y / h + 20 * np.sin((x + y) / 5.0)
    rgb = np.stack([r, g, b], axis=-1)
    rgb += np.random.default_rng(w * 1000 + h).normal(0, 6, rgb.shape)
    return PIL.Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def mask_image(w, h):
    """White (repaint) rectangle with grey edges on both sides of 0.5 (127, 128)
    so that the binarisation threshold matters."""
    m = np.zeros((h, w), dtype=np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    m[h // 4: 3 * h // 4, w // 4 - 8: w // 4] = 128     # -> repaint
    m[h // 4: 3 * h // 4, 3 * w // 4: 3 * w // 4 + 8] = 127  # -> keep
    m[0:8, 0:16] = 200
    return PIL.Image.fromarray(m, "L")


def make_scheduler(pipe, sampler, prediction):
    cls, extra, spacing = SAMPLERS[sampler]
    return cls.from_config(pipe.scheduler.config, timestep_spacing=spacing, prediction_type=prediction,
                           steps_offset=1, **extra)


def main():
    torch.set_num_threads(1)
    if not os.path.exists(GZ):
        sys.exit(f"{GZ} is missing: run `make vocab`")
    out, meta_cases = {}, []
    tmp = tempfile.mkdtemp(prefix="sdrt-pipe-")
    try:
        toks = {m: tokenizer_for(m, tmp) for m in ("tiny-sd1", "tiny-sd1-inpaint", "tiny-sd2")}
        pipes = {}
        for m in toks:
            pipes[m] = StableDiffusionPipeline.from_pretrained(
                os.path.join(MODELS, m), tokenizer=toks[m], safety_checker=None, feature_extractor=None,
                requires_safety_checker=False, torch_dtype=torch.float32)
            pipes[m].set_progress_bar_config(disable=True)
        for case in CASES:
            name, mode, model, sampler, steps, w, h, cfg, prompt, neg, batch, strength, seed = case
            base = pipes[model]
            prediction = base.scheduler.config.get("prediction_type", "epsilon")
            cls = {"txt2img": StableDiffusionPipeline, "img2img": StableDiffusionImg2ImgPipeline,
                   "inpaint": StableDiffusionInpaintPipeline}[mode]
            comps = dict(base.components)
            comps["scheduler"] = make_scheduler(base, sampler, prediction)
            pipe = cls(**comps)
            pipe.set_progress_bar_config(disable=True)
            kw = dict(prompt=prompt, negative_prompt=neg or None, num_inference_steps=steps, guidance_scale=cfg,
                      num_images_per_prompt=batch)
            clip_skip = CLIP_SKIP.get(name, 1)
            if clip_skip > 1:
                assert cfg <= 1.0, "diffusers applies clip_skip to the prompt only"
                kw.update(clip_skip=clip_skip - 1)
            if mode != "img2img":  # img2img takes the size from the image
                kw.update(height=h, width=w)
            if mode != "txt2img":
                img = init_image(w, h)
                kw.update(image=img, strength=strength)
                key = f"init_image.{w}x{h}"
                if key not in out:
                    out[key] = pipe.image_processor.preprocess(img, height=h, width=w)[0].float()
            if mode == "inpaint":
                mk = mask_image(w, h)
                kw.update(mask_image=mk)
                out[f"mask.{w}x{h}"] = torch.from_numpy(np.asarray(mk, dtype=np.float32) / np.float32(255.0))
            with torch.no_grad():
                lat = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
                img = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
                # The np image must be the decode of those latents (the pipeline is deterministic).
                dec = pipe.vae.decode(lat / pipe.vae.config.scaling_factor).sample
                ref = (dec / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
                if not np.array_equal(ref, img):
                    sys.exit(f"{name}: output_type='np' is not the decode of output_type='latent' "
                             f"(max diff {np.abs(ref - img).max()}; NaN in latents {int(torch.isnan(lat).sum())}, "
                             f"decode {int(np.isnan(ref).sum())}, np image {int(np.isnan(img).sum())})")
            out[f"{name}.latents"] = lat.float().contiguous()
            out[f"{name}.image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2)))
            meta_cases.append(dict(name=name, mode=mode, model=model, sampler=sampler, steps=steps, width=w, height=h,
                                   cfg=cfg, prompt=prompt, negative=neg, batch=batch, strength=strength, seed=seed,
                                   prediction=prediction, clip_skip=clip_skip))
            print(f"{name}: latents {tuple(lat.shape)} |max| {lat.abs().max():.3f}")
    finally:
        shutil.rmtree(tmp)
    model_io.save_golden(OUT, out, "diffusers pipeline generations on the tiny models",
                         {"generator": "tests/reference/gen_pipeline_goldens.py", "cases": json.dumps(meta_cases),
                          "image": "[B,3,H,W] in [0,1]: clamp(decode/2+0.5), before 8-bit quantisation",
                          "latents": "[B,4,h,w] UNet-space final latents (output_type=latent)"})
    print("wrote", OUT, len(out), "tensors,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
