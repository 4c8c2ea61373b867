#!/usr/bin/env python3
"""gen_full_vae.py: only the VAE of the full-size SD 1.5 random checkpoint (the same
weights gen_full.py --model sd15 makes: AutoencoderKL with the SD 1.5 config, seed
1500 + 3), as a diffusers folder models/sd15-vae-random/ (~335 MB f32; gitignored,
never committed) for the VAE benchmarks (bench/bench_vae.c, docs/benchmarks.md).

The folder's unet/, text_encoder/, tokenizer/, scheduler/ and model_index.json are
symlinks to tests/models/tiny-sd1 (same 4-channel latent space), so the sdrt loader
accepts it as a pipeline; only the VAE is full size.

    nice -n 10 .venv/bin/python tests/reference/gen_full_vae.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_full  # noqa: E402
import model_io  # noqa: E402

from diffusers import AutoencoderKL  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    torch.set_num_threads(2)
    d = os.path.join(ROOT, "models/sd15-vae-random")
    os.makedirs(d, exist_ok=True)
    vae = model_io.randomise(AutoencoderKL(**gen_full.VAE), gen_full.MODELS["sd15"]["seed"] + 3).eval()
    vae.save_pretrained(os.path.join(d, "vae"), safe_serialization=True)
    tiny = os.path.join(ROOT, "tests/models/tiny-sd1")
    for name in ("unet", "text_encoder", "tokenizer", "scheduler", "model_index.json"):
        link = os.path.join(d, name)
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(os.path.join(tiny, name), d), link)
    print("wrote", d, sum(p.numel() for p in vae.parameters()), "parameters")


if __name__ == "__main__":
    main()
