"""gen_lora_full.py - a full-size SD 1.5 kohya LoCon file (rank 64, alpha 32,
f16, random) with the module list kohya-ss' LoRANetwork builds, for the
LoRA bench and the matched-key report -> models/sd15-lora-r64.safetensors
(gitignored: never commit).

Targets, as kohya networks/lora.py (conv_dim given, i.e. LoCon): every
Linear and Conv2d inside Transformer2DModel, ResnetBlock2D, Downsample2D and
Upsample2D of the SD 1.5 UNet (diffusers module paths), and every Linear of
CLIPAttention / CLIPMLP of the ViT-L text encoder; names
"lora_unet_" / "lora_te_" + path with '.' -> '_'. The models are built on
empty weights (accelerate), so nothing full-size is allocated. Run with the
reference venv and peft/accelerate beside it (see gen_lora.py):
    PYTHONPATH=/tmp/lora-pylib .venv/bin/python tests/reference/gen_lora_full.py
"""
import os
import sys

import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "models/sd15-lora-r64.safetensors")
RANK, ALPHA = 64, 32.0

UNET_TARGETS = ("Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D")
TE_TARGETS = ("CLIPAttention", "CLIPMLP")


def modules(root, prefix, classes):
    out = []
    for name, m in root.named_modules():
        if type(m).__name__ not in classes:
            continue
        for cn, c in m.named_modules():
            if isinstance(c, (torch.nn.Linear, torch.nn.Conv2d)) and cn:
                out.append((prefix + (name + "." + cn).replace(".", "_"), c))
    return out


def main():
    with init_empty_weights():
        unet = UNet2DConditionModel(
            down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, cross_attention_dim=768,
            attention_head_dim=8, sample_size=64)
        te = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                          num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768))
    mods = modules(unet, "lora_unet_", UNET_TARGETS) + modules(te, "lora_te_", TE_TARGETS)
    g = torch.Generator().manual_seed(64)
    sd = {}
    for k, m in mods:
        if isinstance(m, torch.nn.Conv2d):
            o, i, kh, kw = m.weight.shape
            down, up = torch.randn(RANK, i, kh, kw, generator=g), torch.randn(o, RANK, 1, 1, generator=g)
        else:
            o, i = m.weight.shape
            down, up = torch.randn(RANK, i, generator=g), torch.randn(o, RANK, generator=g)
        sd[k + ".lora_down.weight"] = (down * 0.01).half()
        sd[k + ".lora_up.weight"] = (up * 0.01).half()
        sd[k + ".alpha"] = torch.tensor(ALPHA).half()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(sd, OUT, {"ss_network_dim": str(RANK), "ss_network_alpha": str(ALPHA), "ss_output_name": "sd15_r64"})
    n_conv = sum(1 for _, m in mods if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    print(f"wrote {OUT}: {len(mods)} modules ({sum(1 for k, _ in mods if k.startswith('lora_te_'))} text encoder, "
          f"{sum(1 for k, _ in mods if k.startswith('lora_unet_'))} UNet, {n_conv} k x k convs), "
          f"{os.path.getsize(OUT) / 2**20:.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
