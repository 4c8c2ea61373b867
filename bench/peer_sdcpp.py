#!/usr/bin/env python3
"""peer_sdcpp.py: the peer side of the side-by-side benchmark. Runs
stable-diffusion.cpp (through its PyPI package, stable-diffusion-cpp-python,
built from source by pip into a venv of your choice; never a dependency of
sdrt) on a checkpoint: txt2img at WxH with N Euler steps and CFG, and prints
the per-step times and the VAE decode time from its progress callback and log.

    python3 -m venv /tmp/venv-sdcpp && /tmp/venv-sdcpp/bin/pip install stable-diffusion-cpp-python
    /tmp/venv-sdcpp/bin/python bench/peer_sdcpp.py MODEL.safetensors [--size 512] [--steps 3] [--threads 2]

sdrt's side: build/sdrt txt2img --model MODEL --steps 3 --sampler Euler --width 512 --height 512 --json
"""
import argparse
import os
import re
import resource
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    from stable_diffusion_cpp import StableDiffusion

    log = []
    t0 = time.time()
    sd = StableDiffusion(model_path=a.model, n_threads=a.threads, verbose=True)
    load = time.time() - t0
    stamps = []

    def progress(step, steps, t):
        stamps.append((step, time.time()))

    t1 = time.time()
    sd.generate_image(prompt="a photograph of an astronaut riding a horse", negative_prompt="", width=a.size,
                      height=a.size, cfg_scale=7.5, sample_method="euler", sample_steps=a.steps, seed=1,
                      progress_callback=progress)
    total = time.time() - t1
    step_times = [b[1] - a_[1] for a_, b in zip(stamps, stamps[1:])]
    print(f"stable-diffusion.cpp {a.size}x{a.size}, {a.steps} Euler steps with CFG, {a.threads} threads")
    print(f"load {load:.2f} s; generate {total:.2f} s; progress stamps {len(stamps)}")
    if step_times:
        print(f"step times (s): {', '.join(f'{x:.2f}' for x in step_times)}; median {statistics.median(step_times):.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
