#!/usr/bin/env python3
"""gen_tiling.py: goldens for VAE tiling (issue 13 item 6) -> tests/golden/vae_tiling.safetensors.

Run from the repository root (needs tests/models/tiny-sd1, written by gen_tiny.py):
    .venv/bin/python tests/reference/gen_tiling.py

The tiny-sd1 VAE (4 levels, factor 8) has sample_size 64, so diffusers' enable_tiling()
uses 64-pixel / 8-latent tiles with overlap factor 0.25 (stride 48 px / 6 latents, blend
16 px / 2 latents). The inputs below are large enough for several tiles along each side,
with narrow edge tiles, and non-square:
  decode: latent [1, 4, 20, 15] -> 4 x 3 tiles (rows start 0, 6, 12, 18; cols 0, 6, 12)
  encode: image [1, 3, 152, 112] -> 4 x 3 tiles (rows start 0, 48, 96, 144; cols 0, 48, 96)
Tensors (float32): decode.z (decoder input, already / scaling), decode.image (tiled),
encode.image (in [-1, 1]), encode.moments (tiled quant_conv(encoder) moments, blended
as diffusers blends them). The script checks that tiling changes both results (by >1e-3:
a tiled implementation that fell back to the untiled VAE would fail the C test).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_io  # noqa: E402

from diffusers import AutoencoderKL  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests/golden/vae_tiling.safetensors")


@torch.no_grad()
def main():
    vae = AutoencoderKL.from_pretrained(os.path.join(ROOT, "tests/models/tiny-sd1/vae")).eval()
    assert vae.tile_sample_min_size == 64 and vae.tile_latent_min_size == 8
    g = torch.Generator().manual_seed(1301)
    z = torch.randn(1, 4, 20, 15, generator=g) / vae.config.scaling_factor
    img = torch.rand(1, 3, 152, 112, generator=g) * 2 - 1
    untiled_dec = vae.decode(z).sample
    untiled_enc = vae._encode(img)
    vae.enable_tiling()
    tiled_dec = vae.decode(z).sample
    tiled_enc = vae._encode(img)
    # diffusers' public encode path goes through _encode -> _tiled_encode; check it is what we store
    assert torch.equal(vae.encode(img).latent_dist.mean, tiled_enc[:, :4])
    for what, a, b in (("decode", tiled_dec, untiled_dec), ("encode", tiled_enc, untiled_enc)):
        d = (a - b).abs().max().item()
        print(f"{what}: tiled vs untiled max abs diff {d:.3g}")
        assert d > 1e-3, "tiling must change the result for this test to mean anything"
    model_io.save_golden(OUT, {"decode.z": z, "decode.image": tiled_dec, "encode.image": img,
                               "encode.moments": tiled_enc},
                         "diffusers AutoencoderKL.enable_tiling() decode/encode of the tiny-sd1 VAE")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
