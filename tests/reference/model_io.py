"""model_io.py: helpers shared by gen_tiny.py and gen_full.py: seeded re-randomisation
of every parameter, rounding weights to values exact in f16 and bf16, writing
diffusers folders, LDM single files and golden files.

Contract: randomise() touches every parameter of a module (nothing keeps its
zero/one default init); round_exact() makes each value exactly representable in
float32, float16 and bfloat16, so one set of goldens serves files stored in any of
the three types. Reference tooling only (tests/reference/README.md).
"""

import json
import math
import os

import torch

GOLDEN_FORMAT = "sdrt-golden"
GOLDEN_VERSION = "1"

# Real SD scheduler/scheduler_config.json contents (sd-reference 5.1, 9.1).
SCHEDULER_SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SCHEDULER_SD15_INPAINT = dict(SCHEDULER_SD15, _class_name="DDIMScheduler")
SCHEDULER_SD21 = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

_SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>"}


def tokenizer_files(pad_token):
    """tokenizer_config.json and special_tokens_map.json (no vocab: the C tokenizer
    reads it from build/vocab). SD1 pads with <|endoftext|> (49407), SD2 with "!" (0)."""
    special = dict(_SPECIAL, pad_token=pad_token)
    config = dict(special, add_prefix_space=False, do_lower_case=True, errors="replace",
                  model_max_length=77, tokenizer_class="CLIPTokenizer")
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


def write_pipeline_meta(d, scheduler, pad_token, inpaint=False):
    """model_index.json, scheduler/ and tokenizer/ (configs only) of a diffusers folder."""
    write_json(os.path.join(d, "scheduler", "scheduler_config.json"), scheduler)
    for fname, obj in tokenizer_files(pad_token).items():
        write_json(os.path.join(d, "tokenizer", fname), obj)
    write_json(os.path.join(d, "model_index.json"), {
        "_class_name": "StableDiffusionInpaintPipeline" if inpaint else "StableDiffusionPipeline",
        "_diffusers_version": "0.31.0",
        "feature_extractor": [None, None], "safety_checker": [None, None],
        "requires_safety_checker": False,
        "scheduler": ["diffusers", scheduler["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })


def randomise(model, seed, max_std=0.2, emb_std=0.2):
    """Overwrite every parameter with seeded normal values: norm weights 1 + 0.1 N,
    norm and other biases 0.05 N, embeddings emb_std N, other weights
    min(max_std, 1/sqrt(fan_in)) N. Deterministic in (model structure, seed)."""
    g = torch.Generator().manual_seed(seed)
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    n = 0
    with torch.no_grad():
        for _, mod in model.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                r = torch.randn(p.shape, generator=g, dtype=torch.float32)
                if isinstance(mod, norms):
                    v = 1.0 + 0.1 * r if pname == "weight" else 0.1 * r
                elif isinstance(mod, torch.nn.Embedding):
                    v = emb_std * r
                elif p.ndim == 1:
                    v = 0.05 * r
                else:
                    fan_in = p[0].numel()
                    v = min(max_std, 1.0 / math.sqrt(fan_in)) * r
                p.copy_(round_exact(v))
                n += 1
    if n != len(list(model.parameters())):
        raise RuntimeError("randomise: some parameters were not reached")
    return model


def round_exact(t):
    """Round to bfloat16 precision (8 significant bits) and flush values below the
    float16 normal range to zero: the result is exact in f32, f16 and bf16."""
    r = t.to(torch.bfloat16).to(torch.float32)
    r[r.abs() < 2.0 ** -14] = 0.0
    if not (torch.equal(r.half().float(), r) and torch.equal(r.bfloat16().float(), r)):
        raise RuntimeError("round_exact: value not exact in f16/bf16")
    return r


def cast_floats(sd, dtype, keep=()):
    """Copy of a state dict with floating tensors cast to dtype (names in keep and
    integer tensors untouched)."""
    out = {}
    for k, v in sd.items():
        out[k] = v.to(dtype).contiguous() if v.is_floating_point() and k not in keep else v.contiguous()
    return out


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
              torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
              torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def save_file(tensors, path, metadata, float_dtype=None):
    """Streaming safetensors writer with a reproducible layout: header JSON with sorted
    keys, data ordered by element size (largest first, so every tensor is aligned to
    its element size: the header is padded to 8 bytes) then by name. With float_dtype,
    floating tensors are cast one at a time while writing (no second copy of a
    multi-GB state dict in memory). Files are read back with the safetensors library
    in gen_tiny.py / gen_full.py."""
    def dtype_of(t):
        return float_dtype if float_dtype is not None and t.is_floating_point() else t.dtype

    def size_of(dt):
        return torch.empty((), dtype=dt).element_size()

    names = sorted(tensors, key=lambda k: (-size_of(dtype_of(tensors[k])), k))
    header, off = {}, 0
    for k in names:
        t = tensors[k]
        n = t.numel() * size_of(dtype_of(t))
        header[k] = {"dtype": _ST_DTYPES[dtype_of(t)], "shape": list(t.shape),
                     "data_offsets": [off, off + n]}
        off += n
    if metadata:
        header["__metadata__"] = dict(metadata)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for k in names:
            t = tensors[k].detach().to("cpu", dtype_of(tensors[k])).contiguous().reshape(-1)
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            f.write(t.numpy().data)
    os.replace(tmp, path)


def save_tensors(path, tensors, metadata=None, float_dtype=None):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    meta = {"format": "pt"}
    meta.update(metadata or {})
    save_file(tensors, path, meta, float_dtype)


def save_golden(path, tensors, what, extra=None):
    """A golden file: named tensors plus __metadata__ format/version/description."""
    import diffusers
    import transformers
    meta = {"format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, "content": what,
            "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}
    meta.update(extra or {})
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    save_file(tensors, path, meta)


def schedule_buffers():
    """The float32 [1000] schedule buffers of LDM checkpoints (betas, alphas_cumprod,
    ...), computed in float64 like LDM's register_schedule (linear, 0.00085..0.012)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    acp = torch.cumprod(alphas, 0)
    acp_prev = torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
    bufs = {
        "betas": betas,
        "alphas_cumprod": acp,
        "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": acp.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - acp).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - acp).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / acp).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / acp - 1).sqrt(),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": torch.log(torch.clamp(post_var, min=1e-20)),
        "posterior_mean_coef1": betas * acp_prev.sqrt() / (1.0 - acp),
        "posterior_mean_coef2": (1.0 - acp_prev) * alphas.sqrt() / (1.0 - acp),
    }
    return {k: v.to(torch.float32) for k, v in bufs.items()}


def ema_keys(unet_ldm, perturb_seed):
    """model_ema.* copies of model.diffusion_model.* tensors (every '.' after
    'model.' removed, sd-reference 0.4), deliberately perturbed so that a loader
    that picks them instead of model.diffusion_model.* gives different outputs;
    plus the model_ema.decay / model_ema.num_updates scalars real files carry."""
    g = torch.Generator().manual_seed(perturb_seed)
    out = {}
    for k, v in unet_ldm.items():
        flat = "model_ema." + k[len("model."):].replace(".", "")
        out[flat] = (v + round_exact(0.01 * torch.randn(v.shape, generator=g))).to(v.dtype)
    out["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    out["model_ema.num_updates"] = torch.tensor(123456, dtype=torch.int32)
    return out
