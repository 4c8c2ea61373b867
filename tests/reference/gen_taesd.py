#!/usr/bin/env python3
"""gen_taesd.py: TAESD (diffusers AutoencoderTiny) test models and goldens (issue 13 item 7).

Run from the repository root:
    .venv/bin/python tests/reference/gen_taesd.py

Models (seeded random weights, exact in f16/bf16 via model_io.randomise):
  tests/models/tiny-taesd/            AutoencoderTiny folder (config.json +
                                      diffusion_pytorch_model.safetensors), width 8 in
                                      every block, the real block counts (encoder 1,3,3,3;
                                      decoder 3,3,3,1)
  tests/models/tiny-taesd-raw/        the same weights in the original layout:
                                      taesd_encoder.safetensors (`<k>.…` = encoder.layers.k)
                                      and taesd_decoder.safetensors (`<k>.…` =
                                      decoder.layers.(k-1); index 0 is the clamp)
  tests/models/taesd-decoder-f16.safetensors
                                      the real-size TAESD decoder (width 64, default
                                      AutoencoderTiny config), original layout, F16
Goldens -> tests/golden/taesd.safetensors (float32):
  tiny.decode.latents [1,4,9,7] (UNet-space latents, std 2.5 so the tanh clamp matters),
  tiny.decode.image = AutoencoderTiny.decode(latents).sample (in [-1, 1]);
  tiny.encode.image [1,3,48,40] in [-1, 1], tiny.encode.latents = encode(image).latents;
  full.decode.latents [1,4,32,32], full.decode.image (the real-size decoder).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_io  # noqa: E402

from diffusers import AutoencoderTiny  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "tests/models")
GOLDEN = os.path.join(ROOT, "tests/golden/taesd.safetensors")
TINY = dict(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8))


def raw(sd, part):
    out = {}
    for k, v in sd.items():
        pre = f"{part}.layers."
        if k.startswith(pre):
            i, rest = k[len(pre):].split(".", 1)
            out[f"{int(i) + (part == 'decoder')}.{rest}"] = v.contiguous()
    return out


@torch.no_grad()
def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(1307)
    tiny = model_io.randomise(AutoencoderTiny(**TINY), 1305).eval()
    d = os.path.join(MODELS, "tiny-taesd")
    tiny.save_pretrained(d, safe_serialization=True)
    sd = tiny.state_dict()
    rd = os.path.join(MODELS, "tiny-taesd-raw")
    os.makedirs(rd, exist_ok=True)
    for part in ("encoder", "decoder"):
        model_io.save_tensors(os.path.join(rd, f"taesd_{part}.safetensors"), raw(sd, part))
    lat = torch.randn(1, 4, 9, 7, generator=g) * 2.5
    img = torch.rand(1, 3, 48, 40, generator=g) * 2 - 1
    out = {"tiny.decode.latents": lat, "tiny.decode.image": tiny.decode(lat).sample,
           "tiny.encode.image": img, "tiny.encode.latents": tiny.encode(img).latents}
    # The original taesd.py decoder = Clamp + layers, output in [0, 1]: AutoencoderTiny maps it to 2y - 1.
    y = tiny.decoder.layers(torch.tanh(lat / 3) * 3)
    assert torch.allclose(out["tiny.decode.image"], y * 2 - 1, atol=1e-6)
    full = model_io.randomise(AutoencoderTiny(), 1306).eval()
    model_io.save_tensors(os.path.join(MODELS, "taesd-decoder-f16.safetensors"), raw(full.state_dict(), "decoder"),
                          float_dtype=torch.float16)
    flat = torch.randn(1, 4, 32, 32, generator=g) * 2.5
    out.update({"full.decode.latents": flat, "full.decode.image": full.decode(flat).sample})
    model_io.save_golden(GOLDEN, out, "diffusers AutoencoderTiny decode/encode (tiny and real-size random TAESD)")
    for p in (d, rd):
        for f in sorted(os.listdir(p)):
            print(os.path.join(p, f), os.path.getsize(os.path.join(p, f)))
    print(GOLDEN, os.path.getsize(GOLDEN))


if __name__ == "__main__":
    main()
