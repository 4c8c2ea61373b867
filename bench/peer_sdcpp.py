#!/usr/bin/env python3
"""peer_sdcpp.py: stable-diffusion.cpp's side of the side-by-side benchmark (`make
bench-peers`). Runs stable-diffusion.cpp through its PyPI package,
stable-diffusion-cpp-python (built from source by pip for the CPU it runs on, into the
bench's own virtualenv build/peers-venv, `make peers-venv`; never a dependency of sdrt),
on a checkpoint: txt2img at WxH with N Euler steps and CFG 7.5, seed 1. Per-step times
come from its progress callback (each step = two UNet calls: cond and uncond); the text
encoding and VAE decode times from its log ("... completed, taking ..."), which is
captured from stderr and echoed.

    build/peers-venv/bin/python bench/peer_sdcpp.py MODEL.safetensors [--size 512] [--steps 4]
                                                   [--threads 2] [--json OUT]

sdrt's side: build/sdrt txt2img --model MODEL --steps 4 --sampler Euler --width 512 --height 512 --json
"""
import argparse
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time

PROMPT = "a photograph of an astronaut riding a horse"


def seconds(log, pattern):
    """Sum of every 'pattern ... taking X(s|ms)' in the log, in seconds; None if absent."""
    hits = re.findall(pattern + r".*?taking ([\d.]+) ?(ms|s)", log)
    return sum(float(v) / (1000.0 if u == "ms" else 1.0) for v, u in hits) if hits else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json")
    a = ap.parse_args()
    import stable_diffusion_cpp
    from stable_diffusion_cpp import StableDiffusion

    # Capture stderr (the C library's log) at the descriptor level.
    cap = tempfile.TemporaryFile(mode="w+")
    saved = os.dup(2)
    sys.stderr.flush()
    os.dup2(cap.fileno(), 2)
    try:
        t0 = time.perf_counter()
        sd = StableDiffusion(model_path=a.model, n_threads=a.threads, verbose=True)
        load = time.perf_counter() - t0
        prog, cpu = {}, {}
        last_cpu = [time.process_time()]

        def progress(step, steps, t):
            # CPU seconds / threads of the process since the previous step's callback.
            c = time.process_time()
            if steps == a.steps and step >= 1:
                prog[step] = t
                cpu[step] = (c - last_cpu[0]) / a.threads
            last_cpu[0] = c

        t1 = time.perf_counter()
        img = sd.generate_image(prompt=PROMPT, negative_prompt="", width=a.size, height=a.size, cfg_scale=7.5,
                                sample_method="euler", sample_steps=a.steps, seed=1, progress_callback=progress)
        if isinstance(img, list):
            img = img[0]
        generate = time.perf_counter() - t1
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        cap.seek(0)
        log = cap.read()
        sys.stderr.write(log)
    steps = [prog[k] for k in sorted(prog)]
    res = {
        "runtime": "stable-diffusion.cpp",
        "version": getattr(stable_diffusion_cpp, "__version__", "?"),
        "config": "stable-diffusion.cpp f16",
        "threads": a.threads, "size": a.size, "steps": a.steps,
        "step_s": steps,
        "first_step_s": steps[0] if steps else None,
        "step_median_s": statistics.median(steps[1:]) if len(steps) > 1 else None,
        "step_median_cpu_s": statistics.median([cpu[k] for k in sorted(cpu)][1:]) if len(cpu) > 1 else None,
        "text_encode_s": seconds(log, r"get_learned_condition completed"),
        "vae_decode_s": seconds(log, r"decode_first_stage completed"),
        "load_s": load, "generate_s": generate, "cold_image_s": load + generate,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(f"stable-diffusion.cpp {a.size}x{a.size}, {a.steps} Euler steps with CFG, {a.threads} threads")
    print(f"load {load:.2f} s; generate {generate:.2f} s; text {res['text_encode_s']} s; VAE decode {res['vae_decode_s']} s")
    if steps:
        print(f"step times (s): {', '.join(f'{x:.2f}' for x in steps)}")
    print(f"peak RSS {res['peak_rss_kib'] / 1024:.0f} MiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
