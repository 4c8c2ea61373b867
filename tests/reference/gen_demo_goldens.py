"""gen_demo_goldens.py - diffusers generations with the demo model (tests/models/demo,
trained by train_demo.py) -> tests/golden/demo.safetensors, read by
tests/test_demo_meaning.c (sdrt's output must equal these for the same seed).

Run from the repository root with the reference venv after `make vocab`:
    .venv/bin/python tests/reference/gen_demo_goldens.py

Pipelines and schedulers exactly as gen_pipeline_goldens.py (CPU, float32,
torch.Generator("cpu").manual_seed(seed), sdrt's class-default timestep spacing,
the tokenizer built from build/vocab). Cases (name, mode, sampler, steps, size,
cfg, prompt, negative, strength, seed) are in the metadata "cases" and repeated
in the C test. Per case <c>.latents [1, 4, 8, 8] (UNet space) and <c>.image
[1, 3, 32, 32] (clamp(decode/2 + 0.5, 0, 1)); input init_image [3, 32, 32] in
[-1, 1]: a scene drawn by train_demo.scene ("a red circle on a white
background", rng seed 7), as the img2img pipeline preprocesses it.

    .venv/bin/python tests/reference/gen_demo_goldens.py --docs build/sdrt
instead writes the README's pictures from sdrt's own output (CPU, f32, Euler a 20
steps, CFG 7.5, 32x32, enlarged 4x with nearest-neighbour): docs/img/demo.png (one
prompt, seed 42) and docs/img/demo-grid.png (the 36 grid prompts, seeds 1000 + i,
as tests/test_demo_meaning.c runs them; rows red, green, blue, yellow; columns
circle, square, triangle x white, black, gray).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_io  # noqa: E402
import train_demo  # noqa: E402
from gen_pipeline_goldens import GZ, ROOT, make_scheduler  # noqa: E402  (also zeroes baddbmm's input)

OUT = os.path.join(ROOT, "tests/golden/demo.safetensors")
MODEL = os.path.join(ROOT, "tests/models/demo")

# name, mode, sampler, steps, size, cfg, prompt, negative, strength, seed
CASES = [
    ("t2i_euler_a", "txt2img", "Euler a", 20, 32, 7.5, "a blue triangle on a black background", "", 1.0, 42),
    ("t2i_dpmpp_2m_neg", "txt2img", "DPM++ 2M", 12, 32, 5.0, "a yellow square on a gray background",
     "a red circle on a white background", 1.0, 43),
    ("i2i_euler_a_s075", "img2img", "Euler a", 20, 32, 7.5, "a green square on a black background", "", 0.75, 44),
]


def init_scene():
    return PIL.Image.fromarray(train_demo.scene("red", "circle", "white", np.random.default_rng(7)), "RGB")


def sdrt_image(sdrt, prompt, seed, path):
    subprocess.run([sdrt, "txt2img", "--model", MODEL, "--prompt", prompt, "--width", "32", "--height", "32",
                    "--steps", "20", "--sampler", "Euler a", "--cfg-scale", "7.5", "--seed", str(seed),
                    "--precision", "f32", "--quiet", "--output", path], check=True)
    return np.asarray(PIL.Image.open(path).convert("RGB"))


def docs(sdrt):
    d = os.path.join(ROOT, "docs/img")
    os.makedirs(d, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sdrt-demo-docs-")
    try:
        one = sdrt_image(sdrt, "a blue triangle on a black background", 42, os.path.join(tmp, "one.png"))
        tiles = [sdrt_image(sdrt, train_demo.caption(*c), 1000 + i, os.path.join(tmp, f"{i}.png"))
                 for i, c in enumerate(train_demo.grid())]
    finally:
        shutil.rmtree(tmp)
    big = lambda a: PIL.Image.fromarray(a).resize((a.shape[1] * 4, a.shape[0] * 4), PIL.Image.NEAREST)
    big(one).save(os.path.join(d, "demo.png"), optimize=True)
    rows = [np.concatenate(tiles[r * 9:(r + 1) * 9], axis=1) for r in range(4)]
    big(np.concatenate(rows, axis=0)).save(os.path.join(d, "demo-grid.png"), optimize=True)
    print("wrote docs/img/demo.png, docs/img/demo-grid.png")


def main():
    torch.set_num_threads(1)
    if len(sys.argv) == 3 and sys.argv[1] == "--docs":
        return docs(sys.argv[2])
    if not os.path.exists(GZ):
        sys.exit(f"{GZ} is missing: run `make vocab`")
    out, meta = {}, []
    tmp = tempfile.mkdtemp(prefix="sdrt-demo-")
    try:
        tok = train_demo.tokenizer(tmp)
        base = StableDiffusionPipeline.from_pretrained(MODEL, tokenizer=tok, safety_checker=None,
                                                       feature_extractor=None, requires_safety_checker=False,
                                                       torch_dtype=torch.float32)
        for name, mode, sampler, steps, size, cfg, prompt, neg, strength, seed in CASES:
            comps = dict(base.components)
            comps["scheduler"] = make_scheduler(base, sampler, "epsilon")
            pipe = (StableDiffusionPipeline if mode == "txt2img" else StableDiffusionImg2ImgPipeline)(**comps)
            pipe.set_progress_bar_config(disable=True)
            kw = dict(prompt=prompt, negative_prompt=neg or None, num_inference_steps=steps, guidance_scale=cfg)
            if mode == "txt2img":
                kw.update(height=size, width=size)
            else:
                img = init_scene()
                kw.update(image=img, strength=strength)
                out["init_image"] = pipe.image_processor.preprocess(img, height=size, width=size)[0].float()
            with torch.no_grad():
                lat = pipe(**kw, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
                dec = pipe.vae.decode(lat / pipe.vae.config.scaling_factor).sample
                img = (dec / 2 + 0.5).clamp(0, 1)
            out[f"{name}.latents"] = lat.float().contiguous()
            out[f"{name}.image"] = img.float().contiguous()
            meta.append(dict(name=name, mode=mode, sampler=sampler, steps=steps, width=size, height=size, cfg=cfg,
                             prompt=prompt, negative=neg, strength=strength, seed=seed))
            PIL.Image.fromarray((img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
                os.path.join(tmp, name + ".png"))
            print(f"{name}: latents |max| {lat.abs().max():.3f}")
    finally:
        shutil.rmtree(tmp)
    model_io.save_golden(OUT, out, "diffusers generations with the demo model",
                         {"generator": "tests/reference/gen_demo_goldens.py", "cases": json.dumps(meta)})
    print("wrote", OUT, len(out), "tensors,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
