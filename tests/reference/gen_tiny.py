#!/usr/bin/env python3
"""gen_tiny.py: builds the tiny SD1 / SD1-inpaint / SD2 models (real SD structure,
small widths, seeded random weights), saves each as a diffusers folder and as an
LDM single-file checkpoint under tests/models/, computes the goldens under
tests/golden/, and verifies the single files against the folders; then runs
gen_variants.py (variant models and their goldens; needs `make vocab`).

Contract: deterministic (same files byte for byte on every run with the pinned
environment); exits non-zero if any verification fails. Run from the repo root:
    make reference-venv && .venv/bin/python tests/reference/gen_tiny.py
What each file holds: tests/reference/README.md. Reference tooling only.
"""

import argparse
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_keys  # noqa: E402
import model_io  # noqa: E402
from model_io import round_exact  # noqa: E402

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from diffusers.loaders import single_file_utils as sfu  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()

TOKEN_EMB = "text_model.embeddings.token_embedding.weight"
SCALE = 0.18215

# ---------------------------------------------------------------- configurations

def clip_config(act, layers):
    return CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=128,
                          num_hidden_layers=layers, num_attention_heads=2,
                          max_position_embeddings=77, hidden_act=act, layer_norm_eps=1e-5,
                          projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)


SD1_TEXT_LAYERS = 3          # SD1: all layers used
SD2_TEXT_LAYERS = 2          # SD2 diffusers model; the single file stores 3 (one unused)

UNET_COMMON = dict(
    sample_size=8, in_channels=4, out_channels=4, center_input_sample=False,
    flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    block_out_channels=[8, 12, 20, 20], layers_per_block=2, downsample_padding=1,
    mid_block_scale_factor=1, act_fn="silu", norm_num_groups=4, norm_eps=1e-5,
    cross_attention_dim=32, upcast_attention=False,
)
UNET_SD1 = dict(UNET_COMMON, attention_head_dim=2, use_linear_projection=False)
UNET_SD1_INPAINT = dict(UNET_SD1, in_channels=9)
# SD2: attention_head_dim is the per-block head count, chosen so head_dim = 4 everywhere
# (the real [5, 10, 20, 20] gives head_dim 64); linear proj_in/proj_out.
UNET_SD2 = dict(UNET_COMMON, attention_head_dim=[2, 3, 5, 5], use_linear_projection=True)

VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 12, 16, 16],
           layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=4,
           sample_size=64, scaling_factor=SCALE)

SEEDS = dict(sd1_text=101, sd1_unet=102, inpaint_unet=103, vae=104, sd2_text=201,
             sd2_unet=202, sd2_proj=203, ema=301, inputs=401)

# Token id test vectors (sd-reference 1.5) before padding; the fourth row is a
# full-length random sequence (75 content ids) built in token_ids().
PROMPTS = ["", "a photo of a cat", "A photograph of an astronaut riding a horse",
           "(75 random content ids, seed 401)"]
IDS = [[49406, 49407],
       [49406, 320, 1125, 539, 320, 2368, 49407],
       [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]]


def token_ids(pad):
    g = torch.Generator().manual_seed(SEEDS["inputs"])
    rows = [r + [pad] * (77 - len(r)) for r in IDS]
    rows.append([49406] + torch.randint(0, 49406, (75,), generator=g).tolist() + [49407])
    return torch.tensor(rows, dtype=torch.int64)

# ---------------------------------------------------------------- building models


def build_models():
    m = {}
    torch.manual_seed(0)  # module constructors draw from the global RNG first
    m["sd1_text"] = model_io.randomise(CLIPTextModel(clip_config("quick_gelu", SD1_TEXT_LAYERS)),
                                       SEEDS["sd1_text"]).eval()
    # SD2: an OpenCLIP-like encoder with one layer more than diffusers keeps.
    full = model_io.randomise(CLIPTextModel(clip_config("gelu", SD2_TEXT_LAYERS + 1)),
                              SEEDS["sd2_text"]).eval()
    sd2 = CLIPTextModel(clip_config("gelu", SD2_TEXT_LAYERS)).eval()
    drop = f"text_model.encoder.layers.{SD2_TEXT_LAYERS}."
    sd2.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith(drop)})
    m["sd2_text_full"], m["sd2_text"] = full, sd2
    m["sd1_unet"] = model_io.randomise(UNet2DConditionModel(**UNET_SD1), SEEDS["sd1_unet"]).eval()
    m["inpaint_unet"] = model_io.randomise(UNet2DConditionModel(**UNET_SD1_INPAINT),
                                           SEEDS["inpaint_unet"]).eval()
    m["sd2_unet"] = model_io.randomise(UNet2DConditionModel(**UNET_SD2), SEEDS["sd2_unet"]).eval()
    m["vae"] = model_io.randomise(AutoencoderKL(**VAE), SEEDS["vae"]).eval()
    g = torch.Generator().manual_seed(SEEDS["sd2_proj"])
    m["sd2_text_projection"] = round_exact(torch.randn(32, 32, generator=g) / 32 ** 0.5)
    return m

# ---------------------------------------------------------------- saving


def text_tensors(model):
    """Text encoder state dict as stored: the [49408, 32] token embedding in F16 (it
    dominates the file; its values are f16-exact), everything else F32."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd[TOKEN_EMB] = sd[TOKEN_EMB].half()
    return sd


def write_folder(root, name, text, unet, vae, scheduler, pad_token, links=()):
    d = os.path.join(root, name)
    if os.path.lexists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for sub, comp in (("unet", unet), ("vae", vae)):
        if sub in links:
            continue
        comp.save_pretrained(os.path.join(d, sub), safe_serialization=True)
    if "text_encoder" not in links:
        text.save_pretrained(os.path.join(d, "text_encoder"), safe_serialization=True)
        model_io.save_tensors(os.path.join(d, "text_encoder", "model.safetensors"), text_tensors(text))
    for sub in links:  # shared with tiny-sd1, as the real inpainting model shares them
        os.symlink(os.path.join("..", "tiny-sd1", sub), os.path.join(d, sub))
    model_io.write_pipeline_meta(d, scheduler, pad_token, inpaint=unet.config.in_channels == 9)
    return d


def load_folder(d):
    return (CLIPTextModel.from_pretrained(os.path.join(d, "text_encoder")).eval(),
            UNet2DConditionModel.from_pretrained(os.path.join(d, "unet")).eval(),
            AutoencoderKL.from_pretrained(os.path.join(d, "vae")).eval())


def sd1_single(text, unet, vae):
    t = ldm_keys.sd1_clip_to_ldm(text_tensors(text))
    return {**ldm_keys.unet_to_ldm(unet.state_dict(), unet.config),
            **ldm_keys.vae_to_ldm(vae.state_dict(), vae.config), **t}


def sd2_single(m):
    t = text_tensors(m["sd2_text_full"])
    t = ldm_keys.sd2_clip_to_openclip(t, SD2_TEXT_LAYERS + 1, m["sd2_text_projection"],
                                      torch.tensor(2.6592600345611572))  # ln(1/0.07)
    return {**ldm_keys.unet_to_ldm(m["sd2_unet"].state_dict(), m["sd2_unet"].config),
            **ldm_keys.vae_to_ldm(m["vae"].state_dict(), m["vae"].config), **t}


def write_single_files(root, m):
    files = {}
    meta = {"sdrt_note": "tiny random-weight SD model for tests (tests/reference/gen_tiny.py)"}
    sd1 = sd1_single(m["sd1_text"], m["sd1_unet"], m["vae"])
    files["tiny-sd1.safetensors"] = {**sd1, **model_io.schedule_buffers()}
    f16 = model_io.cast_floats(sd1, torch.float16)
    unet16 = {k: v for k, v in f16.items() if k.startswith(ldm_keys.UNET_PREFIX)}
    files["tiny-sd1-f16.safetensors"] = {**f16, **model_io.ema_keys(unet16, SEEDS["ema"])}
    inp = sd1_single(m["sd1_text"], m["inpaint_unet"], m["vae"])
    files["tiny-sd1-inpaint-bf16.safetensors"] = model_io.cast_floats(inp, torch.bfloat16)
    files["tiny-sd2.safetensors"] = sd2_single(m)
    for name, tensors in files.items():
        model_io.save_tensors(os.path.join(root, name), tensors, meta)
    return sorted(files)

# ---------------------------------------------------------------- goldens


@torch.no_grad()
def clip_golden(text, ids):
    out = text(input_ids=ids, output_hidden_states=True)
    hs = out.hidden_states
    g = {"input_ids": ids.to(torch.int32), "last_hidden_state": out.last_hidden_state,
         "clip_skip_1": text.text_model.final_layer_norm(hs[-2])}
    for i, h in enumerate(hs):
        g[f"hidden_states.{i}"] = h
    return g


def _hooks(modules, store):
    hs = []
    for name, mod in modules:
        def hook(_m, _inp, out, name=name):
            store[name] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        hs.append(mod.register_forward_hook(hook))
    return hs


def unet_modules(unet):
    mods = [("temb", unet.time_embedding), ("conv_in", unet.conv_in), ("mid", unet.mid_block)]
    mods += [(f"down.{i}", b) for i, b in enumerate(unet.down_blocks)]
    mods += [(f"up.{i}", b) for i, b in enumerate(unet.up_blocks)]
    return mods


@torch.no_grad()
def unet_golden(unet, contexts, in_ch):
    """Two cases: a = 16x16 latents (2x2 at the deepest level, so every attention
    has several tokens), t = [981, 981] (a CFG pair: context rows 0, 1);
    b = 9x11 latents (nearest-resize upsampling), t = [1, 500.5] per sample,
    context rows 2, 3."""
    g = torch.Generator().manual_seed(SEEDS["inputs"] + in_ch)
    cases = {"a": ((16, 16), [981.0, 981.0], contexts[0:2]),
             "b": ((9, 11), [1.0, 500.5], contexts[2:4])}
    out = {}
    for c, ((h, w), ts, ctx) in cases.items():
        x = torch.randn(2, in_ch, h, w, generator=g)
        t = torch.tensor(ts, dtype=torch.float32)
        inter = {}
        hooks = _hooks(unet_modules(unet), inter)
        y = unet(x, t, encoder_hidden_states=ctx).sample
        for hk in hooks:
            hk.remove()
        out.update({f"{c}.sample": x, f"{c}.timestep": t, f"{c}.context": ctx.clone(),
                    f"{c}.out": y})
        out.update({f"{c}.inter.{k}": v for k, v in inter.items()})
    return out


@torch.no_grad()
def vae_golden(vae):
    g = torch.Generator().manual_seed(SEEDS["inputs"] + 100)
    latent = torch.randn(2, 4, 6, 5, generator=g)
    z = latent / SCALE
    inter = {}
    mods = [("post_quant_conv", vae.post_quant_conv), ("mid", vae.decoder.mid_block)]
    mods += [(f"up.{i}", b) for i, b in enumerate(vae.decoder.up_blocks)]
    hooks = _hooks(mods, inter)
    image = vae.decode(z).sample
    for hk in hooks:
        hk.remove()
    img_in = torch.rand(1, 3, 48, 40, generator=g) * 2 - 1
    moments = vae.quant_conv(vae.encoder(img_in))
    dist = vae.encode(img_in).latent_dist
    if not torch.equal(dist.mean, moments[:, :4]):
        raise RuntimeError("vae: encode mean != quant_conv(encoder(x))[:, :4]")
    out = {"decode.latent": latent, "decode.z": z, "decode.image": image,
           "encode.image": img_in, "encode.moments": moments, "encode.mean": dist.mean,
           "encode.logvar": dist.logvar, "encode.std": dist.std,
           "encode.latent": dist.mean * SCALE}
    out.update({f"decode.inter.{k}": v for k, v in inter.items()})
    return out

# ---------------------------------------------------------------- verification


def check_equal(what, a, b):
    if a.keys() != b.keys():
        raise RuntimeError(f"{what}: key sets differ: only in first {sorted(a.keys() - b.keys())[:4]}, "
                           f"only in second {sorted(b.keys() - a.keys())[:4]}")
    for k in a:
        if a[k].shape != b[k].shape or not torch.equal(a[k].float(), b[k].float()):
            raise RuntimeError(f"{what}: tensor {k} differs")


def check_close(what, got, want, tol=0.0):
    for k in want:
        d = (got[k].float() - want[k].float()).abs().max().item()
        if d > tol:
            raise RuntimeError(f"{what}: {k} max abs diff {d} > {tol}")


def f32(sd):
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


# A bias added to every key shifts each softmax row by a constant: provably no effect.
SOFTMAX_INVARIANT = (".k_proj.bias", ".to_k.bias")


@torch.no_grad()
def check_every_param_matters(what, model, fn, tol=1e-6):
    """Perturb each parameter tensor in turn (seeded noise, 0.05 std) and require
    the output to move: no parameter is dead weight in the goldens."""
    g = torch.Generator().manual_seed(SEEDS["inputs"] + 7)
    base = fn(model)
    for name, p in model.named_parameters():
        if name.endswith(SOFTMAX_INVARIANT):
            continue
        saved = p.clone()
        p.add_(0.05 * torch.randn(p.shape, generator=g))
        d = (fn(model) - base).abs().max().item()
        p.copy_(saved)
        if d <= tol:
            raise RuntimeError(f"{what}: parameter {name} does not affect the output ({d})")
    if not torch.equal(fn(model), base):
        raise RuntimeError(f"{what}: parameters not restored")


def check_params(t1, t2, ui, u1, u2, v1, ctx1, ctx2):
    g = torch.Generator().manual_seed(SEEDS["inputs"] + 8)
    x4, x9 = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 9, 16, 16, generator=g)
    t = torch.tensor([981.0, 1.0])
    check_every_param_matters("sd1 text", t1, lambda m: m(input_ids=token_ids(49407)).last_hidden_state)
    check_every_param_matters("sd2 text", t2, lambda m: m(input_ids=token_ids(0)).last_hidden_state)
    for u, x, ctx, what in ((u1, x4, ctx1, "sd1 unet"), (ui, x9, ctx1, "inpaint unet"),
                            (u2, x4, ctx2, "sd2 unet")):
        check_every_param_matters(what, u, lambda m: m(x, t, encoder_hidden_states=ctx[:2]).sample)
    check_every_param_matters("vae", v1, lambda m: torch.cat(
        [vae_golden(m)[k].flatten() for k in ("decode.image", "encode.moments")]))
    print("gen_tiny: every parameter tensor affects the outputs (k biases excepted)")


def verify_single(path, unet, vae, text, sd2=False, text_full=None):
    """Map the single file back with diffusers' own converters and compare every
    tensor with the folder model (exact: weights are f16/bf16-exact)."""
    ck = f32(load_file(path))
    check_equal(f"{path} unet", sfu.convert_ldm_unet_checkpoint(ck, unet.config), unet.state_dict())
    check_equal(f"{path} vae", sfu.convert_ldm_vae_checkpoint(ck, vae.config), vae.state_dict())
    if not sd2:
        t = sfu.convert_ldm_clip_checkpoint(ck)
        pid = t.pop("text_model.embeddings.position_ids")
        if not torch.equal(pid, torch.arange(77).unsqueeze(0)):
            raise RuntimeError(f"{path}: position_ids")
        check_equal(f"{path} text", t, text.state_dict())
        return
    t = sfu.convert_open_clip_checkpoint(text, ck)
    t.pop("text_projection.weight", None)  # unused by SD2; diffusers skips it
    check_equal(f"{path} openclip (all layers)", t, text_full.state_dict())
    extra = f"text_model.encoder.layers.{SD2_TEXT_LAYERS}."
    check_equal(f"{path} openclip (used layers)",
                {k: v for k, v in t.items() if not k.startswith(extra)}, text.state_dict())


def verify_from_single_file(path, folder, golden_unet, golden_vae):
    """diffusers' public loader (offline, config from our folder) gives the goldens."""
    unet = UNet2DConditionModel.from_single_file(path, config=folder, subfolder="unet",
                                                 local_files_only=True,
                                                 torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_single_file(path, config=folder, subfolder="vae",
                                         local_files_only=True,
                                         torch_dtype=torch.float32).eval()
    ctx = torch.cat([golden_unet["a.context"], golden_unet["b.context"]])
    check_close(f"{path} from_single_file unet", unet_golden(unet, ctx, unet.config.in_channels),
                golden_unet)
    check_close(f"{path} from_single_file vae", vae_golden(vae), golden_vae)

# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tests/models")
    ap.add_argument("--golden", default="tests/golden")
    ap.add_argument("--check-params", action="store_true",
                    help="also check that every parameter affects the outputs (minutes)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    m = build_models()

    d1 = write_folder(args.models, "tiny-sd1", m["sd1_text"], m["sd1_unet"], m["vae"],
                      model_io.SCHEDULER_SD15, "<|endoftext|>")
    di = write_folder(args.models, "tiny-sd1-inpaint", m["sd1_text"], m["inpaint_unet"], m["vae"],
                      model_io.SCHEDULER_SD15_INPAINT, "<|endoftext|>",
                      links=("text_encoder", "vae"))
    d2 = write_folder(args.models, "tiny-sd2", m["sd2_text"], m["sd2_unet"], m["vae"],
                      model_io.SCHEDULER_SD21, "!")
    singles = write_single_files(args.models, m)

    # Goldens come from the folders as reloaded from disk; they must agree exactly
    # with the in-memory models.
    t1, u1, v1 = load_folder(d1)
    _, ui, _ = load_folder(di)
    t2, u2, _ = load_folder(d2)
    for a, b, what in ((t1, m["sd1_text"], "sd1 text"), (u1, m["sd1_unet"], "sd1 unet"),
                       (v1, m["vae"], "vae"), (ui, m["inpaint_unet"], "inpaint unet"),
                       (t2, m["sd2_text"], "sd2 text"), (u2, m["sd2_unet"], "sd2 unet")):
        check_equal(f"folder reload {what}", a.state_dict(), b.state_dict())

    gen = {"generator": "tests/reference/gen_tiny.py"}
    c1 = clip_golden(t1, token_ids(49407))
    c2 = clip_golden(t2, token_ids(0))
    # SD2 "penultimate": the 2-layer diffusers model equals the stored 3-layer
    # encoder's final_layer_norm(hidden_states[-2]).
    full = clip_golden(m["sd2_text_full"], token_ids(0))
    check_close("sd2 penultimate", {"x": full["clip_skip_1"]}, {"x": c2["last_hidden_state"]})
    model_io.save_golden(os.path.join(args.golden, "clip_sd1.safetensors"), c1,
                         "tiny-sd1 CLIPTextModel", dict(gen, pad_id="49407", prompts=repr(PROMPTS)))
    model_io.save_golden(os.path.join(args.golden, "clip_sd2.safetensors"), c2,
                         "tiny-sd2 CLIPTextModel (2 used layers)",
                         dict(gen, pad_id="0", prompts=repr(PROMPTS)))
    ctx1, ctx2 = c1["last_hidden_state"], c2["last_hidden_state"]
    gu1 = unet_golden(u1, ctx1, 4)
    gui = unet_golden(ui, ctx1, 9)
    gu2 = unet_golden(u2, ctx2, 4)
    gv = vae_golden(v1)
    model_io.save_golden(os.path.join(args.golden, "unet_sd1.safetensors"), gu1, "tiny-sd1 UNet", gen)
    model_io.save_golden(os.path.join(args.golden, "unet_sd1_inpaint.safetensors"), gui,
                         "tiny-sd1-inpaint UNet (9 input channels)", gen)
    model_io.save_golden(os.path.join(args.golden, "unet_sd2.safetensors"), gu2, "tiny-sd2 UNet", gen)
    model_io.save_golden(os.path.join(args.golden, "vae.safetensors"), gv,
                         "tiny VAE (shared by tiny-sd1, tiny-sd1-inpaint, tiny-sd2)",
                         dict(gen, scaling_factor=str(SCALE)))

    if args.check_params:
        check_params(t1, t2, ui, u1, u2, v1, ctx1, ctx2)

    # Single files: diffusers' converters map them back to exactly the folder
    # weights, and diffusers' from_single_file reproduces the goldens.
    p = lambda n: os.path.join(args.models, n)  # noqa: E731
    verify_single(p("tiny-sd1.safetensors"), u1, v1, t1)
    verify_single(p("tiny-sd1-f16.safetensors"), u1, v1, t1)
    verify_single(p("tiny-sd1-inpaint-bf16.safetensors"), ui, v1, t1)
    verify_single(p("tiny-sd2.safetensors"), u2, v1, t2, sd2=True, text_full=m["sd2_text_full"])
    verify_from_single_file(p("tiny-sd1.safetensors"), d1, gu1, gv)
    verify_from_single_file(p("tiny-sd1-f16.safetensors"), d1, gu1, gv)
    verify_from_single_file(p("tiny-sd1-inpaint-bf16.safetensors"), di, gui, gv)
    verify_from_single_file(p("tiny-sd2.safetensors"), d2, gu2, gv)
    print("gen_tiny: wrote", ", ".join(["tiny-sd1/", "tiny-sd1-inpaint/", "tiny-sd2/"] + singles),
          "and 5 goldens; all single-file checks passed")
    # The variant models (3-level VAE, SD1 with linear projections, SD2 v/eps
    # single files, scheduler configs) and their pipeline goldens; needs build/vocab.
    import gen_variants
    gen_variants.main()


if __name__ == "__main__":
    main()
