"""gen_demo_lora_goldens.py - diffusers generations with the demo model and the demo
LoRA (tests/models/demo-lora/orange.safetensors, train_demo_lora.py), loaded with
diffusers' load_lora_weights (kohya keys) and fused at the case's multiplier
-> tests/golden/demo_lora.safetensors, read by tests/test_demo_lora.c (sdrt with
`<lora:orange:M>` in the prompt must equal these for the same seed).

Run from the repository root with the reference venv after `make vocab`:
    .venv/bin/python tests/reference/gen_demo_lora_goldens.py

Pipelines and schedulers as gen_demo_goldens.py (CPU, float32,
torch.Generator("cpu").manual_seed(seed)). Cases (name, sampler, steps, cfg,
prompt, multiplier, seed) are in the metadata "cases" and repeated in the C test;
per case <c>.latents [1, 4, 8, 8] (UNet space) and <c>.image [1, 3, 32, 32]
(clamp(decode/2 + 0.5, 0, 1)).

    .venv/bin/python tests/reference/gen_demo_lora_goldens.py --docs build/sdrt
instead writes docs/img/demo-lora.png from sdrt's own output (CPU, f32, Euler a 20
steps, CFG 7.5, 32x32, enlarged 4x): the 9 prompts "a orange {circle, square,
triangle} on a {white, black, gray} background", seeds 2000 + 2i, without the LoRA
(top row) and with `<lora:orange:1>` (bottom row).
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import PIL.Image
import subprocess
import torch
from diffusers import StableDiffusionPipeline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_io  # noqa: E402
import train_demo  # noqa: E402
from gen_pipeline_goldens import GZ, ROOT, make_scheduler  # noqa: E402  (also zeroes baddbmm's input)

OUT = os.path.join(ROOT, "tests/golden/demo_lora.safetensors")
MODEL = os.path.join(ROOT, "tests/models/demo")
LORA_DIR = os.path.join(ROOT, "tests/models/demo-lora")

# name, sampler, steps, cfg, prompt, multiplier, seed
CASES = [
    ("orange_m1", "Euler a", 20, 7.5, "a orange square on a black background", 1.0, 42),
    ("orange_m06_dpmpp", "DPM++ 2M", 12, 5.0, "a orange triangle on a white background", 0.6, 43),
]


def docs(sdrt):
    tmp = tempfile.mkdtemp(prefix="sdrt-demo-lora-docs-")
    rows = []
    try:
        for tag in ("", " <lora:orange:1>"):
            row = []
            for i, (s, b) in enumerate((s, b) for s in train_demo.SHAPES for b in train_demo.BACKGROUNDS):
                path = os.path.join(tmp, f"{i}.png")
                subprocess.run([sdrt, "txt2img", "--model", MODEL, "--lora-dir", LORA_DIR, "--prompt",
                                f"a orange {s} on a {b} background{tag}", "--width", "32", "--height", "32",
                                "--steps", "20", "--sampler", "Euler a", "--cfg-scale", "7.5", "--seed", str(2000 + 2 * i),
                                "--precision", "f32", "--quiet", "--output", path], check=True)
                row.append(np.asarray(PIL.Image.open(path).convert("RGB")))
            rows.append(np.concatenate(row, axis=1))
    finally:
        shutil.rmtree(tmp)
    a = np.concatenate(rows, axis=0)
    out = os.path.join(ROOT, "docs/img/demo-lora.png")
    PIL.Image.fromarray(a).resize((a.shape[1] * 4, a.shape[0] * 4), PIL.Image.NEAREST).save(out, optimize=True)
    print("wrote", out)


def main():
    torch.set_num_threads(1)
    if len(sys.argv) == 3 and sys.argv[1] == "--docs":
        return docs(sys.argv[2])
    if not os.path.exists(GZ):
        sys.exit(f"{GZ} is missing: run `make vocab`")
    out, meta = {}, []
    tmp = tempfile.mkdtemp(prefix="sdrt-demo-lora-")
    try:
        tok = train_demo.tokenizer(tmp)
        for name, sampler, steps, cfg, prompt, mult, seed in CASES:
            pipe = StableDiffusionPipeline.from_pretrained(MODEL, tokenizer=tok, safety_checker=None,
                                                           feature_extractor=None, requires_safety_checker=False,
                                                           torch_dtype=torch.float32)
            pipe.scheduler = make_scheduler(pipe, sampler, "epsilon")
            pipe.set_progress_bar_config(disable=True)
            pipe.load_lora_weights(LORA_DIR, weight_name="orange.safetensors", adapter_name="orange")
            pipe.fuse_lora(lora_scale=mult, adapter_names=["orange"])
            with torch.no_grad():
                lat = pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=cfg, height=32, width=32,
                           generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
                dec = pipe.vae.decode(lat / pipe.vae.config.scaling_factor).sample
                img = (dec / 2 + 0.5).clamp(0, 1)
            out[f"{name}.latents"] = lat.float().contiguous()
            out[f"{name}.image"] = img.float().contiguous()
            meta.append(dict(name=name, sampler=sampler, steps=steps, cfg=cfg, prompt=prompt, multiplier=mult,
                             seed=seed))
            print(f"{name}: latents |max| {lat.abs().max():.3f}")
    finally:
        shutil.rmtree(tmp)
    model_io.save_golden(OUT, out, "diffusers generations with the demo model and the demo LoRA (fused)",
                         {"generator": "tests/reference/gen_demo_lora_goldens.py", "cases": json.dumps(meta)})
    print("wrote", OUT, len(out), "tensors,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
