"""gen_lora.py - tiny LoRA / LyCORIS files for the tiny models and their
goldens -> tests/lora/*.safetensors and tests/golden/lora.safetensors.

Run from the repository root with the reference venv after `make vocab`;
diffusers' LoRA loader needs peft, which the venv lacks: install it beside
    pip install --no-deps --target /tmp/lora-pylib peft==0.13.2 accelerate==1.0.1 psutil
    PYTHONPATH=/tmp/lora-pylib .venv/bin/python tests/reference/gen_lora.py

Files (random factors, seeded; values rounded to be exact in f16):
  sd1_kohya     kohya LoRA: text encoder (q/k/v/out_proj, fc1, fc2) and every
                UNet transformer Linear/Conv (proj_in/out as 1x1 convs), rank 4,
                alpha 2, down f16 / up f32; metadata ss_output_name "kohya_alias"
  sd1_unet      the UNet half of sd1_kohya        sd1_te   its text-encoder half
  sd1_locon     kohya LoCon: resnet conv1/conv2 (3x3), conv_shortcut, time_emb_proj,
                down/upsampler convs, rank 3, alpha 6
  sd1_peft      diffusers/PEFT keys (unet.*.lora_A.weight, text_encoder.*), rank 2, no alpha
  sd1_lyco      LoHa (plain and Tucker conv), LoKr (full w1 + factorised w2,
                factorised w1, Tucker w2), Tucker LoCon (lora_mid), .diff + .diff_b
  sd1_lcm       LCM-LoRA-like: attention + conv targets, rank 4, alpha 4
  sd2_kohya     kohya LoRA for tiny-sd2 (text encoder + UNet, Linear proj_in/out)

Goldens (tests/golden/lora.safetensors), txt2img 64x64, "a photo of a cat",
Euler 4 steps, CFG 7.5, seed 11 (as pipeline.safetensors' t2i_euler) unless
the case says otherwise:
  <case>.image          [1,3,64,64] clamp(decode/2+0.5, 0, 1)
  <case>.w.<name>       merged weights (diffusers names) of a few touched tensors
kohya/LoCon/PEFT/te-only/unet-only/SD2/LCM: diffusers load_lora_weights +
fuse_lora(lora_scale=m); two LoRAs: set_adapters([...], weights) (unfused);
LyCORIS: the numpy formulas of lyco_ref.py added into the state dict.
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_pipeline_goldens as gp  # noqa: E402  (tokenizer, schedulers, attention fix)
import lyco_ref  # noqa: E402
import model_io  # noqa: E402
from diffusers import EulerDiscreteScheduler, LCMScheduler, StableDiffusionPipeline  # noqa: E402

ROOT = gp.ROOT
LORA_DIR = os.path.join(ROOT, "tests/lora")
OUT = os.path.join(ROOT, "tests/golden/lora.safetensors")
PROMPT = "a photo of a cat"

# case, model, [(file, multiplier)], sampler, steps, cfg, seed
CASES = [
    ("kohya", "tiny-sd1", [("sd1_kohya", 0.8)], "Euler", 4, 7.5, 11),
    ("unet_only", "tiny-sd1", [("sd1_unet", 1.0)], "Euler", 4, 7.5, 11),
    ("te_only", "tiny-sd1", [("sd1_te", 1.0)], "Euler", 4, 7.5, 11),
    ("locon", "tiny-sd1", [("sd1_locon", 1.0)], "Euler", 4, 7.5, 11),
    ("peft", "tiny-sd1", [("sd1_peft", 0.7)], "Euler", 4, 7.5, 11),
    ("two", "tiny-sd1", [("sd1_kohya", 0.6), ("sd1_locon", 1.3)], "Euler", 4, 7.5, 11),
    ("lyco", "tiny-sd1", [("sd1_lyco", 0.9)], "Euler", 4, 7.5, 11),
    ("sd2", "tiny-sd2", [("sd2_kohya", 1.0)], "Euler", 4, 7.5, 22),
    ("lcm", "tiny-sd1", [("sd1_lcm", 1.0)], "LCM", 4, 1.0, 18),
]

gen = torch.Generator().manual_seed(1234)


def rnd(*shape, s=0.3):
    x = torch.randn(*shape, generator=gen) * s
    return x.half().float()  # exact in f16


def kohya(name):
    return name.replace(".", "_")


def targets(model, kinds):
    """(module path, nn.Module) of the model's Linear/Conv2d the kinds select."""
    out = []
    for n, m in model.named_modules():
        if not isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        attn = ".attentions." in n or n.startswith("text_model.")
        conv = (".resnets." in n or "samplers.0.conv" in n) and n.split(".")[-1] in (
            "conv1", "conv2", "conv_shortcut", "time_emb_proj", "conv")
        if n.startswith("text_model.") and not any(k in n for k in ("_proj", "fc1", "fc2")):
            continue
        if ("attn" in kinds and attn and "norm" not in n) or ("conv" in kinds and conv):
            out.append((n, m))
    return out


def lora_pair(m, rank):
    w = m.weight
    if w.ndim == 4:
        return rnd(rank, w.shape[1], w.shape[2], w.shape[3]), rnd(w.shape[0], rank, 1, 1)
    return rnd(rank, w.shape[1]), rnd(w.shape[0], rank)


def kohya_file(pipe, te, unet_kinds, rank, alpha, path, meta=None):
    sd = {}
    mods = []
    if te:
        mods += [("lora_te_" + kohya(n), m) for n, m in targets(pipe.text_encoder, {"attn"})]
    if unet_kinds:
        mods += [("lora_unet_" + kohya(n), m) for n, m in targets(pipe.unet, unet_kinds)]
    for k, m in mods:
        down, up = lora_pair(m, rank)
        sd[k + ".lora_down.weight"] = down.half()
        sd[k + ".lora_up.weight"] = up
        sd[k + ".alpha"] = torch.tensor(float(alpha)).half()
    save_file(sd, path, meta or {})
    return sd


def peft_file(pipe, rank, path):
    sd = {}
    for n, m in targets(pipe.unet, {"attn"}):
        down, up = lora_pair(m, rank)
        sd["unet." + n + ".lora_A.weight"], sd["unet." + n + ".lora_B.weight"] = down, up
    for n, m in targets(pipe.text_encoder, {"attn"}):
        down, up = lora_pair(m, rank)
        sd["text_encoder." + n + ".lora_A.weight"], sd["text_encoder." + n + ".lora_B.weight"] = down, up
    save_file(sd, path)


def lyco_file(pipe, path):
    """Mixed LyCORIS modules; returns {model param name: numpy delta at multiplier 1}."""
    sd, deltas = {}, {}
    un = dict(pipe.unet.named_modules())
    te = dict(pipe.text_encoder.named_modules())

    def w(mods, n):
        return mods[n].weight.detach().numpy()

    # LoHa, Linear
    n = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    o, i = w(un, n).shape
    k = "lora_unet_" + kohya(n)
    t = {"hada_w1_a": rnd(o, 3), "hada_w1_b": rnd(3, i), "hada_w2_a": rnd(o, 3), "hada_w2_b": rnd(3, i)}
    sd.update({k + "." + a: b for a, b in t.items()})
    sd[k + ".alpha"] = torch.tensor(1.5)
    deltas["unet." + n + ".weight"] = lyco_ref.loha(*(t[x].numpy() for x in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")),
                                                     1.5 / 3, (o, i))
    # LoHa, Tucker conv
    n = "down_blocks.1.resnets.0.conv1"
    shape = w(un, n).shape
    k = "lora_unet_" + kohya(n)
    r = 2
    t = {"hada_w1_a": rnd(r, shape[0]), "hada_w1_b": rnd(r, shape[1]), "hada_t1": rnd(r, r, 3, 3),
         "hada_w2_a": rnd(r, shape[0]), "hada_w2_b": rnd(r, shape[1]), "hada_t2": rnd(r, r, 3, 3)}
    sd.update({k + "." + a: b for a, b in t.items()})
    sd[k + ".alpha"] = torch.tensor(1.0)
    deltas["unet." + n + ".weight"] = lyco_ref.loha(t["hada_w1_a"].numpy(), t["hada_w1_b"].numpy(), t["hada_w2_a"].numpy(),
                                                     t["hada_w2_b"].numpy(), 1.0 / r, shape, t["hada_t1"].numpy(),
                                                     t["hada_t2"].numpy())
    # LoKr: full w1, factorised w2 (Linear; text encoder)
    n = "text_model.encoder.layers.1.mlp.fc1"
    o, i = w(te, n).shape  # 128 x 32
    k = "lora_te_" + kohya(n)
    t = {"lokr_w1": rnd(4, 4), "lokr_w2_a": rnd(o // 4, 2), "lokr_w2_b": rnd(2, i // 4)}
    sd.update({k + "." + a: b for a, b in t.items()})
    sd[k + ".alpha"] = torch.tensor(3.0)
    deltas["te." + n + ".weight"] = lyco_ref.lokr(t["lokr_w1"].numpy(), None, 3.0 / 2, (o, i), w2a=t["lokr_w2_a"].numpy(),
                                                   w2b=t["lokr_w2_b"].numpy())
    # LoKr: factorised w1, full w2 (conv 3x3)
    n = "up_blocks.1.resnets.0.conv2"
    shape = w(un, n).shape
    k = "lora_unet_" + kohya(n)
    a1, b1 = 2, 2
    assert shape[0] % a1 == 0 and shape[1] % b1 == 0
    t = {"lokr_w1_a": rnd(a1, 1), "lokr_w1_b": rnd(1, b1), "lokr_w2": rnd(shape[0] // a1, shape[1] // b1, 3, 3)}
    sd.update({k + "." + a: b for a, b in t.items()})
    sd[k + ".alpha"] = torch.tensor(0.5)
    deltas["unet." + n + ".weight"] = lyco_ref.lokr(None, t["lokr_w2"].numpy(), 0.5 / 1, shape, w1a=t["lokr_w1_a"].numpy(),
                                                     w1b=t["lokr_w1_b"].numpy())
    # LoKr: full w1, Tucker w2 (conv 3x3), no alpha (scale alpha/rank = 1)
    n = "down_blocks.1.resnets.1.conv2"
    shape = w(un, n).shape
    k = "lora_unet_" + kohya(n)
    a1, b1, r = 2, 2, 2
    t = {"lokr_w1": rnd(a1, b1), "lokr_w2_a": rnd(r, shape[0] // a1), "lokr_w2_b": rnd(r, shape[1] // b1),
         "lokr_t2": rnd(r, r, 3, 3)}
    sd.update({k + "." + a: b for a, b in t.items()})
    deltas["unet." + n + ".weight"] = lyco_ref.lokr(t["lokr_w1"].numpy(), None, 1.0, shape, w2a=t["lokr_w2_a"].numpy(),
                                                     w2b=t["lokr_w2_b"].numpy(), t2=t["lokr_t2"].numpy())
    # Tucker LoCon (lora_mid)
    n = "up_blocks.2.resnets.1.conv1"
    shape = w(un, n).shape
    k = "lora_unet_" + kohya(n)
    r = 3
    t = {"lora_down.weight": rnd(r, shape[1], 1, 1), "lora_mid.weight": rnd(r, r, 3, 3),
         "lora_up.weight": rnd(shape[0], r, 1, 1)}
    sd.update({k + "." + a: b for a, b in t.items()})
    sd[k + ".alpha"] = torch.tensor(2.0)
    deltas["unet." + n + ".weight"] = lyco_ref.lora(t["lora_up.weight"].numpy(), t["lora_down.weight"].numpy(), 2.0 / r,
                                                     shape, mid=t["lora_mid.weight"].numpy())
    # full diff + diff_b
    n = "mid_block.attentions.0.transformer_blocks.0.ff.net.2"
    shape = w(un, n).shape
    k = "lora_unet_" + kohya(n)
    d, db = rnd(*shape, s=0.05), rnd(shape[0], s=0.05)
    sd[k + ".diff"], sd[k + ".diff_b"] = d, db
    deltas["unet." + n + ".weight"] = d.numpy().astype(np.float64)
    deltas["unet." + n + ".bias"] = db.numpy().astype(np.float64)
    save_file(sd, path)
    return deltas


def fuse(pipe, files, scale):
    for f in files:
        pipe.load_lora_weights(LORA_DIR, weight_name=f + ".safetensors", adapter_name=f)
    if len(files) == 1:
        pipe.fuse_lora(lora_scale=scale[0], adapter_names=files)
    else:
        pipe.set_adapters(files, adapter_weights=scale)


def generate(pipe, sampler, steps, cfg, seed):
    if sampler == "LCM":
        sched = LCMScheduler.from_config(pipe.scheduler.config, timestep_spacing="leading", steps_offset=1,
                                         clip_sample=False, original_inference_steps=50)
    else:
        sched = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace", steps_offset=1)
    pipe.scheduler = sched
    with torch.no_grad():
        img = pipe(prompt=PROMPT, num_inference_steps=steps, guidance_scale=cfg, height=64, width=64,
                   generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
    return torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2)))


def main():
    torch.set_num_threads(1)
    os.makedirs(LORA_DIR, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sdrt-lora-")
    out = {}
    try:
        toks = {m: gp.tokenizer_for(m, tmp) for m in ("tiny-sd1", "tiny-sd2")}

        def load(m):
            p = StableDiffusionPipeline.from_pretrained(os.path.join(gp.MODELS, m), tokenizer=toks[m],
                                                        safety_checker=None, feature_extractor=None,
                                                        requires_safety_checker=False, torch_dtype=torch.float32)
            p.set_progress_bar_config(disable=True)
            return p

        p1, p2 = load("tiny-sd1"), load("tiny-sd2")
        sd1 = kohya_file(p1, True, {"attn"}, 4, 2.0, os.path.join(LORA_DIR, "sd1_kohya.safetensors"),
                         {"ss_output_name": "kohya_alias", "ss_network_dim": "4"})
        save_file({k: v for k, v in sd1.items() if k.startswith("lora_unet_")}, os.path.join(LORA_DIR, "sd1_unet.safetensors"))
        save_file({k: v for k, v in sd1.items() if k.startswith("lora_te_")}, os.path.join(LORA_DIR, "sd1_te.safetensors"))
        kohya_file(p1, False, {"conv"}, 3, 6.0, os.path.join(LORA_DIR, "sd1_locon.safetensors"))
        peft_file(p1, 2, os.path.join(LORA_DIR, "sd1_peft.safetensors"))
        lyco = lyco_file(p1, os.path.join(LORA_DIR, "sd1_lyco.safetensors"))
        kohya_file(p1, False, {"attn", "conv"}, 4, 4.0, os.path.join(LORA_DIR, "sd1_lcm.safetensors"))
        kohya_file(p2, True, {"attn"}, 4, 2.0, os.path.join(LORA_DIR, "sd2_kohya.safetensors"))
        base = {m: {"te": {k: v.clone() for k, v in p.text_encoder.state_dict().items()},
                    "unet": {k: v.clone() for k, v in p.unet.state_dict().items()}} for m, p in
                (("tiny-sd1", p1), ("tiny-sd2", p2))}
        for name, model, loras, sampler, steps, cfg, seed in CASES:
            pipe = load(model)
            files, scales = [f for f, _ in loras], [s for _, s in loras]
            if name == "lyco":
                tsd, usd = pipe.text_encoder.state_dict(), pipe.unet.state_dict()
                for k, d in lyco.items():
                    comp, pname = k.split(".", 1)
                    tgt = tsd if comp == "te" else usd
                    tgt[pname] = (tgt[pname].double() + scales[0] * torch.from_numpy(d)).float()
                pipe.text_encoder.load_state_dict(tsd)
                pipe.unet.load_state_dict(usd)
            else:
                fuse(pipe, files, scales)
            out[name + ".image"] = generate(pipe, sampler, steps, cfg, seed)
            if len(files) == 1:  # merged weights: the touched tensors, a few per component
                for comp, mod in (("te", pipe.text_encoder), ("unet", pipe.unet)):
                    sd = {k.replace(".base_layer", ""): v for k, v in mod.state_dict().items() if "lora_" not in k}
                    changed = sorted(k for k, v in sd.items() if k in base[model][comp] and
                                     not torch.equal(v, base[model][comp][k]))
                    for k in changed[:: max(1, len(changed) // 4)][:5]:
                        out[f"{name}.w.{comp}.{k}"] = sd[k].float().contiguous()
            print(name, "image mean", float(out[name + ".image"].mean()))
    finally:
        shutil.rmtree(tmp)
    model_io.save_golden(OUT, out, "LoRA merges and generations on the tiny models",
                         {"generator": "tests/reference/gen_lora.py", "cases": json.dumps(CASES), "prompt": PROMPT})
    print("wrote", OUT, len(out), "tensors,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
