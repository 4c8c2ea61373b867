#!/usr/bin/env python3
"""check_goldens.py: recomputes every tiny golden from the committed tiny diffusers
folders and the inputs stored in the golden files, with whatever torch / diffusers /
transformers are installed, on CPU or CUDA, and reports the differences.

Contract: reads tests/models and tests/golden only (writes nothing); prints one line
per output tensor (max abs diff, and relative to max |golden|) and exits non-zero if
any relative difference exceeds --tol. Used to confirm that the goldens made with the
pinned environment (Debian torch 1.13, reference BLAS) agree with other builds.
    .venv/bin/python tests/reference/check_goldens.py [--double] [--device cuda] [--tol 1e-5]
"""

import argparse
import os
import sys

import torch
import diffusers
import transformers
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextModel

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()


DTYPE = torch.float32


def load(d, dev):
    return (CLIPTextModel.from_pretrained(os.path.join(d, "text_encoder")).eval().to(dev, DTYPE),
            UNet2DConditionModel.from_pretrained(os.path.join(d, "unet")).eval().to(dev, DTYPE),
            AutoencoderKL.from_pretrained(os.path.join(d, "vae")).eval().to(dev, DTYPE))


def inp(t, dev):
    return t.to(dev, DTYPE)


class Report:
    def __init__(self, tol):
        self.tol, self.worst, self.failed = tol, 0.0, 0

    def cmp(self, name, got, want):
        got = got.detach().cpu().double()
        d = (got - want.double()).abs().max().item()
        rel = d / max(want.abs().max().item(), 1e-30)
        self.worst = max(self.worst, rel)
        bad = not rel <= self.tol
        self.failed += bad
        print(f"{'FAIL' if bad else 'ok  '} {name:45s} max abs {d:.3e}  rel {rel:.3e}")


def hooks(modules, store):
    hs = []
    for name, mod in modules:
        def hook(_m, _i, out, name=name):
            store[name] = out[0] if isinstance(out, tuple) else out
        hs.append(mod.register_forward_hook(hook))
    return hs


@torch.no_grad()
def check_clip(rep, tag, text, g, dev):
    ids = g["input_ids"].long().to(dev)
    out = text(input_ids=ids, output_hidden_states=True)
    rep.cmp(f"{tag}.last_hidden_state", out.last_hidden_state, g["last_hidden_state"])
    rep.cmp(f"{tag}.clip_skip_1", text.text_model.final_layer_norm(out.hidden_states[-2]),
            g["clip_skip_1"])
    for i, h in enumerate(out.hidden_states):
        rep.cmp(f"{tag}.hidden_states.{i}", h, g[f"hidden_states.{i}"])


@torch.no_grad()
def check_unet(rep, tag, unet, g, dev):
    mods = [("temb", unet.time_embedding), ("conv_in", unet.conv_in), ("mid", unet.mid_block)]
    mods += [(f"down.{i}", b) for i, b in enumerate(unet.down_blocks)]
    mods += [(f"up.{i}", b) for i, b in enumerate(unet.up_blocks)]
    for c in ("a", "b"):
        inter = {}
        hs = hooks(mods, inter)
        y = unet(inp(g[f"{c}.sample"], dev), inp(g[f"{c}.timestep"], dev),
                 encoder_hidden_states=inp(g[f"{c}.context"], dev)).sample
        for h in hs:
            h.remove()
        rep.cmp(f"{tag}.{c}.out", y, g[f"{c}.out"])
        for k, v in inter.items():
            rep.cmp(f"{tag}.{c}.inter.{k}", v, g[f"{c}.inter.{k}"])


@torch.no_grad()
def check_vae(rep, vae, g, dev):
    rep.cmp("vae.decode.image", vae.decode(inp(g["decode.z"], dev)).sample, g["decode.image"])
    x = inp(g["encode.image"], dev)
    rep.cmp("vae.encode.moments", vae.quant_conv(vae.encoder(x)), g["encode.moments"])
    dist = vae.encode(x).latent_dist
    rep.cmp("vae.encode.mean", dist.mean, g["encode.mean"])
    rep.cmp("vae.encode.std", dist.std, g["encode.std"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tests/models")
    ap.add_argument("--golden", default="tests/golden")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--double", action="store_true",
                    help="compute in float64 (other kernels than the float32 goldens used)")
    args = ap.parse_args()
    global DTYPE
    DTYPE = torch.float64 if args.double else torch.float32
    torch.set_default_dtype(DTYPE)  # transformers builds its causal mask in the default type
    torch.backends.cuda.matmul.allow_tf32 = False  # plain fp32 on GPUs too
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)
    gold = lambda n: load_file(os.path.join(args.golden, n))  # noqa: E731
    rep = Report(args.tol)
    t1, u1, v1 = load(os.path.join(args.models, "tiny-sd1"), dev)
    _, ui, _ = load(os.path.join(args.models, "tiny-sd1-inpaint"), dev)
    t2, u2, _ = load(os.path.join(args.models, "tiny-sd2"), dev)
    check_clip(rep, "clip_sd1", t1, gold("clip_sd1.safetensors"), dev)
    check_clip(rep, "clip_sd2", t2, gold("clip_sd2.safetensors"), dev)
    check_unet(rep, "unet_sd1", u1, gold("unet_sd1.safetensors"), dev)
    check_unet(rep, "unet_sd1_inpaint", ui, gold("unet_sd1_inpaint.safetensors"), dev)
    check_unet(rep, "unet_sd2", u2, gold("unet_sd2.safetensors"), dev)
    check_vae(rep, v1, gold("vae.safetensors"), dev)
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
          f"{transformers.__version__}, device {args.device}, {DTYPE}: worst relative diff "
          f"{rep.worst:.3e}, {rep.failed} over tol {args.tol}")
    sys.exit(1 if rep.failed else 0)


if __name__ == "__main__":
    main()
