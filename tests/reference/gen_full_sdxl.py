#!/usr/bin/env python3
"""gen_full_sdxl.py: a full-size SDXL-base-architecture checkpoint with seeded random
weights (SGM single file, f16) plus full-size goldens, written to models/ (gitignored:
never commit these).

Architecture: stabilityai/stable-diffusion-xl-base-1.0's configs (CLIP ViT-L 12 layers;
OpenCLIP bigG 32 layers, 1280 wide, 20 heads, gelu, projection 1280; UNet
[320, 640, 1280], transformer depth [1, 2, 10], 2048-wide context, text_time
add_embedding 2816 -> 1280; VAE with scaling 0.13025). Weights f16-exact (model_io).
Goldens use the names of tests/golden/sdxl.safetensors (tests/sdxl_parity.h reads
both): te1/te2 input_ids, penultimate states, te2 text_embeds for "" and "a photo of a
cat"; unet.a (16x16 latents, CFG pair at t 981) and unet.b (12x10, t 1 and 500.5) with
their contexts, pooled text and time ids; vae.decode (32x32 latents -> 256x256) and
vae.encode (256x256). Components are built, evaluated in float32 and cast to f16 one at
a time to bound memory (peak ~ the f32 UNet, 10.3 GB). Run from the repo root:
    .venv/bin/python tests/reference/gen_full_sdxl.py [--smoke]
Then: build/tests/parity_full_sdxl models/sdxl-random-f16.safetensors
models/sdxl-random-golden.safetensors. Reference tooling only.
"""

import argparse
import gc
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tiny_sdxl as tiny  # noqa: E402  (SGM key mapping, attention fix, token ids)
import ldm_keys  # noqa: E402
import model_io  # noqa: E402

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

SCALE = 0.13025
TE1 = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
           hidden_act="quick_gelu", projection_dim=768)
TE2 = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
           hidden_act="gelu", projection_dim=1280)
UNET = dict(sample_size=128, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            block_out_channels=[320, 640, 1280], layers_per_block=2, downsample_padding=1,
            mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
            cross_attention_dim=2048, transformer_layers_per_block=[1, 2, 10],
            attention_head_dim=[5, 10, 20], use_linear_projection=True, upcast_attention=False,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
VAE = dict(tiny.VAE, block_out_channels=[128, 256, 512, 512], norm_num_groups=32, sample_size=1024)
SEED = 3000


def smoke():
    """Same code path at small widths (seconds), for testing this script; the widths keep
    SDXL's 64-wide heads and 32 GroupNorm groups so that sdrt loads it without a config."""
    te1 = dict(TE1, hidden_size=128, intermediate_size=256, num_attention_heads=2, num_hidden_layers=3,
               projection_dim=128)
    te2 = dict(TE2, hidden_size=128, intermediate_size=256, num_attention_heads=2, num_hidden_layers=3,
               projection_dim=128)
    unet = dict(UNET, block_out_channels=[64, 128, 128], cross_attention_dim=256,
                transformer_layers_per_block=[1, 1, 2], attention_head_dim=[1, 2, 2],
                projection_class_embeddings_input_dim=128 + 6 * 256)
    vae = dict(VAE, block_out_channels=[32, 32, 64, 64])
    return te1, te2, unet, vae


def log(msg, t0=[time.time()]):
    print(f"[{time.time() - t0[0]:7.1f}s] {msg}", flush=True)


def cfg(spec):
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, bos_token_id=0,
                          eos_token_id=2, pad_token_id=1, **spec)


def half(sd):
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    te1_spec, te2_spec, unet_spec, vae_spec = smoke() if args.smoke else (TE1, TE2, UNET, VAE)
    name = "sdxl-random" + ("-smoke" if args.smoke else "")
    golden, tensors, params = {}, {}, {}
    rows = [[49406, 49407], [49406, 320, 1125, 539, 320, 2368, 49407]]  # "", "a photo of a cat"

    def ids(pad):
        return torch.tensor([r + [pad] * (77 - len(r)) for r in rows], dtype=torch.int64)

    torch.manual_seed(0)
    te1 = model_io.randomise(CLIPTextModel(cfg(te1_spec)), SEED + 1).eval()
    o1 = te1(input_ids=ids(49407), output_hidden_states=True)
    golden.update({"te1.input_ids": ids(49407).to(torch.int32), "te1.penultimate": o1.hidden_states[-2]})
    t1 = ldm_keys.sd1_clip_to_ldm(tiny.text_tensors(te1))
    tensors.update(half({tiny.SGM_TE1 + k[len(ldm_keys.SD1_CLIP_PREFIX):]: v for k, v in t1.items()}))
    params["te1"] = sum(p.numel() for p in te1.parameters())
    del te1, t1
    log(f"text encoder 1: {params['te1']} parameters")

    torch.manual_seed(0)
    te2 = model_io.randomise(CLIPTextModelWithProjection(cfg(te2_spec)), SEED + 2).eval()
    o2 = te2(input_ids=ids(0), output_hidden_states=True)
    golden.update({"te2.input_ids": ids(0).to(torch.int32), "te2.penultimate": o2.hidden_states[-2],
                   "te2.text_embeds": o2.text_embeds})
    tensors.update(half(tiny.bigg_openclip(te2)))
    params["te2"] = sum(p.numel() for p in te2.parameters())
    del te2
    gc.collect()
    log(f"text encoder 2: {params['te2']} parameters")

    ctx = torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1)
    pooled = o2.text_embeds
    torch.manual_seed(0)
    unet = model_io.randomise(UNet2DConditionModel(**unet_spec), SEED + 3).eval()
    params["unet"] = sum(p.numel() for p in unet.parameters())
    log(f"unet built: {params['unet']} parameters")
    g = torch.Generator().manual_seed(SEED + 10)
    cases = {"a": ((16, 16), [981.0, 981.0], [[1024, 1024, 0, 0, 1024, 1024]] * 2),
             "b": ((12, 10), [1.0, 500.5], [[96, 80, 0, 0, 96, 80], [1024, 768, 16, 8, 96, 80]])}
    for c, ((h, w), ts, tid) in cases.items():
        x = torch.randn(2, 4, h, w, generator=g)
        t = torch.tensor(ts)
        time_ids = torch.tensor(tid, dtype=torch.float32)
        y = unet(x, t, encoder_hidden_states=ctx,
                 added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        golden.update({f"unet.{c}.sample": x, f"unet.{c}.timestep": t, f"unet.{c}.context": ctx.clone(),
                       f"unet.{c}.text_embeds": pooled.clone(), f"unet.{c}.time_ids": time_ids,
                       f"unet.{c}.out": y})
        log(f"unet case {c} ({h}x{w}) evaluated")
    unet.half()  # in place, one tensor at a time: never the f32 and f16 UNet at once
    usd = dict(unet.state_dict())
    label = {f"{ldm_keys.UNET_PREFIX}label_emb.0.{i}.{s}": usd.pop(f"add_embedding.linear_{j}.{s}")
             for i, j in ((0, 1), (2, 2)) for s in ("weight", "bias")}
    tensors.update({**ldm_keys.unet_to_ldm(usd, unet.config), **label})
    del unet, usd, label
    gc.collect()

    torch.manual_seed(0)
    vae = model_io.randomise(AutoencoderKL(**vae_spec), SEED + 4).eval()
    params["vae"] = sum(p.numel() for p in vae.parameters())
    latent = torch.randn(1, 4, 32, 32, generator=g)
    img = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
    golden.update({"vae.decode.latent": latent, "vae.decode.image": vae.decode(latent / SCALE).sample,
                   "vae.encode.image": img, "vae.encode.moments": vae.quant_conv(vae.encoder(img))})
    tensors.update(half(ldm_keys.vae_to_ldm(vae.state_dict(), vae.config)))
    del vae
    log(f"vae: {params['vae']} parameters")
    for k, v in golden.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise RuntimeError(f"golden {k} is not finite")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{name}-f16.safetensors")
    model_io.save_tensors(path, tensors, {"sdrt_note": "random-weight SDXL model (tests/reference/gen_full_sdxl.py)"})
    log(f"wrote {path} ({os.path.getsize(path) / 2**30:.2f} GiB); parameters (diffusers): {params}")
    gpath = os.path.join(args.out, f"{name}-golden.safetensors")
    model_io.save_golden(gpath, golden, f"{name} full-size goldens",
                         {"generator": "tests/reference/gen_full_sdxl.py", "scaling_factor": str(SCALE),
                          "parameters": repr(params)})
    log(f"wrote {gpath}")


if __name__ == "__main__":
    main()
