#!/usr/bin/env python3
"""gen_tiny_sdxl.py: a tiny SDXL-architecture model (two text encoders, 3-level UNet
with add_embedding "text_time", SDXL VAE scaling), seeded random weights, saved as a
diffusers folder (tests/models/tiny-sdxl/: text_encoder/, text_encoder_2/, tokenizer/,
tokenizer_2/, unet/, vae/, scheduler/) and as an SGM single file
(tests/models/tiny-sdxl.safetensors: conditioner.embedders.0.transformer.* HF CLIP-L
names, conditioner.embedders.1.model.* OpenCLIP bigG names with packed in_proj,
positional_embedding, ln_final and text_projection, model.diffusion_model.* with
label_emb.0.0/0.2 = add_embedding, first_stage_model.*), f16; plus the component
goldens tests/golden/sdxl.safetensors (see GOLDEN below).

The single file is checked against the folder with diffusers' own single-file
converters (exact). Deterministic; exits non-zero on any failed check. Run from the
repo root: .venv/bin/python tests/reference/gen_tiny_sdxl.py
Reference tooling only (tests/reference/README.md).

GOLDEN entries (float32 unless noted):
  te1.input_ids i32 [4, 77]  (pad 49407)  te1.penultimate [4, 77, 8] = hidden_states[-2]
  te2.input_ids i32 [4, 77]  (pad 0)      te2.penultimate [4, 77, 12], te2.text_embeds [4, 12]
                                          (pooled: final LN at the EOS (argmax id) x text_projection)
  unet.<c>.{sample, timestep, context, text_embeds, time_ids, out} for c = a (16x16, t 981 CFG
      pair), b (9x11, t 1 and 500.5); context = cat(te1, te2 penultimate)
  vae.decode.{latent, image} (image = decode(latent / 0.13025)), vae.encode.{image, moments}
"""

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
from diffusers.models.attention_processor import Attention  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()

TOKEN_EMB = "text_model.embeddings.token_embedding.weight"
SCALE = 0.13025
TE1_HIDDEN, TE2_HIDDEN, PROJ, TIME_DIM = 8, 12, 12, 8
SEEDS = dict(te1=501, te2=502, unet=503, vae=504, inputs=505, refiner=506, inpaint=507)
SGM_TE1 = "conditioner.embedders.0.transformer."
SGM_TE2 = "conditioner.embedders.1.model."


_get_attention_scores = Attention.get_attention_scores


def _get_attention_scores_zeroed(self, query, key, attention_mask=None):
    """As gen_pipeline_goldens.py: torch 1.13's CPU baddbmm(torch.empty(...), beta=0) can
    carry NaNs from the empty buffer into the scores (seen here on a 3x3 self-attention);
    a zero mask with beta=1 gives the same numbers every time."""
    if attention_mask is None:
        attention_mask = torch.zeros(query.shape[0], query.shape[1], key.shape[1], dtype=query.dtype)
    return _get_attention_scores(self, query, key, attention_mask)


Attention.get_attention_scores = _get_attention_scores_zeroed


def te_config(hidden, heads, act, with_proj):
    return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                          num_hidden_layers=3, num_attention_heads=heads, max_position_embeddings=77,
                          hidden_act=act, layer_norm_eps=1e-5, projection_dim=PROJ if with_proj else hidden,
                          bos_token_id=0, eos_token_id=2, pad_token_id=1)


# SDXL base structure (diffusers stabilityai/stable-diffusion-xl-base-1.0 unet/config.json)
# with small widths: no attention at level 0, transformer depth 1, 2 at levels 1, 2 and 2 in
# the mid block (real: 2, 10, 10), linear projections, head dim 4 (real 64).
UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, center_input_sample=False,
    flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    block_out_channels=[8, 12, 20], layers_per_block=2, downsample_padding=1,
    mid_block_scale_factor=1, act_fn="silu", norm_num_groups=4, norm_eps=1e-5,
    cross_attention_dim=TE1_HIDDEN + TE2_HIDDEN, transformer_layers_per_block=[1, 1, 2],
    attention_head_dim=[2, 3, 5], use_linear_projection=True, upcast_attention=False,
    addition_embed_type="text_time", addition_time_embed_dim=TIME_DIM,
    projection_class_embeddings_input_dim=PROJ + 6 * TIME_DIM,
)
# The refiner: bigG only (context = its 12 wide states), 5 time ids (original size, crop,
# aesthetic score), no attention at level 0 either (real refiner: [384, 768, 1536, 1536], depth 4).
UNET_REFINER = dict(UNET, cross_attention_dim=TE2_HIDDEN, block_out_channels=[8, 16, 20],
                    attention_head_dim=[2, 4, 5], transformer_layers_per_block=[1, 2, 2],
                    projection_class_embeddings_input_dim=PROJ + 5 * TIME_DIM)
UNET_INPAINT = dict(UNET, in_channels=9)  # SDXL inpainting: latent, mask, masked-image latent
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 12, 16, 16],
           layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=4,
           sample_size=64, scaling_factor=SCALE, force_upcast=True)
# stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json (it keeps the PNDM/DDIM keys
# clip_sample, set_alpha_to_one, skip_prk_steps false/false/true, which other samplers built from it read)
SCHEDULER = dict(model_io.SCHEDULER_SD15, _class_name="EulerDiscreteScheduler", interpolation_type="linear",
                 timestep_spacing="leading", use_karras_sigmas=False)

IDS = [[49406, 49407],
       [49406, 320, 1125, 539, 320, 2368, 49407],
       [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]]


def token_ids(pad):
    g = torch.Generator().manual_seed(SEEDS["inputs"])
    rows = [r + [pad] * (77 - len(r)) for r in IDS]
    rows.append([49406] + torch.randint(0, 49406, (75,), generator=g).tolist() + [49407])
    return torch.tensor(rows, dtype=torch.int64)


def build():
    torch.manual_seed(0)
    te1 = model_io.randomise(CLIPTextModel(te_config(TE1_HIDDEN, 2, "quick_gelu", False)), SEEDS["te1"]).eval()
    te2 = model_io.randomise(CLIPTextModelWithProjection(te_config(TE2_HIDDEN, 3, "gelu", True)),
                             SEEDS["te2"]).eval()
    unet = model_io.randomise(UNet2DConditionModel(**UNET), SEEDS["unet"]).eval()
    vae = model_io.randomise(AutoencoderKL(**VAE), SEEDS["vae"]).eval()
    refiner = model_io.randomise(UNet2DConditionModel(**UNET_REFINER), SEEDS["refiner"]).eval()
    return te1, te2, unet, vae, refiner


def write_inpaint_folder(d, unet):
    """tiny-sdxl-inpaint: its own 9-channel unet/, everything else linked to tiny-sdxl."""
    if os.path.lexists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for sub in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler"):
        os.symlink(os.path.join("..", "tiny-sdxl", sub), os.path.join(d, sub))
    unet.save_pretrained(os.path.join(d, "unet"), safe_serialization=True)
    model_io.write_json(os.path.join(d, "model_index.json"), {
        "_class_name": "StableDiffusionXLInpaintPipeline", "_diffusers_version": "0.31.0",
        "force_zeros_for_empty_prompt": True, "requires_aesthetics_score": False,
        "feature_extractor": [None, None], "image_encoder": [None, None],
        "scheduler": ["diffusers", SCHEDULER["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    })


def text_tensors(model):
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd[TOKEN_EMB] = sd[TOKEN_EMB].half()
    return sd


def write_folder(d, te1, te2, unet, vae):
    if os.path.lexists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    unet.save_pretrained(os.path.join(d, "unet"), safe_serialization=True)
    vae.save_pretrained(os.path.join(d, "vae"), safe_serialization=True)
    for sub, te in (("text_encoder", te1), ("text_encoder_2", te2)):
        te.save_pretrained(os.path.join(d, sub), safe_serialization=True)
        model_io.save_tensors(os.path.join(d, sub, "model.safetensors"), text_tensors(te))
    model_io.write_pipeline_meta(d, SCHEDULER, "<|endoftext|>")
    for fname, obj in model_io.tokenizer_files("!").items():
        model_io.write_json(os.path.join(d, "tokenizer_2", fname), obj)
    model_io.write_json(os.path.join(d, "model_index.json"), {
        "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.31.0",
        "force_zeros_for_empty_prompt": True, "feature_extractor": [None, None], "image_encoder": [None, None],
        "scheduler": ["diffusers", SCHEDULER["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    })


def write_refiner_folder(d):
    """The refiner folder: its own unet/, text_encoder_2/, tokenizer_2/ and vae/ linked to tiny-sdxl
    (the real refiner's bigG and VAE are the base's too), no text_encoder/."""
    if os.path.lexists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for sub in ("text_encoder_2", "tokenizer_2", "vae", "scheduler"):
        os.symlink(os.path.join("..", "tiny-sdxl", sub), os.path.join(d, sub))
    model_io.write_json(os.path.join(d, "model_index.json"), {
        "_class_name": "StableDiffusionXLImg2ImgPipeline", "_diffusers_version": "0.31.0",
        "force_zeros_for_empty_prompt": False, "requires_aesthetics_score": True,
        "feature_extractor": [None, None], "image_encoder": [None, None],
        "scheduler": ["diffusers", SCHEDULER["_class_name"]], "text_encoder": [None, None], "tokenizer": [None, None],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    })


def bigg_openclip(te2, embedder=SGM_TE2):
    """CLIPTextModelWithProjection -> conditioner.embedders.1.model.* (OpenCLIP names,
    every layer kept: SDXL needs the last one for the pooled output). text_projection is
    stored in OpenCLIP's orientation [width, embed] = Linear weight transposed."""
    sd = text_tensors(te2)
    proj = sd.pop("text_projection.weight")
    oc = ldm_keys.sd2_clip_to_openclip(sd, te2.config.num_hidden_layers, proj.t().contiguous(),
                                       torch.tensor(2.6592600345611572))
    return {embedder + k[len(ldm_keys.SD2_CLIP_PREFIX):]: v for k, v in oc.items()}


SGM_REFINER_TE = "conditioner.embedders.0.model."


def sgm_refiner(te2, refiner, vae):
    usd = dict(refiner.state_dict())
    label = {f"{ldm_keys.UNET_PREFIX}label_emb.0.{i}.{s}": usd.pop(f"add_embedding.linear_{j}.{s}")
             for i, j in ((0, 1), (2, 2)) for s in ("weight", "bias")}
    return {**ldm_keys.unet_to_ldm(usd, refiner.config), **label,
            **ldm_keys.vae_to_ldm(vae.state_dict(), vae.config), **bigg_openclip(te2, SGM_REFINER_TE)}


def sgm_single(te1, te2, unet, vae):
    usd = dict(unet.state_dict())
    label = {f"{ldm_keys.UNET_PREFIX}label_emb.0.{i}.{s}": usd.pop(f"add_embedding.linear_{j}.{s}")
             for i, j in ((0, 1), (2, 2)) for s in ("weight", "bias")}
    t1 = ldm_keys.sd1_clip_to_ldm(text_tensors(te1))
    t1 = {SGM_TE1 + k[len(ldm_keys.SD1_CLIP_PREFIX):]: v for k, v in t1.items()}
    return {**ldm_keys.unet_to_ldm(usd, unet.config), **label,
            **ldm_keys.vae_to_ldm(vae.state_dict(), vae.config), **t1, **bigg_openclip(te2)}


def check_equal(what, a, b):
    if a.keys() != b.keys():
        raise RuntimeError(f"{what}: key sets differ: {sorted(a.keys() - b.keys())[:4]} / "
                           f"{sorted(b.keys() - a.keys())[:4]}")
    for k in a:
        if a[k].shape != b[k].shape or not torch.equal(a[k].float(), b[k].float()):
            raise RuntimeError(f"{what}: tensor {k} differs")


def verify_single(path, te1, te2, unet, vae):
    ck = {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
    check_equal("unet", sfu.convert_ldm_unet_checkpoint(ck, unet.config), unet.state_dict())
    check_equal("vae", sfu.convert_ldm_vae_checkpoint(ck, vae.config), vae.state_dict())
    t1 = {k[len(SGM_TE1):]: v for k, v in ck.items() if k.startswith(SGM_TE1)}
    t1.pop("text_model.embeddings.position_ids")
    check_equal("te1", t1, te1.state_dict())
    t2 = sfu.convert_open_clip_checkpoint(te2, ck, prefix=SGM_TE2)
    t2.pop("text_model.embeddings.position_ids", None)
    check_equal("te2", t2, te2.state_dict())


@torch.no_grad()
def goldens(te1, te2, unet, vae, refiner):
    out = {}
    ids1, ids2 = token_ids(49407), token_ids(0)
    o1 = te1(input_ids=ids1, output_hidden_states=True)
    o2 = te2(input_ids=ids2, output_hidden_states=True)
    out.update({"te1.input_ids": ids1.to(torch.int32), "te1.penultimate": o1.hidden_states[-2],
                "te2.input_ids": ids2.to(torch.int32), "te2.penultimate": o2.hidden_states[-2],
                "te2.text_embeds": o2.text_embeds})
    ctx = torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1)
    g = torch.Generator().manual_seed(SEEDS["inputs"] + 1)
    cases = {"a": ((16, 16), [981.0, 981.0], slice(0, 2), [[128, 128, 0, 0, 128, 128]] * 2),
             "b": ((9, 11), [1.0, 500.5], slice(2, 4), [[72, 88, 0, 0, 72, 88], [1024, 768, 16, 8, 72, 88]])}
    for c, ((h, w), ts, rows, tid) in cases.items():
        x = torch.randn(2, 4, h, w, generator=g)
        t = torch.tensor(ts)
        time_ids = torch.tensor(tid, dtype=torch.float32)
        y = unet(x, t, encoder_hidden_states=ctx[rows],
                 added_cond_kwargs={"text_embeds": o2.text_embeds[rows], "time_ids": time_ids}).sample
        out.update({f"unet.{c}.sample": x, f"unet.{c}.timestep": t, f"unet.{c}.context": ctx[rows].clone(),
                    f"unet.{c}.text_embeds": o2.text_embeds[rows].clone(), f"unet.{c}.time_ids": time_ids,
                    f"unet.{c}.out": y})
    x = torch.randn(2, 4, 9, 11, generator=g)
    t = torch.tensor([981.0, 150.0])
    time_ids = torch.tensor([[72, 88, 0, 0, 6.0], [1024, 768, 16, 8, 2.5]])
    y = refiner(x, t, encoder_hidden_states=o2.hidden_states[-2][2:4],
                added_cond_kwargs={"text_embeds": o2.text_embeds[2:4], "time_ids": time_ids}).sample
    out.update({"refiner.sample": x, "refiner.timestep": t, "refiner.context": o2.hidden_states[-2][2:4].clone(),
                "refiner.text_embeds": o2.text_embeds[2:4].clone(), "refiner.time_ids": time_ids, "refiner.out": y})
    latent = torch.randn(1, 4, 6, 5, generator=g)
    img = torch.rand(1, 3, 48, 40, generator=g) * 2 - 1
    out.update({"vae.decode.latent": latent, "vae.decode.image": vae.decode(latent / SCALE).sample,
                "vae.encode.image": img, "vae.encode.moments": vae.quant_conv(vae.encoder(img))})
    return out


def main():
    torch.set_num_threads(1)
    models, golden = "tests/models", "tests/golden"
    te1, te2, unet, vae, refiner = build()
    d = os.path.join(models, "tiny-sdxl")
    write_folder(d, te1, te2, unet, vae)
    single = os.path.join(models, "tiny-sdxl.safetensors")
    model_io.save_tensors(single, model_io.cast_floats(sgm_single(te1, te2, unet, vae), torch.float16),
                          {"sdrt_note": "tiny random-weight SDXL model for tests (tests/reference/gen_tiny_sdxl.py)"})
    torch.manual_seed(0)
    inpaint = model_io.randomise(UNet2DConditionModel(**UNET_INPAINT), SEEDS["inpaint"]).eval()
    write_inpaint_folder(os.path.join(models, "tiny-sdxl-inpaint"), inpaint)
    isingle = os.path.join(models, "tiny-sdxl-inpaint.safetensors")
    model_io.save_tensors(isingle, model_io.cast_floats(sgm_single(te1, te2, inpaint, vae), torch.float16),
                          {"sdrt_note": "tiny random-weight SDXL inpainting model (9-channel UNet) for tests "
                                        "(tests/reference/gen_tiny_sdxl.py)"})
    dr = os.path.join(models, "tiny-sdxl-refiner")
    write_refiner_folder(dr)
    refiner.save_pretrained(os.path.join(dr, "unet"), safe_serialization=True)
    rsingle = os.path.join(models, "tiny-sdxl-refiner.safetensors")
    model_io.save_tensors(rsingle, model_io.cast_floats(sgm_refiner(te2, refiner, vae), torch.float16),
                          {"sdrt_note": "tiny random-weight SDXL refiner for tests (tests/reference/gen_tiny_sdxl.py)"})
    r1 = CLIPTextModel.from_pretrained(os.path.join(d, "text_encoder")).eval()
    r2 = CLIPTextModelWithProjection.from_pretrained(os.path.join(d, "text_encoder_2")).eval()
    ru = UNet2DConditionModel.from_pretrained(os.path.join(d, "unet")).eval()
    rv = AutoencoderKL.from_pretrained(os.path.join(d, "vae")).eval()
    rr = UNet2DConditionModel.from_pretrained(os.path.join(dr, "unet")).eval()
    for a, b, what in ((r1, te1, "te1"), (r2, te2, "te2"), (ru, unet, "unet"), (rv, vae, "vae"), (rr, refiner, "refiner")):
        check_equal(f"folder reload {what}", a.state_dict(), b.state_dict())
    verify_single(single, r1, r2, ru, rv)
    ri = UNet2DConditionModel.from_pretrained(os.path.join(models, "tiny-sdxl-inpaint", "unet")).eval()
    verify_single(isingle, r1, r2, ri, rv)
    ck = {k: v.float() if v.is_floating_point() else v for k, v in load_file(rsingle).items()}
    check_equal("refiner unet", sfu.convert_ldm_unet_checkpoint(ck, rr.config), rr.state_dict())
    t2 = sfu.convert_open_clip_checkpoint(r2, ck, prefix=SGM_REFINER_TE)
    t2.pop("text_model.embeddings.position_ids", None)
    check_equal("refiner te2", t2, r2.state_dict())
    gold = goldens(r1, r2, ru, rv, rr)
    for k, v in gold.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise RuntimeError(f"golden {k} is not finite")
    model_io.save_golden(os.path.join(golden, "sdxl.safetensors"), gold,
                         "tiny-sdxl text encoders, UNet (text_time), VAE",
                         {"generator": "tests/reference/gen_tiny_sdxl.py", "scaling_factor": str(SCALE)})
    n = sum(p.numel() for p in ru.parameters())
    print(f"gen_tiny_sdxl: wrote tiny-sdxl/, tiny-sdxl.safetensors, sdxl golden; unet params {n}; "
          f"te1 {sum(p.numel() for p in r1.parameters())}, te2 {sum(p.numel() for p in r2.parameters())}, "
          f"vae {sum(p.numel() for p in rv.parameters())}, refiner unet {sum(p.numel() for p in rr.parameters())}; "
          "single-file checks passed")


if __name__ == "__main__":
    main()
