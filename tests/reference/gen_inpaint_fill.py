"""gen_inpaint_fill.py - A1111's masking.fill done with PIL, and torch.randn
latent noise -> tests/golden/inpaint_fill.bin.

Run from the repository root with the reference venv:
    python tests/reference/gen_inpaint_fill.py
Entries:
  image   [3, H, W] f32 in [-1, 1]: the input (u8 / 127.5 - 1)
  mask    [H, W] f32, 1 = repaint (a rectangle and a disc, binary)
  filled  [3, H, W] f32: A1111's masking.fill (modules/masking.py) on the u8
          image with PIL: the RGBa image pasted through the inverted mask,
          GaussianBlur at radii 256, 64, 16 (x2), 4 (x4), 2 (x2), 0, each
          converted to RGBA and alpha_composite'd onto a transparent image
  noise_seed<S>  torch.randn((4, 6, 5), generator seeded S): A1111's
          create_random_tensors for a [4, 6, 5] latent (latent noise)
"""
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import write_golden  # noqa: E402

H, W = 40, 48


def a1111_fill(image, mask):
    image_mod = Image.new("RGBA", (image.width, image.height))
    image_masked = Image.new("RGBa", (image.width, image.height))
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    image_masked = image_masked.convert("RGBa")
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = image_masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            image_mod.alpha_composite(blurred)
    return image_mod.convert("RGB")


def main():
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([(xx * 255 // (W - 1)), (yy * 255 // (H - 1)), ((xx * 7 + yy * 13) % 256)], axis=-1).astype(np.uint8)
    m = np.zeros((H, W), np.uint8)
    m[8:24, 10:30] = 255
    m[((yy - 30) ** 2 + (xx - 38) ** 2) <= 36] = 255
    filled = np.asarray(a1111_fill(Image.fromarray(rgb, "RGB"), Image.fromarray(m, "L")), dtype=np.float32)
    out = {
        "image": (rgb.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1).copy(),
        "mask": (m / 255.0).astype(np.float32),
        "filled": (filled / 127.5 - 1).transpose(2, 0, 1).copy(),
    }
    for s in (7, 8):
        out[f"noise_seed{s}"] = torch.randn((4, 6, 5), generator=torch.Generator("cpu").manual_seed(s)).numpy()
    write_golden("tests/golden/inpaint_fill.bin", out)


if __name__ == "__main__":
    main()
