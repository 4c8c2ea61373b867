"""train_demo.py - trains sdrt's built-in demo model: a tiny Stable Diffusion 1.x
architecture model (CLIP text encoder, UNet2DConditionModel, AutoencoderKL, the SD
noise schedule) that draws what its prompt says, on a dataset this script draws itself.

Run from the repository root with the reference venv after `make vocab`:
    nice -n 19 .venv/bin/python tests/reference/train_demo.py

Writes tests/models/demo/ (diffusers folder) and tests/models/demo.safetensors
(LDM single file, the names of ldm_keys.py), both F16; the single file is not committed:
`demo_single.py recipe tests/models/demo tests/models/demo.safetensors tests/models/demo.single.json`
records its layout, from which `make tests` rebuilds it. Checkpoints go to
build/demo-train/ (vae.pt after phase 1, last.pt every --ckpt-every steps of phase 2,
with the EMA weights), and --resume-export writes the model from the last checkpoint
(so a cut run still yields a model).

The scenes: 32x32 RGB, one flat shape on a flat background, anti-aliased (4x4
supersampling), caption "a {color} {shape} on a {background} background":
  colors      red, green, blue, yellow     (the shape)
  shapes      circle, square, triangle     (half size 6.5..9.5 px, centre jittered
                                            by up to 3 px, so the seed matters)
  backgrounds white, black, gray
= 36 captions, the grid that the meaning test (tests/test_demo_meaning.c) checks.

The model (chosen so that the single file loads with SD 1.x's defaults for what
weight shapes cannot tell: 8 UNet heads per level, GroupNorm 32, VAE scale 0.18215;
the CLIP head count falls back to 1 for a width that is not a multiple of 12):
  text encoder  CLIPTextModel, vocab 49408 (the real CLIP tokenizer), hidden 32,
                2 layers, 1 head, intermediate 128, quick_gelu, 77 positions (1.6 M
                parameters, nearly all the token embedding)
  UNet          block_out_channels [32, 64, 64] at 8x8, 4x4, 2x2 latents: Down +
                CrossAttnDown x2, CrossAttnUp x2 + Up (attention where the latent is
                4x4 and 2x2, and in the mid block), layers_per_block 1, 8 heads,
                context 32 (1.66 M parameters)
  VAE           block_out_channels [32, 32, 64] (3 levels: latent factor 4, a 32x32
                image is an 8x8x4 latent), layers_per_block 1, GroupNorm 32 (0.73 M)
Weights are rounded to float16 at export (the float32 model that runs equals the
stored file exactly).

Training (seed --seed: torch.manual_seed, numpy default_rng(seed) for phases 1-2,
default_rng(seed + 2) for phase 3; one thread, see tests/reference/README.md):
 1. VAE: --vae-steps steps of batch 16, Adam lr 2e-3 (warm-up 20, cosine to 0),
    loss MSE(reconstruction of a posterior sample) + 1e-6 KL. Then the latent space
    is normalised exactly in the weights: per-channel mean removed and the scale set
    so that 0.18215 * latent has unit standard deviation over the dataset
    (quant_conv rows scaled, logvar bias shifted, post_quant_conv compensated).
 2. Text encoder + UNet together on the VAE's posterior means of a fixed dataset
    (--dataset scenes, every caption equally often), SD's DDPM schedule
    (scaled_linear betas 0.00085..0.012, 1000 steps, epsilon prediction, uniform t),
    batch --batch, AdamW (weight decay 1e-2, gradient norm clipped at 1), caption
    dropout 10 % (the empty prompt, so classifier-free guidance works); the weights
    kept are an exponential moving average (--ema) of the trained ones. In legs
    (--leg-steps, --leg-stop, --leg-lr): leg 1 from the fresh models, warm-up 100,
    cosine to 10 % of its peak lr over its schedule length, ended after its stop
    count; each later leg starts from the previous leg's averaged weights with a
    fresh optimizer and generators (torch and numpy seeded with seed + 1 + leg),
    warm-up 50, cosine to 5 %. Each leg also stops at the wall-time limit
    (--minutes), which makes a run shorter but no longer exactly reproducible: the
    metadata records the steps each leg ran.
 3. Decoder fine-tune: decoder + post_quant_conv only (encoder frozen, so the
    UNet's latents do not change), --decoder-steps steps of batch 16, Adam lr 1e-3
    (cosine), loss MSE + 0.5 L1.
Settings and times of the committed model: the "sdrt_training" metadata of
tests/models/demo.safetensors and tests/reference/README.md ("Demo model").
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_keys  # noqa: E402
import model_io  # noqa: E402
from gen_pipeline_goldens import build_vocab  # noqa: E402

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (240, 215, 40)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"white": (240, 240, 240), "black": (20, 20, 20), "gray": (128, 128, 128)}
SIZE = 32


def caption(color, shape, bg):
    return f"a {color} {shape} on a {bg} background"


def grid():
    return [(c, s, b) for c in COLORS for s in SHAPES for b in BACKGROUNDS]


def shape_mask(shape, cx, cy, r, size=SIZE, ss=4):
    """Anti-aliased coverage in [0, 1] of a shape of half size r centred at (cx, cy)."""
    n = size * ss
    y, x = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / ss
    dx, dy = x - cx, y - cy
    if shape == "circle":
        m = dx * dx + dy * dy <= r * r
    elif shape == "square":
        m = (np.abs(dx) <= r * 0.9) & (np.abs(dy) <= r * 0.9)
    else:  # equilateral triangle, apex up, circumradius 1.15 r, centroid at (cx, cy)
        R = 1.15 * r
        top, base = -R, R / 2
        half = (dy - top) / (base - top) * (R * math.sqrt(3) / 2)
        m = (dy >= top) & (dy <= base) & (np.abs(dx) <= half)
    return m.reshape(size, ss, size, ss).mean(axis=(1, 3))


def scene(color, shape, bg, rng):
    """uint8 [64, 64, 3]."""
    r = rng.uniform(6.5, 9.5)
    cx, cy = SIZE / 2 + rng.uniform(-3, 3), SIZE / 2 + rng.uniform(-3, 3)
    m = shape_mask(shape, cx, cy, r)[..., None]
    img = (1 - m) * np.array(BACKGROUNDS[bg], np.float32) + m * np.array(COLORS[color], np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_tensor(imgs):
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def make_models():
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu",
        layer_norm_eps=1e-5, projection_dim=32, bos_token_id=49406, eos_token_id=49407,
        pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, attention_head_dim=8, cross_attention_dim=32, norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 64),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=32, sample_size=32, scaling_factor=0.18215)
    return text, unet, vae


def tokenizer(tmp):
    d = os.path.join(tmp, "tok")
    os.makedirs(d, exist_ok=True)
    for fname, obj in model_io.tokenizer_files("<|endoftext|>").items():
        model_io.write_json(os.path.join(d, fname), obj)
    build_vocab(d)
    return CLIPTokenizer.from_pretrained(d)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def cosine(step, total, warm=0, floor=0.0):
    if step < warm:
        return (step + 1) / warm
    p = min(1.0, (step - warm) / max(1, total - warm))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def train_vae(vae, steps, rng, log):
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    combos = grid()
    t0 = time.time()
    for step in range(steps):
        lr = 2e-3 * cosine(step, steps, warm=20)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = [scene(*combos[rng.integers(len(combos))], rng) for _ in range(16)]
        x = to_tensor(batch)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        loss = F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            log(f"vae step {step} loss {loss.item():.5f} ({time.time() - t0:.0f} s, cpu {time.process_time():.0f} s)")


def finetune_decoder(vae, steps, seed, log):
    """Decoder (+ post_quant_conv) only, on the frozen encoder's posterior means: the
    latents the UNet learns stay the same, so this phase is independent of the
    UNet phase (own numpy generator seed + 2, no torch randomness)."""
    rng = np.random.default_rng(seed + 2)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    combos = grid()
    t0 = time.time()
    vae.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 * cosine(step, steps, warm=20)
        x = to_tensor([scene(*combos[rng.integers(len(combos))], rng) for _ in range(16)])
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            log(f"decoder step {step} loss {loss.item():.5f} ({time.time() - t0:.0f} s, cpu {time.process_time():.0f} s)")
    vae.eval()
    return time.time() - t0


@torch.no_grad()
def normalise_latents(vae, imgs):
    """Changes quant_conv / post_quant_conv so that the posterior mean has zero mean
    per channel and 0.18215 * mean has unit std, without changing the decoded image."""
    means = torch.cat([vae.encode(to_tensor(imgs[i:i + 64])).latent_dist.mean for i in range(0, len(imgs), 64)])
    mu = means.mean(dim=(0, 2, 3))
    k = 1.0 / (0.18215 * (means - mu[None, :, None, None]).std().item())
    C = mu.numel()
    q, pq = vae.quant_conv, vae.post_quant_conv
    q.weight[:C] *= k
    q.bias[:C] = (q.bias[:C] - mu) * k
    q.bias[C:] += 2 * math.log(k)  # logvar of k * z
    pq.bias += pq.weight[:, :, 0, 0] @ mu
    pq.weight /= k
    return k, mu


@torch.no_grad()
def encode_all(vae, imgs):
    return torch.cat([vae.encode(to_tensor(imgs[i:i + 64])).latent_dist.mean for i in range(0, len(imgs), 64)]) * 0.18215


def round_f16(*models):
    with torch.no_grad():
        for m in models:
            for p in m.parameters():
                p.copy_(p.half().float())


@torch.no_grad()
def fit_latent_rgb(vae, seed=5, per_caption=10):
    """The cheap preview's latent -> RGB map for this VAE (ComfyUI style: rgb = latent
    @ factors + bias, rgb in [-1, 1]): least squares from the scaled latents (UNet
    space, what the sampler's x0 is) of per_caption scenes of every caption (numpy
    default_rng(seed)) to their decoded images average-pooled to the latent
    resolution (the VAE's factor: 4 here). Returns {"factors": 4x3, "bias": 3}
    rounded to 5 decimals, and the fit's mean absolute error in 8-bit units."""
    rng = np.random.default_rng(seed)
    imgs = [scene(*c, rng) for c in grid() for _ in range(per_caption)]
    lat = encode_all(vae, imgs)
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    dec = torch.cat([vae.decode(lat[i:i + 64] / vae.config.scaling_factor).sample for i in range(0, len(lat), 64)])
    small = F.avg_pool2d(dec.clamp(-1, 1), f)
    x = lat.permute(0, 2, 3, 1).reshape(-1, lat.shape[1]).double().numpy()
    y = small.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    sol = np.linalg.lstsq(x1, y, rcond=None)[0]
    sol = np.round(sol, 5)
    err = np.abs(np.clip(x1 @ sol, -1, 1) - y).mean() * 127.5
    return {"factors": sol[:-1].tolist(), "bias": sol[-1].tolist()}, float(err)


def tidy_config(comp_dir, rgb=None):
    """A component's config.json as a freshly built model writes it (no
    _name_or_path of a model loaded for --reexport / --init-from); with rgb, the
    VAE's gains latent_rgb_factors / latent_rgb_bias (diffusers ignores keys its
    class does not take). Written as diffusers writes its configs."""
    path = os.path.join(comp_dir, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.pop("_name_or_path", None)
    if rgb:
        cfg.update(latent_rgb_factors=rgb["factors"], latent_rgb_bias=rgb["bias"])
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def scheduler_config():
    return dict(model_io.SCHEDULER_SD15)


def export(root, text, unet, vae, meta):
    """tests/models/demo/ (diffusers, F16) + tests/models/demo.safetensors (LDM, F16),
    both with the preview factors fitted to the exported VAE (fit_latent_rgb)."""
    text, unet, vae = [m.eval() for m in (text, unet, vae)]
    round_f16(text, unet, vae)
    rgb, err = fit_latent_rgb(vae)
    print(f"preview factors {rgb}: fit error {err:.2f} / 255", flush=True)
    d = os.path.join(root, "demo")
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for sub, comp in (("unet", unet), ("vae", vae)):
        comp.save_pretrained(os.path.join(d, sub), safe_serialization=True)
        tidy_config(os.path.join(d, sub), rgb if sub == "vae" else None)
        model_io.save_tensors(os.path.join(d, sub, "diffusion_pytorch_model.safetensors"), comp.state_dict(),
                              float_dtype=torch.float16)
    text.save_pretrained(os.path.join(d, "text_encoder"), safe_serialization=True)
    tidy_config(os.path.join(d, "text_encoder"))
    tsd = {k: v for k, v in text.state_dict().items() if k != "text_model.embeddings.position_ids"}
    model_io.save_tensors(os.path.join(d, "text_encoder", "model.safetensors"), tsd, float_dtype=torch.float16)
    model_io.write_pipeline_meta(d, scheduler_config(), "<|endoftext|>")
    single = {**ldm_keys.unet_to_ldm(unet.state_dict(), unet.config),
              **ldm_keys.vae_to_ldm(vae.state_dict(), vae.config),
              **ldm_keys.sd1_clip_to_ldm(tsd)}
    single = model_io.cast_floats(single, torch.float16)
    model_io.save_tensors(os.path.join(root, "demo.safetensors"), single,
                          {"sdrt_note": "sdrt demo model (tests/reference/train_demo.py)",
                           "sdrt_training": json.dumps(meta, sort_keys=True),
                           "sdrt_latent_rgb": json.dumps(rgb, sort_keys=True)})


def save_ckpt(path, text, unet, vae, step, meta):
    tmp = path + ".tmp"
    torch.save({"text": text.state_dict(), "unet": unet.state_dict(), "vae": vae.state_dict(),
                "step": step, "meta": meta}, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vae-steps", type=int, default=250)
    ap.add_argument("--dataset", type=int, default=36 * 80)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--leg-steps", default="1500,1400,500,1100", help="per leg of phase 2: lr schedule length")
    ap.add_argument("--leg-stop", default="1000,1400,500,1100", help="per leg: steps run")
    ap.add_argument("--leg-lr", default="1e-3,5e-4,3e-4,4e-4", help="per leg: peak lr")
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-time limit of each leg")
    ap.add_argument("--continue-from", type=int, default=0,
                    help="start after leg K from ckpt-dir/legK.pt (phase 1 from vae.pt, phase 3 from decoder.pt if there)")
    ap.add_argument("--ema", type=float, default=0.995, help="EMA decay of the exported weights")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ckpt-dir", default="build/demo-train")
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--out", default="tests/models")
    ap.add_argument("--resume-export", action="store_true", help="only export the last checkpoint")
    ap.add_argument("--decoder-steps", type=int, default=600, help="decoder fine-tune steps (phase 3)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="run phase 3 alone on ckpt-dir/vae.pt -> ckpt-dir/decoder.pt (used by --resume-export)")
    ap.add_argument("--reuse-vae", action="store_true", help="take the VAE phase from ckpt-dir/vae.pt")
    ap.add_argument("--bench", action="store_true", help="time a few steps of each phase and exit")
    ap.add_argument("--init-from", default=None,
                    help="more phase-2 legs on a committed model: load text encoder, UNet and VAE from this diffusers "
                         "folder (its decoder already fine-tuned: phases 1 and 3 are not run), take the earlier legs "
                         "from --init-meta, run the legs of --leg-* (numbered after them), export")
    ap.add_argument("--init-meta", default="tests/models/demo.single.json",
                    help="with --init-from: the recipe whose header holds the earlier run's sdrt_training metadata")
    ap.add_argument("--reexport", default=None, metavar="FOLDER",
                    help="load an exported diffusers folder and export it again with the current code to --out (weights "
                         "and sdrt_training metadata unchanged: from FOLDER/../demo.safetensors, else --init-meta; "
                         "adds the preview factors)")
    a = ap.parse_args()
    if a.reexport:
        return reexport(a)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.ckpt_dir, exist_ok=True)
    logf = open(os.path.join(a.ckpt_dir, "train.log"), "a")

    def log(msg):
        line = time.strftime("%H:%M:%S ") + msg
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    text, unet, vae = make_models()
    ckpt = os.path.join(a.ckpt_dir, "last.pt")
    if a.init_from:
        return continue_committed(a, log, ckpt)
    dec_ckpt = os.path.join(a.ckpt_dir, "decoder.pt")
    if a.decoder_only:
        vae.load_state_dict(torch.load(os.path.join(a.ckpt_dir, "vae.pt"))["vae"])
        secs = finetune_decoder(vae, a.decoder_steps, a.seed, log)
        torch.save({"vae": vae.state_dict(), "steps": a.decoder_steps, "seconds": secs}, dec_ckpt)
        return
    if a.resume_export:
        c = torch.load(ckpt)
        text.load_state_dict(c["text"])
        unet.load_state_dict(c["unet"])
        vae.load_state_dict(c["vae"])
        c["meta"]["unet_steps"] = c["step"]
        if os.path.exists(dec_ckpt):
            d = torch.load(dec_ckpt)
            vae.load_state_dict(d["vae"])
            c["meta"].update(decoder_steps=d["steps"], decoder_seconds=round(d["seconds"]))
        export(a.out, text, unet, vae, c["meta"])
        log(f"exported checkpoint of step {c['step']}")
        return
    log(f"params: text {nparams(text)}, unet {nparams(unet)}, vae {nparams(vae)}; args {vars(a)}")
    tmp = tempfile.mkdtemp(prefix="sdrt-demo-")
    tok = tokenizer(tmp)
    shutil.rmtree(tmp)
    t_start = time.time()

    vae_ckpt = os.path.join(a.ckpt_dir, "vae.pt")
    if a.continue_from:
        a.reuse_vae = True
    if a.reuse_vae:  # the VAE phase of an earlier run with the same seed and settings
        c = torch.load(vae_ckpt)
        vae.load_state_dict(c["vae"])
        rng.bit_generator.state = c["rng"]
        t_vae, k, mu = c["seconds"], c["k"], c["mu"]
    else:
        train_vae(vae, 3 if a.bench else a.vae_steps, rng, log)
    combos = grid()
    n = 36 * 4 if a.bench else a.dataset
    labels = [i % len(combos) for i in range(n)]
    st = rng.bit_generator.state
    imgs = [scene(*combos[i], rng) for i in labels]
    vae.eval()
    if not a.reuse_vae:
        t_vae = time.time() - t_start
        k, mu = normalise_latents(vae, imgs)
        torch.save({"vae": vae.state_dict(), "rng": st, "seconds": t_vae, "k": k, "mu": mu}, vae_ckpt)
    lat = encode_all(vae, imgs)
    log(f"vae {t_vae:.0f} s; latent scale {k:.3f} shift {mu.tolist()}; latents std {lat.std().item():.3f}")
    for p in vae.parameters():
        p.requires_grad_(False)

    caps = [caption(*c) for c in combos] + [""]
    ids = tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    data = (lat, torch.tensor(labels), ids, len(combos))
    meta = {"seed": a.seed, "vae_steps": a.vae_steps, "vae_batch": 16, "dataset": n, "batch": a.batch,
            "ema": a.ema, "threads": a.threads, "vae_seconds": round(t_vae), "latent_scale": k,
            "torch": torch.__version__}
    # phase 2 in legs: leg 1 from the fresh models, each later leg from the previous
    # leg's EMA weights with a fresh optimizer and generators (seed + 1 + leg)
    legs = list(zip([int(x) for x in a.leg_steps.split(",")], [int(x) for x in a.leg_stop.split(",")],
                    [float(x) for x in a.leg_lr.split(",")]))
    first = 1
    if a.continue_from:
        c = torch.load(os.path.join(a.ckpt_dir, f"leg{a.continue_from}.pt"))
        text.load_state_dict(c["text"])
        unet.load_state_dict(c["unet"])
        meta = c["meta"]
        first = a.continue_from + 1
    for k in range(first, len(legs) + 1):
        steps, stop, lr = legs[k - 1]
        if k > 1:
            torch.manual_seed(a.seed + 1 + k)
            rng = np.random.default_rng(a.seed + 1 + k)
        if a.bench:
            steps = stop = 3
        text, unet, step, secs, loss = train_leg(
            text, unet, data, a, steps, a.minutes, lr, 100 if k == 1 else 50, 0.1 if k == 1 else 0.05, rng, log,
            lambda t_, u_, st_: save_ckpt(ckpt, t_, u_, vae, st_, meta), stop)
        meta.setdefault("legs", []).append(dict(schedule_steps=steps, steps=step, lr=lr, seconds=round(secs),
                                                final_loss=round(loss, 5)))
        log(f"leg {k} done: {meta}")
        if a.bench:
            return
        save_ckpt(os.path.join(a.ckpt_dir, f"leg{k}.pt"), text, unet, vae, step, meta)
    save_ckpt(ckpt, text, unet, vae, step, meta)
    if not os.path.exists(dec_ckpt) or not a.continue_from:
        secs = finetune_decoder(vae, a.decoder_steps, a.seed, log)
        torch.save({"vae": vae.state_dict(), "steps": a.decoder_steps, "seconds": secs}, dec_ckpt)
    d = torch.load(dec_ckpt)
    vae.load_state_dict(d["vae"])
    meta.update(decoder_steps=d["steps"], decoder_seconds=round(d["seconds"]))
    export(a.out, text, unet, vae, meta)
    log("exported")


def training_meta(path):
    """The sdrt_training metadata of a single file (.safetensors header) or of a
    recipe (demo_single.py's .json, whose "header" is the single file's)."""
    if path.endswith(".json"):
        header = json.loads(json.load(open(path))["header"])
    else:
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return json.loads(header["__metadata__"]["sdrt_training"])


def reexport(a):
    """--reexport FOLDER: the exported model again, through export() (F16 weights
    round-trip exactly). The training metadata comes from the single file exported
    beside FOLDER (FOLDER/../demo.safetensors) if there, else from the recipe
    --init-meta."""
    torch.set_num_threads(a.threads)
    text = CLIPTextModel.from_pretrained(os.path.join(a.reexport, "text_encoder")).float()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(a.reexport, "unet")).float()
    vae = AutoencoderKL.from_pretrained(os.path.join(a.reexport, "vae")).float()
    single = os.path.join(os.path.dirname(os.path.abspath(a.reexport)), "demo.safetensors")
    src = single if os.path.exists(single) else a.init_meta
    meta = training_meta(src)
    export(a.out, text, unet, vae, meta)
    print(f"re-exported {a.reexport} (training metadata from {src}) -> {a.out}/demo and {a.out}/demo.safetensors")


def continue_committed(a, log, ckpt):
    """--init-from: more legs of phase 2 on the committed model. The dataset is drawn
    again with numpy default_rng(seed + 100) (the first run's dataset depended on the
    generator state after its VAE phase); the latents come from the committed encoder,
    whose normalisation is already in its weights. Leg k (numbered after the earlier
    legs) seeds torch and numpy with seed + 1 + k, as in a sequential run."""
    text = CLIPTextModel.from_pretrained(os.path.join(a.init_from, "text_encoder")).float()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(a.init_from, "unet")).float()
    vae = AutoencoderKL.from_pretrained(os.path.join(a.init_from, "vae")).float().eval()
    header = json.loads(json.load(open(a.init_meta))["header"])
    meta = json.loads(header["__metadata__"]["sdrt_training"])
    done = len(meta.get("legs", []))
    log(f"init from {a.init_from}: {done} legs done, {sum(x['steps'] for x in meta['legs'])} steps")
    tmp = tempfile.mkdtemp(prefix="sdrt-demo-")
    tok = tokenizer(tmp)
    shutil.rmtree(tmp)
    combos = grid()
    rng = np.random.default_rng(a.seed + 100)
    labels = [i % len(combos) for i in range(a.dataset)]
    imgs = [scene(*combos[i], rng) for i in labels]
    for p in vae.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        lat = encode_all(vae, imgs)
    log(f"latents std {lat.std().item():.3f}")
    caps = [caption(*c) for c in combos] + [""]
    ids = tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    data = (lat, torch.tensor(labels), ids, len(combos))
    legs = list(zip([int(x) for x in a.leg_steps.split(",")], [int(x) for x in a.leg_stop.split(",")],
                    [float(x) for x in a.leg_lr.split(",")]))
    meta["init_dataset_seed"] = a.seed + 100
    meta["threads"] = a.threads
    for j, (steps, stop, lr) in enumerate(legs):
        k = done + 1 + j
        torch.manual_seed(a.seed + 1 + k)
        rng = np.random.default_rng(a.seed + 1 + k)
        text, unet, step, secs, loss = train_leg(
            text, unet, data, a, steps, a.minutes, lr, 50, 0.05, rng, log,
            lambda t_, u_, st_: save_ckpt(ckpt, t_, u_, vae, st_, meta), stop)
        meta["legs"].append(dict(schedule_steps=steps, steps=step, lr=lr, seconds=round(secs),
                                 final_loss=round(loss, 5), dataset_seed=a.seed + 100))
        log(f"leg {k} done: {meta['legs'][-1]}")
        save_ckpt(os.path.join(a.ckpt_dir, f"leg{k}.pt"), text, unet, vae, step, meta)
    export(a.out, text, unet, vae, meta)
    log("exported")


def train_leg(text, unet, data, a, steps, minutes, lr0, warm, floor, rng, log, save, stop=None):
    """Text encoder + UNet on the latents, lr schedule over `steps`, stopped after
    `stop` steps (default all) or `minutes`; returns the EMA models, steps, seconds, loss."""
    lat, labels, ids, n_caps = data
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", prediction_type="epsilon")
    acp = sched.alphas_cumprod
    params = list(text.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=lr0, weight_decay=1e-2)
    text.train()
    unet.train()
    # exponential moving average of the weights (what is exported): smooths the end
    # of a leg that the wall-time limit may cut before the lr has decayed
    ema_text, ema_unet = make_models()[:2]
    ema_text.load_state_dict(text.state_dict())
    ema_unet.load_state_dict(unet.state_dict())
    ema_params = list(ema_text.parameters()) + list(ema_unet.parameters())
    t1 = time.time()
    step, avg = 0, None
    while step < (stop or steps) and time.time() - t1 < minutes * 60:
        lr = lr0 * cosine(step, steps, warm=warm, floor=floor)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.from_numpy(rng.integers(len(lat), size=a.batch))
        x0 = lat[idx]
        cap = labels[idx].clone()
        drop = torch.from_numpy(rng.random(a.batch) < 0.1)
        cap[drop] = n_caps
        t = torch.from_numpy(rng.integers(1000, size=a.batch))
        eps = torch.randn_like(x0)
        ab = acp[t][:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        uniq, inv = torch.unique(cap, return_inverse=True)
        ctx = text(ids[uniq])[0][inv]
        pred = unet(xt, t, ctx).sample
        loss = F.mse_loss(pred, eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(a.ema, (1 + step) / (10 + step))
            for pe, p in zip(ema_params, params):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        step += 1
        if step % 20 == 0 or a.bench:
            log(f"unet step {step} loss {avg:.4f} lr {lr:.2e} ({time.time() - t1:.0f} s, cpu {time.process_time():.0f} s)")
        if step % a.ckpt_every == 0:
            save(ema_text, ema_unet, step)
    return ema_text, ema_unet, step, time.time() - t1, avg


if __name__ == "__main__":
    main()
