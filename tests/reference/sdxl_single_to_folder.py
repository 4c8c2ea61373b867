#!/usr/bin/env python3
"""sdxl_single_to_folder.py: the diffusers folder of an SDXL-base single file (SGM key
names), with exactly its weights: written tensor by tensor from the mmap'd file (the
peak memory is one tensor, not the 6.5 GB model), no regeneration.

Made for the full-size random SDXL of gen_full_sdxl.py (models/sdxl-random-f16.safetensors,
every tensor its own seed), so that peers that read diffusers folders (OpenVINO's export,
bench/peer_openvino.py) run the same model as sdrt:
    .venv/bin/python tests/reference/sdxl_single_to_folder.py models/sdxl-random-f16.safetensors \
        models/sdxl-random-f16 [--smoke] [--no-verify]
Configs are built in code (gen_full_sdxl.py's, --smoke: its small widths; no hub).
The name mapping is the inverse of tests/reference/ldm_keys.py, derived by running its
diffusers -> LDM functions on name tags of a diffusers model with the same structure
(small widths; the names do not depend on widths). Layout changes are undone: the VAE
mid attention's 1x1 convs become linears, OpenCLIP's packed in_proj is split into q, k,
v, text_projection [width, embed] is transposed into a Linear weight, logit_scale is
dropped. Tensors keep the file's dtype (f16).

Verification (unless --no-verify): every tensor of the folder equals, bit for bit, what
diffusers' own single-file converters (diffusers.loaders.single_file_utils) make of the
single file, component by component (peak: the UNet's f16 tensors, ~5 GB).
Reference tooling only (tests/reference/README.md).
"""

import argparse
import json
import os
import sys
import time

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_full_sdxl as full  # noqa: E402  (configs)
import gen_tiny_sdxl as tiny  # noqa: E402  (SGM prefixes, scheduler, folder layout)
import ldm_keys  # noqa: E402
import model_io  # noqa: E402

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

_ST = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "I64": torch.int64}


def log(msg, t0=[time.time()]):
    print(f"[{time.time() - t0[0]:7.1f}s] {msg}", flush=True)


class Tag:
    """Stands for a diffusers tensor while ldm_keys maps names: remembers its name and
    whether the mapping reshaped it (VAE attention linears -> 1x1 convs)."""

    shape = (0, 0)

    def __init__(self, name, reshaped=False):
        self.name, self.reshaped = name, reshaped

    def reshape(self, *shape):
        return Tag(self.name, True)


def narrow(spec):
    """The same structure at small widths (a model whose key names are the full one's: levels
    of equal width stay equal, so shortcut convolutions appear where they do at full size)."""
    s = dict(spec)
    if "block_out_channels" in s:
        rank = sorted(set(s["block_out_channels"]))
        s.update(block_out_channels=[8 * (rank.index(c) + 1) for c in s["block_out_channels"]], norm_num_groups=4)
    if "transformer_layers_per_block" in s:  # UNet
        n = len(s["block_out_channels"])
        s.update(cross_attention_dim=32, attention_head_dim=[1] * n, addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=32 + 6 * 8)
    elif "block_out_channels" in s:  # VAE
        pass
    else:  # text encoder
        s.update(hidden_size=8, intermediate_size=16, num_attention_heads=2, projection_dim=8)
    return s


class Source:
    """The single file, read lazily (safetensors mmap)."""

    def __init__(self, path):
        self.f = safe_open(path, framework="pt")
        self.keys = set(self.f.keys())
        self.used = set()

    def shape(self, key):
        return list(self.f.get_slice(key).get_shape())

    def dtype(self, key):
        return _ST[self.f.get_slice(key).get_dtype()]

    def get(self, key):
        if key not in self.keys:
            raise KeyError(f"single file lacks {key}")
        self.used.add(key)
        return self.f.get_tensor(key)


# A folder entry: (shape, dtype, fn () -> tensor).

def unet_plan(src, spec):
    m = UNet2DConditionModel(**narrow(spec))
    names = {k: Tag(k) for k in m.state_dict()}
    label = {f"{ldm_keys.UNET_PREFIX}label_emb.0.{i}.{s}": names.pop(f"add_embedding.linear_{j}.{s}")
             for i, j in ((0, 1), (2, 2)) for s in ("weight", "bias")}
    cfg = dict(m.config, **spec)
    plan = {}
    for lk, tag in {**ldm_keys.unet_to_ldm(names, cfg), **label}.items():
        plan[tag.name] = (src.shape(lk), src.dtype(lk), lambda lk=lk: src.get(lk))
    return plan, cfg


def vae_plan(src, spec):
    m = AutoencoderKL(**narrow(spec))
    cfg = dict(m.config, **spec)
    plan = {}
    for lk, tag in ldm_keys.vae_to_ldm({k: Tag(k) for k in m.state_dict()}, cfg).items():
        shape = src.shape(lk)
        if tag.reshaped:  # [C, C, 1, 1] conv -> [C, C] linear
            plan[tag.name] = (shape[:2], src.dtype(lk), lambda lk=lk: src.get(lk).reshape(src.shape(lk)[:2]))
        else:
            plan[tag.name] = (shape, src.dtype(lk), lambda lk=lk: src.get(lk))
    return plan, cfg


def te1_plan(src, spec):
    m = CLIPTextModel(full.cfg(narrow(spec)))
    plan = {}
    for k in m.state_dict():
        lk = tiny.SGM_TE1 + k
        plan[k] = (src.shape(lk), src.dtype(lk), lambda lk=lk: src.get(lk))
    pid = tiny.SGM_TE1 + "text_model.embeddings.position_ids"
    if pid in src.keys:
        src.used.add(pid)  # a buffer transformers does not save
    return plan, full.cfg(spec)


def te2_plan(src, spec):
    m = CLIPTextModelWithProjection(full.cfg(narrow(spec)))
    width = spec["hidden_size"]
    oc = tiny.SGM_TE2
    plan = {}
    for k in m.state_dict():
        if k == "text_model.embeddings.token_embedding.weight":
            lk = oc + "token_embedding.weight"
        elif k == "text_model.embeddings.position_embedding.weight":
            lk = oc + "positional_embedding"
        elif k.startswith("text_model.final_layer_norm."):
            lk = oc + "ln_final." + k.rsplit(".", 1)[1]
        elif k == "text_projection.weight":
            lk = oc + "text_projection"
            s = src.shape(lk)
            plan[k] = ([s[1], s[0]], src.dtype(lk), lambda lk=lk: src.get(lk).t().contiguous())
            continue
        elif k == "text_model.embeddings.position_ids":
            plan[k] = ([1, 77], torch.int64, lambda: torch.arange(77, dtype=torch.int64).unsqueeze(0))
            continue
        else:
            rest = k[len("text_model.encoder.layers."):]
            layer, _, name = rest.partition(".")
            base = f"{oc}transformer.resblocks.{layer}."
            head, suffix = name.rsplit(".", 1)
            if head in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                lk = base + f"attn.in_proj_{suffix}"
                i = "qkv".index(head[len("self_attn.")])
                s = src.shape(lk)
                plan[k] = ([width] + s[1:], src.dtype(lk),
                           lambda lk=lk, i=i: src.get(lk)[i * width:(i + 1) * width].contiguous())
                continue
            lk = base + ldm_keys._OPENCLIP_LAYER[head] + "." + suffix
        plan[k] = (src.shape(lk), src.dtype(lk), lambda lk=lk: src.get(lk))
    if oc + "logit_scale" in src.keys:
        src.used.add(oc + "logit_scale")  # OpenCLIP's, not part of the text model
    return plan, full.cfg(spec)


_NAMES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64"}


def write_plan(path, plan):
    """A safetensors file written one tensor at a time (layout as model_io.save_file)."""
    size = {torch.float16: 2, torch.bfloat16: 2, torch.float32: 4, torch.int64: 8}
    names = sorted(plan, key=lambda k: (-size[plan[k][1]], k))
    header, off = {}, 0
    for k in names:
        shape, dt, _ = plan[k]
        n = size[dt]
        for d in shape:
            n *= d
        header[k] = {"dtype": _NAMES[dt], "shape": shape, "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for k in names:
            shape, dt, get = plan[k]
            t = get()
            if list(t.shape) != shape or t.dtype != dt:
                raise RuntimeError(f"{k}: got {list(t.shape)} {t.dtype}, planned {shape} {dt}")
            t = t.contiguous().reshape(-1)
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            f.write(t.numpy().data)
            del t
    os.replace(tmp, path)


def write_configs(d, unet_cfg, vae_cfg, te1_cfg, te2_cfg, dtype):
    dname = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}[dtype]
    for sub, cls, cfg in (("unet", "UNet2DConditionModel", unet_cfg), ("vae", "AutoencoderKL", vae_cfg)):
        c = {k: v for k, v in cfg.items() if not k.startswith("_")}
        model_io.write_json(os.path.join(d, sub, "config.json"),
                            dict(c, _class_name=cls, _diffusers_version="0.31.0"))
    for sub, cls, cfg in (("text_encoder", "CLIPTextModel", te1_cfg),
                          ("text_encoder_2", "CLIPTextModelWithProjection", te2_cfg)):
        cfg.architectures = [cls]
        cfg.torch_dtype = dname
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        cfg.to_json_file(os.path.join(d, sub, "config.json"))
    model_io.write_pipeline_meta(d, tiny.SCHEDULER, "<|endoftext|>")
    for fname, obj in model_io.tokenizer_files("!").items():
        model_io.write_json(os.path.join(d, "tokenizer_2", fname), obj)
    model_io.write_json(os.path.join(d, "model_index.json"), {
        "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.31.0",
        "force_zeros_for_empty_prompt": True, "feature_extractor": [None, None], "image_encoder": [None, None],
        "scheduler": ["diffusers", tiny.SCHEDULER["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    })


def verify(path, d, unet_cfg, vae_cfg, te2_cfg):
    """The folder against diffusers' single-file converters, bit for bit, one component at a time."""
    from diffusers.loaders import single_file_utils as sfu

    src = safe_open(path, framework="pt")

    def part(prefixes):
        return {k: src.get_tensor(k) for k in src.keys() if k.startswith(prefixes)}

    def check(what, got, sub):
        with safe_open(os.path.join(d, sub, sub_file(sub)), framework="pt") as f:
            keys = set(f.keys())
            got = {k: v for k, v in got.items() if k != "text_model.embeddings.position_ids"}
            keys.discard("text_model.embeddings.position_ids")
            if keys != set(got):
                raise RuntimeError(f"{what}: key sets differ: {sorted(keys - set(got))[:4]} / "
                                   f"{sorted(set(got) - keys)[:4]}")
            for k in sorted(keys):
                a, b = f.get_tensor(k), got[k]
                if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
                    raise RuntimeError(f"{what}: tensor {k} differs ({a.shape} {a.dtype} / {b.shape} {b.dtype})")
        log(f"verified {what}: {len(keys)} tensors equal to diffusers' converter's")

    ck = part(ldm_keys.UNET_PREFIX)
    check("unet", sfu.convert_ldm_unet_checkpoint(ck, unet_cfg), "unet")
    del ck
    ck = part(ldm_keys.VAE_PREFIX)
    check("vae", sfu.convert_ldm_vae_checkpoint(ck, vae_cfg), "vae")
    ck = part(tiny.SGM_TE1)
    check("text_encoder", {k[len(tiny.SGM_TE1):]: v for k, v in ck.items()}, "text_encoder")
    ck = part(tiny.SGM_TE2)
    te2 = CLIPTextModelWithProjection(full.cfg(narrow(te2_cfg)))  # only its config is read
    check("text_encoder_2", sfu.convert_open_clip_checkpoint(te2, ck, prefix=tiny.SGM_TE2), "text_encoder_2")


def sub_file(sub):
    return "diffusion_pytorch_model.safetensors" if sub in ("unet", "vae") else "model.safetensors"


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("single", help="SGM single file (gen_full_sdxl.py)")
    ap.add_argument("folder", help="diffusers folder to write")
    ap.add_argument("--smoke", action="store_true", help="the --smoke widths of gen_full_sdxl.py")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()
    te1_spec, te2_spec, unet_spec, vae_spec = full.smoke() if args.smoke else (full.TE1, full.TE2, full.UNET, full.VAE)
    src = Source(args.single)
    plans = {}
    plans["unet"], unet_cfg = unet_plan(src, unet_spec)
    plans["vae"], vae_cfg = vae_plan(src, vae_spec)
    plans["text_encoder"], te1_cfg = te1_plan(src, te1_spec)
    plans["text_encoder_2"], te2_cfg = te2_plan(src, te2_spec)
    dtype = src.dtype(ldm_keys.UNET_PREFIX + "input_blocks.0.0.weight")
    for sub, plan in plans.items():
        write_plan(os.path.join(args.folder, sub, sub_file(sub)), plan)
        log(f"wrote {sub}/ ({len(plan)} tensors, {sum(_numel(p[0]) for p in plan.values()) / 1e6:.1f} M values)")
    left = sorted(src.keys - src.used)
    if left:
        raise RuntimeError(f"{len(left)} tensors of the single file not written, e.g. {left[:5]}")
    write_configs(args.folder, unet_cfg, vae_cfg, te1_cfg, te2_cfg, dtype)
    log(f"wrote {args.folder}/ (every tensor of {args.single} used)")
    if not args.no_verify:
        verify(args.single, args.folder, unet_cfg, vae_cfg, te2_spec)


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
