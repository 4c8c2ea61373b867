#!/usr/bin/env python3
"""gen_full.py: full-size SD1.5- and SD2.1-architecture checkpoints with seeded random
weights (LDM single-file .safetensors, f32 or f16; optionally a diffusers folder too)
plus full-size goldens (one CLIP encode, one UNet call at 64x64 latents batch 2, one
VAE decode), all written to models/ (gitignored: never commit these).

Contract: deterministic in (--model, seed); weights are f16/bf16-exact, so one golden
file serves the f32 and the f16 checkpoint. SD1.5 measured: 9.5 GB peak RSS, ~7 min
of CPU (reference BLAS), 14 min wall under load on 2 cores; SD2.1 is ~20% larger. Exits non-zero if the diffusers converters do not
map the written file back to exactly the generated weights. Run from the repo root:
    .venv/bin/python tests/reference/gen_full.py --model sd15 --dtype f16
File contents: tests/reference/README.md. Reference tooling only.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_keys  # noqa: E402
import model_io  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from diffusers.loaders import single_file_utils as sfu  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()

SCALE = 0.18215
DOWN = ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
UP = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
UNET_BASE = dict(in_channels=4, out_channels=4, down_block_types=DOWN, up_block_types=UP,
                 block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
                 downsample_padding=1, mid_block_scale_factor=1, act_fn="silu",
                 norm_num_groups=32, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0)
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
           layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32,
           sample_size=512, scaling_factor=SCALE)

# sd-reference 2.1, 3.1, 9.1. text_layers = layers stored in the checkpoint;
# used_layers = layers diffusers keeps (SD2 drops the last one).
MODELS = {
    "sd15": dict(
        text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                  hidden_act="quick_gelu", projection_dim=768),
        text_layers=12, used_layers=12, pad=49407,
        unet=dict(UNET_BASE, sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                  use_linear_projection=False, upcast_attention=False),
        scheduler=model_io.SCHEDULER_SD15, pad_token="<|endoftext|>", seed=1500),
    "sd21": dict(
        text=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                  hidden_act="gelu", projection_dim=1024),
        text_layers=24, used_layers=23, pad=0,
        unet=dict(UNET_BASE, sample_size=96, cross_attention_dim=1024,
                  attention_head_dim=[5, 10, 20, 20], use_linear_projection=True,
                  upcast_attention=True),
        scheduler=model_io.SCHEDULER_SD21, pad_token="!", seed=2100),
}


def smoke(spec):
    """Same code path at small widths (seconds instead of minutes), for testing this
    script: --smoke. Not a model anyone should use."""
    s = dict(spec)
    s["text"] = dict(spec["text"], hidden_size=64, intermediate_size=256, num_attention_heads=2,
                     projection_dim=64)
    s["text_layers"] = 2 + spec["text_layers"] - spec["used_layers"]
    s["used_layers"] = 2
    heads = 2 if isinstance(spec["unet"]["attention_head_dim"], int) else [1, 2, 4, 4]
    s["unet"] = dict(spec["unet"], block_out_channels=[32, 32, 64, 64], norm_num_groups=8,
                     cross_attention_dim=64, attention_head_dim=heads)
    s["vae"] = dict(VAE, block_out_channels=[16, 16, 32, 32], norm_num_groups=8)
    return s


def log(msg, t0=[time.time()]):
    print(f"[{time.time() - t0[0]:7.1f}s] {msg}", flush=True)


def clip_config(spec, layers):
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5,
                          num_hidden_layers=layers, bos_token_id=0, eos_token_id=2,
                          pad_token_id=1, **spec["text"])


def token_ids(pad):
    rows = [[49406, 49407], [49406, 320, 1125, 539, 320, 2368, 49407]]  # "", "a photo of a cat"
    return torch.tensor([r + [pad] * (77 - len(r)) for r in rows], dtype=torch.int64)


@torch.no_grad()
def text_part(spec, golden):
    """Text encoder with all stored layers; returns its LDM tensors. The golden uses
    the layers diffusers keeps (SD2: final_layer_norm after layer 23 of 24)."""
    torch.manual_seed(0)
    text = model_io.randomise(CLIPTextModel(clip_config(spec, spec["text_layers"])),
                              spec["seed"] + 1).eval()
    sd = {k: v for k, v in text.state_dict().items()}
    if spec["used_layers"] < spec["text_layers"]:
        text.text_model.encoder.layers = text.text_model.encoder.layers[:spec["used_layers"]]
        text.config.num_hidden_layers = spec["used_layers"]
    ids = token_ids(spec["pad"])
    out = text(input_ids=ids)
    golden.update({"clip.input_ids": ids.to(torch.int32),
                   "clip.last_hidden_state": out.last_hidden_state})
    if spec["pad"] == 0:
        g = torch.Generator().manual_seed(spec["seed"] + 4)
        d = spec["text"]["hidden_size"]
        proj = model_io.round_exact(torch.randn(d, d, generator=g) / d ** 0.5)
        ldm = ldm_keys.sd2_clip_to_openclip(sd, spec["text_layers"], proj,
                                            torch.tensor(2.6592600345611572))
    else:
        ldm = ldm_keys.sd1_clip_to_ldm(sd)
    return text, ldm, out.last_hidden_state


@torch.no_grad()
def unet_part(spec, context, golden):
    torch.manual_seed(0)
    unet = model_io.randomise(UNet2DConditionModel(**spec["unet"]), spec["seed"] + 2).eval()
    g = torch.Generator().manual_seed(spec["seed"] + 10)
    x = torch.randn(2, 4, 64, 64, generator=g)
    t = torch.tensor([981.0, 981.0])
    golden.update({"unet.sample": x, "unet.timestep": t, "unet.context": context,
                   "unet.out": unet(x, t, encoder_hidden_states=context).sample})
    return unet


@torch.no_grad()
def vae_part(spec, golden):
    torch.manual_seed(0)
    vae = model_io.randomise(AutoencoderKL(**spec.get("vae", VAE)), spec["seed"] + 3).eval()
    g = torch.Generator().manual_seed(spec["seed"] + 11)
    latent = torch.randn(1, 4, 64, 64, generator=g)
    golden.update({"vae.latent": latent, "vae.z": latent / SCALE,
                   "vae.image": vae.decode(latent / SCALE).sample})
    return vae


def verify(path, spec, text, unet, vae):
    """diffusers' own converters map the file back to exactly our weights."""
    with safe_open(path, "pt") as f:
        def part(prefix):
            out = {}
            for k in f.keys():
                if k.startswith(prefix):
                    t = f.get_tensor(k)
                    out[k] = t.float() if t.is_floating_point() else t
            return out
        for conv, model, prefix in (
                (lambda c: sfu.convert_ldm_unet_checkpoint(c, unet.config), unet, ldm_keys.UNET_PREFIX),
                (lambda c: sfu.convert_ldm_vae_checkpoint(c, vae.config), vae, ldm_keys.VAE_PREFIX)):
            got = conv(part(prefix))
            want = model.state_dict()
            if got.keys() != want.keys() or any(not torch.equal(got[k], want[k]) for k in want):
                raise RuntimeError(f"{path}: {prefix} does not map back to the generated weights")
            del got
        if spec["pad"] == 0:
            got = sfu.convert_open_clip_checkpoint(text, part(ldm_keys.SD2_CLIP_PREFIX))
            got.pop("text_projection.weight", None)
            extra = f"text_model.encoder.layers.{spec['used_layers']}."
            got = {k: v for k, v in got.items() if not k.startswith(extra)}
        else:
            got = sfu.convert_ldm_clip_checkpoint(part(ldm_keys.SD1_CLIP_PREFIX))
            got.pop("text_model.embeddings.position_ids")
        want = text.state_dict()  # SD2: already cut to the used layers
        if got.keys() != want.keys() or any(not torch.equal(got[k], want[k]) for k in want):
            raise RuntimeError(f"{path}: text encoder does not map back to the generated weights")


def write_folder(d, spec, text, unet, vae, dtype):
    for sub, comp in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        comp.to(dtype).save_pretrained(os.path.join(d, sub), safe_serialization=True)
        comp.to(torch.float32)
    model_io.write_pipeline_meta(d, spec["scheduler"], spec["pad_token"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="sd15")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f16")
    ap.add_argument("--out", default="models")
    ap.add_argument("--folder", action="store_true", help="also write a diffusers folder")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="small widths: test this script quickly")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = smoke(MODELS[args.model]) if args.smoke else MODELS[args.model]
    dtype = torch.float16 if args.dtype == "f16" else torch.float32
    name = f"{args.model}-random" + ("-smoke" if args.smoke else "")
    golden = {}

    text, text_ldm, context = text_part(spec, golden)
    log(f"text encoder built and evaluated ({sum(p.numel() for p in text.parameters())} params used)")
    unet = unet_part(spec, context, golden)
    log(f"unet built and evaluated ({sum(p.numel() for p in unet.parameters())} params)")
    vae = vae_part(spec, golden)
    log(f"vae built and evaluated ({sum(p.numel() for p in vae.parameters())} params)")
    for k, v in golden.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise RuntimeError(f"golden {k} is not finite")

    ldm = {**ldm_keys.unet_to_ldm(unet.state_dict(), unet.config),
           **ldm_keys.vae_to_ldm(vae.state_dict(), vae.config), **text_ldm}
    if args.model == "sd15":
        ldm.update(model_io.schedule_buffers())
    path = os.path.join(args.out, f"{name}-{args.dtype}.safetensors")
    model_io.save_tensors(path, ldm, {"sdrt_note": "random-weight SD model (tests/reference/gen_full.py)"},
                          float_dtype=dtype)
    del ldm, text_ldm
    log(f"wrote {path} ({os.path.getsize(path) / 2**30:.2f} GiB)")
    gpath = os.path.join(args.out, f"{name}-golden.safetensors")
    model_io.save_golden(gpath, golden, f"{name} full-size goldens (weights f16-exact: valid "
                         "for the f32 and f16 files)",
                         {"generator": "tests/reference/gen_full.py", "model": args.model,
                          "scaling_factor": str(SCALE)})
    log(f"wrote {gpath}")
    if args.folder:
        d = os.path.join(args.out, f"{name}-{args.dtype}")
        write_folder(d, spec, text, unet, vae, dtype)
        log(f"wrote {d}/")
    if not args.no_verify:
        verify(path, spec, text, unet, vae)
        log("verified: diffusers' converters map the file back to the generated weights")
    for k in ("clip.last_hidden_state", "unet.out", "vae.image"):
        v = golden[k]
        log(f"{k} {list(v.shape)} mean {v.mean():+.4f} std {v.std():.4f} max|x| {v.abs().max():.3f}")


if __name__ == "__main__":
    main()
