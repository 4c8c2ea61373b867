"""train_demo_lora.py - trains the demo LoRA: a small kohya-format LoRA on the demo
model (tests/models/demo, trained by train_demo.py) that adds a color the base never
saw, "orange", with the same scene generator: "a orange {circle,square,triangle} on a
{white,black,gray} background".

Run from the repository root with the reference venv after `make vocab` (it reads
the committed demo model, so rerun it after the base model is retrained):
    nice -n 19 .venv/bin/python tests/reference/train_demo_lora.py

Writes tests/models/demo-lora/orange.safetensors (F16, ~300 KB; sdrt's `--lora-dir
tests/models/demo-lora` and `<lora:orange:1>`), with the settings, times and the
in-script evaluation in its "sdrt_training" metadata.

Why orange: the demo VAE (trained on four shape colors) decodes orange scenes as
orange (its latents cover it), but not purple, cyan or magenta (decoded as green or
blue): a LoRA on the text encoder and UNet cannot add a color the VAE cannot draw.

The LoRA (kohya naming, diffusers module paths: lora_unet_<path with _>,
lora_te_<path with _>; .lora_down.weight, .lora_up.weight, .alpha), on kohya's
default targets:
  text encoder  q/k/v/out_proj, mlp fc1/fc2 of both layers
  UNet          every transformer's Linears and 1x1 convs: proj_in/proj_out (1x1
                convs: lora_down [r, in, 1, 1], lora_up [out, r, 1, 1]),
                attn1/attn2 to_q/to_k/to_v/to_out.0, ff.net.0.proj, ff.net.2
  rank --rank (8), alpha --alpha (8): the delta is up @ down * alpha / rank; down
  initialised N(0, 1/rank^2), up zero (as kohya's), so training starts at the base.
Training (seed --seed: torch.manual_seed, numpy default_rng): the VAE's posterior
means (x 0.18215) of a fixed dataset drawn once (--per-caption scenes for each of the
9 orange captions and --per-caption / 3 for each of the 36 base captions); each
step a batch of --batch, --new-frac (3/4) orange scenes and the rest base scenes
(preservation: the LoRA must leave the base prompts drawing what they drew); SD's
DDPM schedule, epsilon MSE, uniform t, caption dropout 10 %, AdamW lr --lr (4e-3,
warm-up 30, cosine to 10 %), weight decay 0, gradient norm clipped at 1, --steps
(1200); one thread. Weights rounded to float16 at export. Then the script samples
(diffusers, Euler a 20 steps, CFG 7.5, seeds 2000 + 2i + k) the 9 orange captions
x 2 seeds with the LoRA and without, and the base grid with it, and prints how many
were judged orange (the color of the pixels farthest from the
border's median, nearest of the five shape colors, as tests/demo_judge.c does).
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, EulerAncestralDiscreteScheduler, StableDiffusionPipeline
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_demo as td  # noqa: E402

NEW = "orange"
NEW_RGB = (250, 130, 20)


class LoRA(torch.nn.Module):
    """base(x) + up(down(x)) * alpha / rank, base (Linear or 1x1 Conv2d) frozen."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.conv = isinstance(base, torch.nn.Conv2d)
        n_in, n_out = (base.in_channels, base.out_channels) if self.conv else (base.in_features, base.out_features)
        self.down = torch.nn.Parameter(torch.randn(rank, n_in) / rank)
        self.up = torch.nn.Parameter(torch.zeros(n_out, rank))
        self.alpha = float(alpha)
        self.scale = alpha / rank

    def forward(self, x):
        if self.conv:
            d = F.conv2d(F.conv2d(x, self.down[:, :, None, None]), self.up[:, :, None, None])
        else:
            d = F.linear(F.linear(x, self.down), self.up)
        return self.base(x) + d * self.scale

    def weights(self):
        """kohya's lora_down / lora_up (1x1 convs: [r, in, 1, 1] / [out, r, 1, 1])."""
        if self.conv:
            return self.down[:, :, None, None], self.up[:, :, None, None]
        return self.down, self.up


def targets(model, te):
    """kohya's default LoRA targets: the text encoder's attention and MLP Linears;
    every Linear and 1x1 conv of the UNet's transformers (Transformer2DModel:
    proj_in/out, attn1/attn2 to_q/k/v/out, ff)."""
    out = []
    for n, m in model.named_modules():
        last = n.split(".")[-1]
        if te and isinstance(m, torch.nn.Linear) and last in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"):
            out.append(n)
        if not te and ".attentions." in n and (isinstance(m, torch.nn.Linear) or (
                isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))):
            out.append(n)
    return out


def wrap(model, names, rank, alpha, prefix):
    mods = {}
    for n in names:
        parent, _, leaf = n.rpartition(".")
        p = model.get_submodule(parent)
        lora = LoRA(getattr(p, leaf) if not leaf.isdigit() else p[int(leaf)], rank, alpha)
        setattr(p, leaf, lora) if not leaf.isdigit() else p.__setitem__(int(leaf), lora)
        mods[prefix + n.replace(".", "_")] = lora
    return mods


def judge_color(img, palette):
    """img: uint8 [32, 32, 3]. Index of the nearest palette color to the mean of the
    pixels farthest from the border's median (the C judge's color rule), -1: none."""
    px = img.astype(np.float32)
    ring = np.concatenate([px[:4].reshape(-1, 3), px[-4:].reshape(-1, 3), px[4:-4, :4].reshape(-1, 3),
                           px[4:-4, -4:].reshape(-1, 3)])
    bg = np.sort(ring, axis=0)[len(ring) // 2]
    d = np.sqrt(((px - bg) ** 2).sum(-1))
    if d.max() < 30:
        return -1
    col = px[d > 0.8 * d.max()].mean(0)
    return int(np.argmin(((np.array(palette, np.float32) - col) ** 2).sum(-1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="tests/models/demo")
    ap.add_argument("--out", default="tests/models/demo-lora/orange.safetensors")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-frac", type=float, default=0.75, help="share of each batch drawn from the orange scenes")
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--per-caption", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0 = time.time()

    text = CLIPTextModel.from_pretrained(os.path.join(a.base, "text_encoder")).float().eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(a.base, "unet")).float().eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(a.base, "vae")).float().eval()
    for m in (text, unet, vae):
        for p in m.parameters():
            p.requires_grad_(False)
    mods = {**wrap(text, targets(text, True), a.rank, a.alpha, "lora_te_"),
            **wrap(unet, targets(unet, False), a.rank, a.alpha, "lora_unet_")}
    params = [p for m in mods.values() for p in (m.down, m.up)]
    print(f"{len(mods)} modules, {sum(p.numel() for p in params)} parameters", flush=True)

    td.COLORS[NEW] = NEW_RGB
    new_caps = [(NEW, s, b) for s in td.SHAPES for b in td.BACKGROUNDS]
    base_caps = td.grid()
    combos = new_caps + base_caps
    labels = [i for i in range(len(new_caps)) for _ in range(a.per_caption)]
    labels += [len(new_caps) + i for i in range(len(base_caps)) for _ in range(a.per_caption // 3)]
    imgs = [td.scene(*combos[i], rng) for i in labels]
    with torch.no_grad():
        lat = td.encode_all(vae, imgs)
    labels = torch.tensor(labels)
    is_new = labels < len(new_caps)
    new_idx, base_idx = torch.nonzero(is_new)[:, 0], torch.nonzero(~is_new)[:, 0]

    tmp = tempfile.mkdtemp(prefix="sdrt-demo-lora-")
    tok = td.tokenizer(tmp)
    shutil.rmtree(tmp)
    ids = tok([td.caption(*c) for c in combos] + [""], padding="max_length", max_length=77, truncation=True,
              return_tensors="pt").input_ids
    acp = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                        beta_schedule="scaled_linear").alphas_cumprod
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    t1 = time.time()
    avg = None
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = a.lr * td.cosine(step, a.steps, warm=30, floor=0.1)
        h = int(round(a.batch * a.new_frac))
        idx = torch.cat([new_idx[torch.from_numpy(rng.integers(len(new_idx), size=h))],
                         base_idx[torch.from_numpy(rng.integers(len(base_idx), size=a.batch - h))]])
        x0 = lat[idx]
        cap = labels[idx].clone()
        cap[torch.from_numpy(rng.random(a.batch) < 0.1)] = len(combos)
        t = torch.from_numpy(rng.integers(1000, size=a.batch))
        eps = torch.randn_like(x0)
        ab = acp[t][:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        uniq, inv = torch.unique(cap, return_inverse=True)
        ctx = text(ids[uniq])[0][inv]
        loss = F.mse_loss(unet(xt, t, ctx).sample, eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if (step + 1) % 50 == 0:
            print(f"step {step + 1} loss {avg:.4f} ({time.time() - t1:.0f} s)", flush=True)
    train_s = time.time() - t1

    with torch.no_grad():
        for m in mods.values():
            m.down.copy_(m.down.half().float())
            m.up.copy_(m.up.half().float())
    result = evaluate(text, unet, vae, tok, mods)
    meta = {"base": a.base, "color": NEW, "rgb": list(NEW_RGB), "seed": a.seed, "rank": a.rank, "alpha": a.alpha,
            "steps": a.steps, "batch": a.batch, "new_frac": a.new_frac, "lr": a.lr, "per_caption": a.per_caption, "threads": a.threads,
            "final_loss": round(avg, 5), "train_seconds": round(train_s), "seconds": round(time.time() - t0),
            "eval": result, "torch": torch.__version__}
    sd = {}
    for k, m in sorted(mods.items()):
        down, up = m.weights()
        sd[k + ".lora_down.weight"] = down.detach().half().contiguous()
        sd[k + ".lora_up.weight"] = up.detach().half().contiguous()
        sd[k + ".alpha"] = torch.tensor(m.alpha).half()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    save_file(sd, a.out, {"ss_output_name": NEW, "ss_network_dim": str(a.rank), "ss_network_alpha": str(a.alpha),
                          "sdrt_note": "sdrt demo LoRA (tests/reference/train_demo_lora.py)",
                          "sdrt_training": json.dumps(meta, sort_keys=True)})
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes): {json.dumps(meta)}")


@torch.no_grad()
def evaluate(text, unet, vae, tok, mods):
    """Orange captions x 2 seeds with the LoRA (scale 1) and without (scale 0):
    how many are judged orange; the base grid's colors with the LoRA."""
    sched = EulerAncestralDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                            beta_schedule="scaled_linear")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    palette = list(td.COLORS.values())  # the four base colors, then orange
    out = {}
    for scale in (1.0, 0.0):
        for m in mods.values():
            m.scale = scale * m.alpha / m.down.shape[0]
        hit, n = 0, 0
        for i, (s, b) in enumerate((s, b) for s in td.SHAPES for b in td.BACKGROUNDS):
            for k in range(2):
                img = pipe(td.caption(NEW, s, b), height=32, width=32, num_inference_steps=20, guidance_scale=7.5,
                           generator=torch.Generator("cpu").manual_seed(2000 + 2 * i + k), output_type="np").images[0]
                hit += judge_color(np.rint(img * 255).astype(np.uint8), palette) == 4
                n += 1
        base_ok = 0
        for i, c in enumerate(td.grid()):
            img = pipe(td.caption(*c), height=32, width=32, num_inference_steps=20, guidance_scale=7.5,
                       generator=torch.Generator("cpu").manual_seed(1000 + i), output_type="np").images[0]
            base_ok += judge_color(np.rint(img * 255).astype(np.uint8), palette[:4]) == list(td.COLORS).index(c[0])
        key = "lora" if scale else "base"
        out[key] = {"orange": f"{hit}/{n}", "grid_color": f"{base_ok}/36"}
        print(f"{key}: orange prompts judged orange {hit}/{n}; grid colors right {base_ok}/36", flush=True)
    for m in mods.values():
        m.scale = m.alpha / m.down.shape[0]
    return out


if __name__ == "__main__":
    main()
