"""gen_sampler_goldens.py - whole sampler runs through diffusers' schedulers
driven by a deterministic fake model -> tests/golden/samplers.bin.

Run from the repository root with the reference venv (requirements-samplers.txt):
    python tests/reference/gen_sampler_goldens.py

The fake "model" (identical in tests/test_samplers.c), computed in float64 and
rounded to float32:
    out[j] = 0.5 * x_in[j] + 0.1 * sin(0.01 * t + 0.37 * j)
Each case mimics the diffusers pipeline loop with a CPU generator seeded with
SEED: txt2img starts from randn * init_noise_sigma; img2img (strength < 1)
slices the timesteps as get_timesteps does, calls set_begin_index, draws
noise = randn and starts from add_noise(image_latents, noise, timesteps[:1]);
then for each t: scale_model_input, model, step(..., generator[, eta]).
Entries per case <name>: .t (timesteps given to the model, f64), .init
(latents before the loop), .out (final latents), .init_sigma, and .sigmas
where the scheduler has a sigma list. Shared: image_latents, schedule.acp,
schedule.sigmas, schedule.betas.
"""
import os
import sys

import numpy as np
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler, PNDMScheduler)

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import write_golden  # noqa: E402

SHAPE = (1, 4, 8, 8)
SEED = 1234

# SD 1.5 scheduler/scheduler_config.json as shipped (PNDM).
SD15 = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "trained_betas": None, "clip_sample": False,
}

CLASSES = {
    "euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler, "ddim": DDIMScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler, "dpmpp_2m_sde": DPMSolverMultistepScheduler, "lcm": LCMScheduler,
    "pndm": PNDMScheduler, "lms": LMSDiscreteScheduler,
}

# name, kind, steps, spacing (None = class default), karras, prediction, eta, clip, strength
CASES = [
    ("euler_lin20", "euler", 20, None, False, "epsilon", 0, False, 1.0),
    ("euler_lead20", "euler", 20, "leading", False, "epsilon", 0, False, 1.0),
    ("euler_karras15", "euler", 15, None, True, "epsilon", 0, False, 1.0),
    ("euler_trail10_v", "euler", 10, "trailing", False, "v_prediction", 0, False, 1.0),
    ("euler_a_lin20", "euler_a", 20, None, False, "epsilon", 0, False, 1.0),
    ("euler_a_lead12_v", "euler_a", 12, "leading", False, "v_prediction", 0, False, 1.0),
    ("ddim_lead20", "ddim", 20, None, False, "epsilon", 0, False, 1.0),
    ("ddim_lead10_eta", "ddim", 10, None, False, "epsilon", 0.5, False, 1.0),
    ("ddim_lin25_v", "ddim", 25, "linspace", False, "v_prediction", 0, False, 1.0),
    ("ddim_trail8_clip", "ddim", 8, "trailing", False, "epsilon", 0, True, 1.0),
    ("dpm_lin20", "dpmpp_2m", 20, None, False, "epsilon", 0, False, 1.0),
    ("dpm_lead12_v", "dpmpp_2m", 12, "leading", False, "v_prediction", 0, False, 1.0),
    ("dpm_karras20", "dpmpp_2m", 20, None, True, "epsilon", 0, False, 1.0),
    ("dpm_karras7", "dpmpp_2m", 7, None, True, "epsilon", 0, False, 1.0),
    ("dpm_trail6", "dpmpp_2m", 6, "trailing", False, "epsilon", 0, False, 1.0),
    ("dpm_sde_karras15", "dpmpp_2m_sde", 15, None, True, "epsilon", 0, False, 1.0),
    ("dpm_sde_lin10_v", "dpmpp_2m_sde", 10, None, False, "v_prediction", 0, False, 1.0),
    ("lcm4", "lcm", 4, None, False, "epsilon", 0, False, 1.0),
    ("lcm8_v", "lcm", 8, None, False, "v_prediction", 0, False, 1.0),
    ("lcm1", "lcm", 1, None, False, "epsilon", 0, False, 1.0),
    ("pndm_lead20", "pndm", 20, None, False, "epsilon", 0, False, 1.0),
    ("pndm_lead10_v", "pndm", 10, None, False, "v_prediction", 0, False, 1.0),
    ("pndm_lin15", "pndm", 15, "linspace", False, "epsilon", 0, False, 1.0),
    ("lms_lin20", "lms", 20, None, False, "epsilon", 0, False, 1.0),
    ("lms_karras12", "lms", 12, None, True, "epsilon", 0, False, 1.0),
    ("lms_lead10_v", "lms", 10, "leading", False, "v_prediction", 0, False, 1.0),
    # img2img
    ("i2i_euler_lead20_s06", "euler", 20, "leading", False, "epsilon", 0, False, 0.6),
    ("i2i_euler_a_lin20_s05", "euler_a", 20, None, False, "epsilon", 0, False, 0.5),
    ("i2i_ddim_lead20_s075", "ddim", 20, None, False, "epsilon", 0, False, 0.75),
    ("i2i_pndm_lead20_s08", "pndm", 20, None, False, "epsilon", 0, False, 0.8),
    ("i2i_lms_lin20_s05", "lms", 20, None, False, "epsilon", 0, False, 0.5),
    ("i2i_dpm_karras20_s07", "dpmpp_2m", 20, None, True, "epsilon", 0, False, 0.7),
    ("i2i_lcm4_s05", "lcm", 4, None, False, "epsilon", 0, False, 0.5),
]


def fake_model(x_in, t):
    x = x_in.double().numpy().reshape(-1)
    j = np.arange(x.size, dtype=np.float64)
    out = 0.5 * x + 0.1 * np.sin(0.01 * float(t) + 0.37 * j)
    return torch.from_numpy(out.astype(np.float32).reshape(x_in.shape))


def make_scheduler(kind, spacing, karras, prediction, clip):
    cfg = dict(SD15)
    extra = {"prediction_type": prediction}
    if spacing is not None:
        extra["timestep_spacing"] = spacing
    else:
        cfg.pop("timestep_spacing", None)
    if karras:
        extra["use_karras_sigmas"] = True
    if kind in ("ddim", "lcm"):
        extra["clip_sample"] = clip
    if kind == "dpmpp_2m":
        extra.update(algorithm_type="dpmsolver++", solver_order=2)
    if kind == "dpmpp_2m_sde":
        extra.update(algorithm_type="sde-dpmsolver++", solver_order=2)
    cls = CLASSES[kind]
    # from_pretrained-like: the class default spacing when the config lacks it
    sched = cls.from_config({k: v for k, v in cfg.items() if k != "_class_name"}, **extra)
    return sched


def run_case(case, image_latents):
    name, kind, steps, spacing, karras, prediction, eta, clip, strength = case
    sched = make_scheduler(kind, spacing, karras, prediction, clip)
    gen = torch.Generator("cpu").manual_seed(SEED)
    sched.set_timesteps(steps)
    timesteps = sched.timesteps
    if strength < 1.0:
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        timesteps = timesteps[t_start * sched.order:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(t_start * sched.order)
        noise = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
        latents = sched.add_noise(image_latents, noise, timesteps[:1])
    else:
        latents = torch.randn(SHAPE, generator=gen, dtype=torch.float32) * sched.init_noise_sigma
    init = latents.clone()
    ts_called = []
    import inspect
    accepts = set(inspect.signature(sched.step).parameters)
    kwargs = {}
    if "generator" in accepts:
        kwargs["generator"] = gen
    if "eta" in accepts:
        kwargs["eta"] = eta
    for t in timesteps:
        inp = sched.scale_model_input(latents, t)
        ts_called.append(float(t))
        m = fake_model(inp, t)
        latents = sched.step(m, t, latents, **kwargs, return_dict=False)[0]
    out = {
        f"{name}.t": np.array(ts_called, dtype=np.float64),
        f"{name}.init": init.numpy().astype(np.float32),
        f"{name}.out": latents.numpy().astype(np.float32),
        f"{name}.init_sigma": np.array([float(sched.init_noise_sigma)], dtype=np.float64),
    }
    if hasattr(sched, "sigmas") and kind not in ("ddim", "pndm", "lcm"):
        out[f"{name}.sigmas"] = sched.sigmas.numpy().astype(np.float32)
    return out


def main():
    g = torch.Generator("cpu").manual_seed(7)
    image_latents = torch.randn(SHAPE, generator=g, dtype=torch.float32) * 0.8
    res = {"image_latents": image_latents.numpy()}
    base = DDIMScheduler.from_config({k: v for k, v in SD15.items() if k != "_class_name"})
    res["schedule.betas"] = base.betas.numpy()
    res["schedule.acp"] = base.alphas_cumprod.numpy()
    res["schedule.sigmas"] = (((1 - base.alphas_cumprod) / base.alphas_cumprod) ** 0.5).numpy()
    for case in CASES:
        res.update(run_case(case, image_latents))
    path = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "golden", "samplers.bin"))
    write_golden(path, res)
    print("wrote", path, len(res), "entries; torch", torch.__version__)


if __name__ == "__main__":
    main()
