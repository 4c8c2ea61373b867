"""ldm_keys.py: diffusers -> original LDM ("single-file") tensor names, the inverse
of diffusers' single-file converters, written from sd-reference sections 2.4, 3.6, 4.5.

Contract: each function takes a diffusers state dict (name -> tensor) plus the
model config and returns a new dict with LDM names (prefix included). Every input
key must be consumed exactly once, or a KeyError/ValueError names the leftover, so
a silently dropped tensor cannot happen. Tensors are not copied except where the
LDM layout differs (VAE attention 1x1 convs, OpenCLIP packed in_proj).
Reference tooling only (tests/reference/README.md).
"""

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_CLIP_PREFIX = "cond_stage_model.model."

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

_UNET_TOP = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _take(sd, used, key):
    if key not in sd:
        raise KeyError(f"missing diffusers tensor {key}")
    if key in used:
        raise ValueError(f"diffusers tensor {key} mapped twice")
    used.add(key)
    return sd[key]


def _move_prefix(sd, used, out, old, new, rename=None):
    """Map every key under `old.` to `new.`, renaming the first suffix component
    through `rename` (dict) when given."""
    n = 0
    for k in sorted(sd):
        if not k.startswith(old + "."):
            continue
        suffix = k[len(old) + 1:]
        if rename:
            head, _, rest = suffix.partition(".")
            head = rename.get(head, head)
            suffix = head + ("." + rest if rest else "")
        out[new + "." + suffix] = _take(sd, used, k)
        n += 1
    if n == 0:
        raise KeyError(f"no diffusers tensors under {old}")


def _check_all_used(sd, used, what):
    left = sorted(set(sd) - used)
    if left:
        raise ValueError(f"{what}: {len(left)} diffusers tensors not mapped, e.g. {left[:5]}")


def unet_to_ldm(sd, config):
    """UNet2DConditionModel state dict -> model.diffusion_model.* (sd-reference 3.6).

    Generic in layers_per_block L and the number of levels: input block n >= 1 is
    down block (n-1)//(L+1), layer (n-1)%(L+1) (layer L = downsampler `n.0.op`);
    output block n is up block n//(L+1), layer n%(L+1); the upsampler sits at
    output_blocks.{u(L+1)+L}.{1 without attention, 2 with}.conv."""
    L = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    used, out = set(), {}
    for dk, lk in _UNET_TOP.items():
        for s in ("weight", "bias"):
            out[f"{lk}.{s}"] = _take(sd, used, f"{dk}.{s}")
    for i in range(levels):
        base = 1 + i * (L + 1)
        has_attn = config["down_block_types"][i].startswith("CrossAttn")
        for j in range(L):
            _move_prefix(sd, used, out, f"down_blocks.{i}.resnets.{j}",
                         f"input_blocks.{base + j}.0", _UNET_RESNET)
            if has_attn:
                _move_prefix(sd, used, out, f"down_blocks.{i}.attentions.{j}",
                             f"input_blocks.{base + j}.1")
        if i < levels - 1:
            _move_prefix(sd, used, out, f"down_blocks.{i}.downsamplers.0.conv",
                         f"input_blocks.{base + L}.0.op")
    _move_prefix(sd, used, out, "mid_block.resnets.0", "middle_block.0", _UNET_RESNET)
    _move_prefix(sd, used, out, "mid_block.attentions.0", "middle_block.1")
    _move_prefix(sd, used, out, "mid_block.resnets.1", "middle_block.2", _UNET_RESNET)
    for u in range(levels):
        base = u * (L + 1)
        has_attn = config["up_block_types"][u].startswith("CrossAttn")
        for j in range(L + 1):
            _move_prefix(sd, used, out, f"up_blocks.{u}.resnets.{j}",
                         f"output_blocks.{base + j}.0", _UNET_RESNET)
            if has_attn:
                _move_prefix(sd, used, out, f"up_blocks.{u}.attentions.{j}",
                             f"output_blocks.{base + j}.1")
        if u < levels - 1:
            _move_prefix(sd, used, out, f"up_blocks.{u}.upsamplers.0.conv",
                         f"output_blocks.{base + L}.{2 if has_attn else 1}.conv")
    _check_all_used(sd, used, "unet")
    return {UNET_PREFIX + k: v for k, v in out.items()}


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


def _vae_mid(sd, used, out, side):
    _move_prefix(sd, used, out, f"{side}.mid_block.resnets.0", f"{side}.mid.block_1",
                 {"conv_shortcut": "nin_shortcut"})
    _move_prefix(sd, used, out, f"{side}.mid_block.resnets.1", f"{side}.mid.block_2",
                 {"conv_shortcut": "nin_shortcut"})
    a = f"{side}.mid_block.attentions.0"
    for dk, lk in _VAE_ATTN.items():
        src = f"{a}.{dk}.0" if dk == "to_out" else f"{a}.{dk}"
        for s in ("weight", "bias"):
            t = _take(sd, used, f"{src}.{s}")
            if s == "weight" and dk != "group_norm":
                t = t.reshape(t.shape[0], t.shape[1], 1, 1)  # LDM stores 1x1 convs
            out[f"{side}.mid.attn_1.{lk}.{s}"] = t


def vae_to_ldm(sd, config):
    """AutoencoderKL state dict -> first_stage_model.* (sd-reference 4.5).
    Decoder up block u is LDM up.{n-1-u}; attention q/k/v/proj_out become [C,C,1,1]."""
    n = len(config["block_out_channels"])
    L = config["layers_per_block"]
    used, out = set(), {}
    short = {"conv_shortcut": "nin_shortcut"}
    for k in ("encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out",
              "quant_conv", "post_quant_conv"):
        for s in ("weight", "bias"):
            out[f"{k}.{s}"] = _take(sd, used, f"{k}.{s}")
    for side in ("encoder", "decoder"):
        for s in ("weight", "bias"):
            out[f"{side}.norm_out.{s}"] = _take(sd, used, f"{side}.conv_norm_out.{s}")
        _vae_mid(sd, used, out, side)
    for i in range(n):
        for j in range(L):
            _move_prefix(sd, used, out, f"encoder.down_blocks.{i}.resnets.{j}",
                         f"encoder.down.{i}.block.{j}", short)
        if i < n - 1:
            _move_prefix(sd, used, out, f"encoder.down_blocks.{i}.downsamplers.0.conv",
                         f"encoder.down.{i}.downsample.conv")
    for u in range(n):
        ldm = n - 1 - u
        for j in range(L + 1):
            _move_prefix(sd, used, out, f"decoder.up_blocks.{u}.resnets.{j}",
                         f"decoder.up.{ldm}.block.{j}", short)
        if u < n - 1:
            _move_prefix(sd, used, out, f"decoder.up_blocks.{u}.upsamplers.0.conv",
                         f"decoder.up.{ldm}.upsample.conv")
    _check_all_used(sd, used, "vae")
    return {VAE_PREFIX + k: v for k, v in out.items()}


def sd1_clip_to_ldm(sd, max_positions=77):
    """CLIPTextModel state dict -> cond_stage_model.transformer.text_model.* (names
    unchanged), plus the int64 position_ids buffer that real SD1 files carry."""
    out = {SD1_CLIP_PREFIX + k: v for k, v in sd.items()}
    pid = SD1_CLIP_PREFIX + "text_model.embeddings.position_ids"
    if pid not in out:
        out[pid] = torch.arange(max_positions, dtype=torch.int64).unsqueeze(0)
    return out


_OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def sd2_clip_to_openclip(sd, n_layers, text_projection, logit_scale):
    """CLIPTextModel state dict (n_layers layers, i.e. including the extra last layer
    that SD2 does not use) -> cond_stage_model.model.* OpenCLIP names with packed
    in_proj (rows q, k, v) (sd-reference 2.4). `text_projection` is stored as given
    ([width, embed], OpenCLIP orientation); `logit_scale` is a 0-dim tensor."""
    used, out = set(), {}
    t = "text_model."
    out["token_embedding.weight"] = _take(sd, used, t + "embeddings.token_embedding.weight")
    out["positional_embedding"] = _take(sd, used, t + "embeddings.position_embedding.weight")
    for s in ("weight", "bias"):
        out[f"ln_final.{s}"] = _take(sd, used, f"{t}final_layer_norm.{s}")
    for i in range(n_layers):
        d = f"{t}encoder.layers.{i}."
        o = f"transformer.resblocks.{i}."
        for dk, ok in _OPENCLIP_LAYER.items():
            for s in ("weight", "bias"):
                out[o + f"{ok}.{s}"] = _take(sd, used, d + f"{dk}.{s}")
        for s in ("weight", "bias"):
            q, k, v = (_take(sd, used, d + f"self_attn.{p}_proj.{s}") for p in "qkv")
            out[o + f"attn.in_proj_{s}"] = torch.cat([q, k, v], 0).contiguous()
    pid = t + "embeddings.position_ids"
    if pid in sd:
        used.add(pid)  # a buffer OpenCLIP does not have
    _check_all_used(sd, used, "openclip text encoder")
    out["text_projection"] = text_projection
    out["logit_scale"] = logit_scale
    return {SD2_CLIP_PREFIX + k: v for k, v in out.items()}
