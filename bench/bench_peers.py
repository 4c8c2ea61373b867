#!/usr/bin/env python3
"""bench_peers.py: the driver of `make bench-peers`. Runs OpenVINO (default precision and
f32, bench/peer_openvino.py), sdrt (--precision f32 and auto) and stable-diffusion.cpp
(bench/peer_sdcpp.py) back to back on the same random-weight full-size SD 1.5, one cold
process per runtime and configuration, each under /usr/bin/time -v (peak resident memory
= its "Maximum resident set size"), and prints one table with every figure's ratio
against OpenVINO's default, with the CPU's ISA (lscpu flags) beside it.

Same work everywhere: 512x512 txt2img, Euler, CFG 7.5 (one batch-2 UNet call per step
for sdrt and OpenVINO, two calls for stable-diffusion.cpp), --steps steps (4), seed 1,
--threads threads. Per step = median of steps 2..N; first step; VAE decode; text
encoding (prompt + negative prompt); load (OpenVINO: read IR + reshape + compile); cold
image = load + generate to PNG inside the process; peak RSS of the whole process. On a
shared machine wall times move with the neighbours' load, so the table also gives CPU
seconds / threads: per UNet/VAE/text-encoder call for OpenVINO and stable-diffusion.cpp
(steps 2-N), `sdrt bench --cpu-time` for sdrt (the sdrt-bench runs), and the whole
process's user + sys time; each run's load average and the page-cache share of its model
files at its start are recorded beside it.

--family sdxl (`make bench-peers-sdxl`): the full-size random SDXL base instead
(models/sdxl-random-f16.safetensors for sdrt; its diffusers folder, written by
tests/reference/sdxl_single_to_folder.py, exported with fp16 weights for OpenVINO),
1024x1024, 3 steps, negative prompt "blurry", OpenVINO default and sdrt --precision auto
(the defaults of --size, --steps, --negative and --only follow the family); text
encoding = both encoders (OpenVINO: text_encoder + text_encoder_2 calls).

Standard library only. Results: OUT/results.json (the chart script reads it), OUT/*.json
(one per process), OUT/*.log (each process's output). --table reprints the table from
OUT/results.json without running anything.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

PROMPT = "a photograph of an astronaut riding a horse"
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")

# (key, label in the table, unit)
ROWS = [
    ("step_median_s", "UNet CFG step (median of steps 2-N)", "s"),
    ("first_step_s", "first step of the process", "s"),
    ("vae_decode_s", "VAE decode", "s"),
    ("text_encode_s", "text encoding, 2 prompts", "s"),
    ("load_s", "load (+ compile)", "s"),
    ("cold_image_s", "cold image, load to PNG in process", "s"),
    ("peak_rss_kib", "peak resident memory", "GiB"),
]


def cpu_isa():
    flags = set()
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    have = [f for f in ISA_FLAGS if f in flags]
    return {"model": model, "cores": os.cpu_count(), "flags": have,
            "line": f"CPU: {model}, {os.cpu_count()} cores; lscpu ISA flags: {' '.join(have) or '(none of ' + ' '.join(ISA_FLAGS) + ')'}"
                    + ("" if "avx512_bf16" in flags or "amx_bf16" in flags else " (no bf16 instructions)")}


def time_v(text):
    """Peak RSS (KiB), wall seconds, minor faults from /usr/bin/time -v's report."""
    def grab(pat, conv=float):
        m = re.search(pat, text)
        return conv(m.group(1)) if m else None
    wall = None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        parts = [float(x) for x in m.group(1).split(":")]
        wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"peak_rss_kib": grab(r"Maximum resident set size \(kbytes\): (\d+)", int),
            "wall_s": wall, "minor_faults": grab(r"Minor \(reclaiming a frame\) page faults: (\d+)", int),
            "user_s": grab(r"User time \(seconds\): ([\d.]+)"), "sys_s": grab(r"System time \(seconds\): ([\d.]+)")}


def cached_fraction(paths):
    """Share of the files' bytes in the page cache (fincore), None where unknown."""
    size = res = 0
    for p in paths:
        files = [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs] if os.path.isdir(p) else [p]
        for f in files:
            try:
                out = subprocess.run(["fincore", "-b", "-n", "-o", "RES,SIZE", f], capture_output=True, text=True,
                                     check=True).stdout.split()
                res, size = res + int(out[0]), size + int(out[1])
            except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
                return None
    return min(1.0, res / size) if size else None


def run_one(name, cmd, a, env=None, files=()):
    """One cold process under /usr/bin/time -v (and the --lock, nice). Returns (stdout, time -v dict);
    files: the model files it reads (their page-cache share is recorded just before it starts)."""
    log = os.path.join(a.out, name + ".log")
    tv = os.path.join(a.out, name + ".time")
    full = ["/usr/bin/time", "-v", "-o", tv] + cmd
    if a.nice:
        full = ["nice", "-n", str(a.nice)] + full
    # The page-cache share of the model files is taken just before the run (once the lock is held).
    full = [sys.executable, os.path.abspath(__file__), "--cached-then", ",".join(files), "--"] + full
    if a.lock:
        full = ["flock", a.lock] + full
    print(f"bench-peers: [{name}] {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=f, text=True, env=env)
        f.write(p.stdout)
    with open(tv) as f:
        t = time_v(f.read())
    with open(log) as f:
        m = re.search(r"model files in the page cache: (\d+)%; load average: ([\d. ]+)", f.read())
    t["files_cached"] = int(m.group(1)) / 100 if m else None
    t["load_average_before"] = m.group(2).strip() if m else "?"
    print(f"bench-peers: [{name}] exit {p.returncode}, {time.time() - t0:.1f} s wall, peak RSS "
          f"{(t['peak_rss_kib'] or 0) / 1048576:.2f} GiB (load average before: {t['load_average_before']}; model files in the page "
          f"cache: {fmt_cached(t['files_cached'])})", flush=True)
    if p.returncode:
        sys.stderr.write(f"bench-peers: [{name}] failed; its output is in {log}\n")
        return None, t
    return p.stdout, t


def run_openvino(a, prec):
    name = f"openvino-{prec}"
    js = os.path.join(a.out, name + ".json")
    out, t = run_one(name, [a.python, "bench/peer_openvino.py", "run", a.ir, "--precision", prec, "--steps", str(a.steps),
                            "--size", str(a.size), "--threads", str(a.threads), "--negative", a.negative,
                            "--png", os.path.join(a.out, name + ".png"),
                            "--json", js], a, files=[a.ir])
    if out is None:
        return None
    with open(js) as f:
        r = json.load(f)
    r["in_process_peak_rss_kib"] = r.pop("peak_rss_kib")
    r.update(t)
    r["name"] = name
    return r


def run_sdrt(a, prec):
    name = f"sdrt-{prec}"
    cmd = [a.sdrt, "txt2img", "--model", a.model, "--prompt", PROMPT, "--negative-prompt", "", "--steps", str(a.steps),
           "--sampler", "Euler", "--cfg-scale", "7.5", "--width", str(a.size), "--height", str(a.size), "--seed", "1",
           "--threads", str(a.threads), "--precision", prec, "--json", "--output", os.path.join(a.out, name + ".png")]
    # As users run it: the OpenMP wait policy is libgomp's default unless the caller's environment
    # sets one (the peers run with their own defaults too: OpenVINO's TBB and ggml's pool spin).
    # Forcing OMP_WAIT_POLICY=passive, as runs before 2026-12-06 22:20 did, made every idle
    # thread sleep between ops and cost sdrt ~3% of each step's wall time.
    env = dict(os.environ, SDRT_LOG_LEVEL="debug")
    cmd[cmd.index("--negative-prompt") + 1] = a.negative
    out, t = run_one(name, cmd, a, env, files=[a.model])
    if out is None:
        return None
    steps, phases, picked, done = [], {}, None, None
    for line in out.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        kind = ev.get("event")
        if kind == "step":
            steps.append(ev["seconds"])
        elif kind == "phase":
            phases[ev["phase"]] = ev["seconds"]
        elif kind == "done":
            done = ev["seconds"]
        m = re.search(r"precision \w+ -> (\w+)", json.dumps(ev))
        if m:
            picked = m.group(1)
    r = {"runtime": "sdrt", "name": name, "config": f"sdrt --precision {prec}" + (f" ({picked})" if picked else ""),
         "precision": picked or prec, "threads": a.threads, "size": a.size, "steps": a.steps, "step_s": steps,
         "first_step_s": steps[0] if steps else None,
         "step_median_s": median(steps[1:]), "vae_decode_s": phases.get("vae_decode"), "text_encode_s": phases.get("clip"),
         "load_s": phases.get("load"), "generate_s": done,
         "cold_image_s": (phases.get("load") or 0) + (done or 0)}
    r.update(t)
    return r


def run_sdrt_bench(a, prec):
    """`sdrt bench --json --profile --cpu-time` (per phase and per op) for the charts and the table's
    CPU-time row (warm phases: process CPU seconds / threads)."""
    name = f"sdrt-bench-{prec}"
    out, t = run_one(name, [a.sdrt, "bench", "--model", a.model, "--precision", prec, "--runs", "2", "--profile", "--json",
                            "--cpu-time",
                            "--threads", str(a.threads), "--width", str(a.size), "--height", str(a.size)], a,
                     dict(os.environ, OMP_WAIT_POLICY="passive"), files=[a.model])
    if out is None:
        return False
    d = json.loads(out)
    d["peak_rss_kib"] = t["peak_rss_kib"]
    if d.get("clock") == "process_cpu_per_thread":
        a.bench_cpu[prec] = {k: v["median_s"] for k, v in d["backends"][0]["phases"].items()}
    with open(os.path.join(a.out, name + ".json"), "w") as f:
        json.dump(d, f, indent=1)
    return True


def run_sdcpp(a):
    name = "sdcpp"
    js = os.path.join(a.out, name + ".json")
    out, t = run_one(name, [a.python, "bench/peer_sdcpp.py", a.model, "--steps", str(a.steps), "--size", str(a.size),
                            "--threads", str(a.threads), "--json", js], a, files=[a.model])
    if out is None:
        return None
    with open(js) as f:
        r = json.load(f)
    r["in_process_peak_rss_kib"] = r.pop("peak_rss_kib", None)
    r.update(t)
    r["name"] = name
    return r


def fmt_cached(f):
    return "?" if f is None else f"{100 * f:.0f}%"


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def fmt(key, v):
    if v is None:
        return "-"
    if key == "peak_rss_kib":
        return f"{v / 1048576:.2f} GiB"
    return f"{v:.2f} s" if v >= 0.995 else f"{v:.3f} s"


def table(res):
    runs = [r for r in res["runs"] if r]
    def base_for(key):
        """The first OpenVINO-default run with this figure (a rerun's only where the first lacks it)."""
        return next((r for r in runs if r["name"].startswith("openvino-default") and r.get(key) is not None), None)
    base = base_for("step_median_s")
    sdxl = res.get("family") == "sdxl"
    arch = "SDXL base architecture" if sdxl else "SD 1.5 architecture"
    neg = res.get("negative", "")
    lines = [res["isa"]["line"], f"command: {res['command']}",
             f"{arch}, random weights, {res['size']}x{res['size']}, Euler, CFG 7.5, {res['steps']} steps, "
             f"{res['threads']} threads, seed 1, negative prompt {json.dumps(neg)}; "
             "ratio = runtime / OpenVINO default (< 1: less time or memory)"]
    ov = next((r for r in runs if r["runtime"] == "openvino"), None)
    if ov and ov.get("weight_format"):
        lines.append("OpenVINO IR weights (UNet constants by element type): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(ov["weight_format"].items()))
                     + "; inference precision: " + ", ".join(f"{k} {v}" for k, v in ov.get("precision", {}).items()))
    for m in res.get("merged", []):
        lines.append(f"rerun at {m['started']} and added (a repeated configuration as NAME-2; ratios against the first "
                     f"OpenVINO default run that has the figure): {', '.join(m['rerun'])}")
    lines.append("")
    head = "| | " + " | ".join(r["config"] for r in runs) + " |"
    lines += [head, "|---" * (len(runs) + 1) + "|"]
    for key, label, _ in ROWS:
        if key == "step_median_s":
            label = f"UNet CFG step (median of steps 2-{res['steps']})"
        elif key == "text_encode_s" and sdxl:
            label = "both text encoders, 2 prompts"
        cells = []
        b = base_for(key)
        for r in runs:
            v = r.get(key)
            c = fmt(key, v)
            if b and r is not b and v is not None and b.get(key):
                c += f" ({v / b[key]:.2f}x)"
            cells.append(c)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # Warm phases as process CPU seconds / threads: OpenVINO and sd.cpp per call (UNet: steps 2-N),
    # sdrt from `sdrt bench --cpu-time` (the sdrt-bench runs): steadier than wall time on a shared machine.
    for label, key, phase in (("UNet CFG step", "step_median_cpu_s", "unet"), ("VAE decode", "vae_decode_cpu_s", "vae_decode"),
                              ("text encoding", "text_encode_cpu_s", "clip")):
        cbase = base_for(key)
        bcpu = cbase.get(key) if cbase else None
        cells = []
        for r in runs:
            v = r.get(key)
            if v is None and r["runtime"] == "sdrt":
                v = res.get("sdrt_bench_cpu_s", {}).get(r["name"].replace("sdrt-", ""), {}).get(phase)
            cells.append("-" if v is None else fmt(key, v) + (f" ({v / bcpu:.2f}x)" if bcpu and r is not cbase else ""))
        if any(c != "-" for c in cells):
            lines.append(f"| {label}, CPU s / threads (sdrt: `sdrt bench --cpu-time`, warm) | " + " | ".join(cells) + " |")
    cpu = []
    for r in runs:
        c = (r.get("user_s") or 0) + (r.get("sys_s") or 0)
        b = (base.get("user_s") or 0) + (base.get("sys_s") or 0) if base else 0
        cpu.append(f"{c:.1f} s ({r.get('sys_s') or 0:.1f} sys)" + (f" ({c / b:.2f}x)" if b and r is not base else ""))
    lines.append("| process CPU time, user + sys (whole process) | " + " | ".join(cpu) + " |")
    faults = [f"{(r.get('minor_faults') or 0) / 1e6:.2f} M" for r in runs]
    lines.append("| minor page faults (process) | " + " | ".join(faults) + " |")
    lines.append("| model files in the page cache at start | " + " | ".join(fmt_cached(r.get("files_cached")) for r in runs) + " |")
    lines.append("| load average before the run | " + " | ".join(r.get("load_average_before", "?") for r in runs) + " |")
    return "\n".join(lines)


def cached_then(argv):
    """--cached-then FILES -- CMD...: print the page-cache share of FILES, then exec CMD (run under the lock)."""
    files = [f for f in argv[0].split(",") if f]
    try:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        load = "?"
    print(f"bench-peers: model files in the page cache: {fmt_cached(cached_fraction(files))}; load average: {load}",
          file=sys.stderr, flush=True)
    os.execvp(argv[2], argv[2:])


def main():
    if len(sys.argv) > 3 and sys.argv[1] == "--cached-then":
        cached_then(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=["sd15", "sdxl"], default="sd15",
                    help="sd15: full-size SD 1.5 at 512x512; sdxl: full-size SDXL base at 1024x1024 (defaults below follow it)")
    ap.add_argument("--model", help="single-file checkpoint (sdrt, sd.cpp); default models/{sd15,sdxl}-random-f16.safetensors")
    ap.add_argument("--ir", help="OpenVINO IR folder (peer_openvino.py export); default build/peers/{sd15,sdxl}-random-ov")
    ap.add_argument("--sdrt", default="build/sdrt")
    ap.add_argument("--python", default="build/peers-venv/bin/python", help="the peers' virtualenv interpreter")
    ap.add_argument("--steps", type=int, help="default 4 (sd15), 3 (sdxl)")
    ap.add_argument("--size", type=int, help="default 512 (sd15), 1024 (sdxl)")
    ap.add_argument("--negative", help='negative prompt of every run; default "" (sd15), "blurry" (sdxl)')
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", help="which runs, in this order (of openvino-default, openvino-f32, sdrt-f32, sdrt-auto, sdcpp; "
                         "sdrt-bench-f32 and sdrt-bench-auto add `sdrt bench --json --profile` files for the charts); "
                         "default openvino-default,sdrt-auto,sdrt-f32,openvino-f32,sdcpp (sd15), "
                         "openvino-default,sdrt-auto (sdxl)")
    ap.add_argument("--lock", help="flock this file around each process (one heavy process at a time)")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--out", help="default build/bench-peers (sd15), build/bench-peers-sdxl (sdxl)")
    ap.add_argument("--table", action="store_true", help="reprint the table of OUT/results.json")
    ap.add_argument("--merge", action="store_true",
                    help="keep OUT/results.json's other runs, replacing those rerun now (say so when quoting ratios)")
    a = ap.parse_args()
    sdxl = a.family == "sdxl"
    defaults = {"model": f"models/{a.family}-random-f16.safetensors", "ir": f"build/peers/{a.family}-random-ov",
                "steps": 3 if sdxl else 4, "size": 1024 if sdxl else 512, "negative": "blurry" if sdxl else "",
                "only": "openvino-default,sdrt-auto" if sdxl else "openvino-default,sdrt-auto,sdrt-f32,openvino-f32,sdcpp",
                "out": "build/bench-peers-sdxl" if sdxl else "build/bench-peers"}
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "results.json")
    if a.table:
        with open(path) as f:
            res = json.load(f)
        for prec in ("auto", "f32", "bf16"):
            bp = os.path.join(a.out, f"sdrt-bench-{prec}.json")
            if prec not in res.setdefault("sdrt_bench_cpu_s", {}) and os.path.exists(bp):
                with open(bp) as f:
                    d = json.load(f)
                if d.get("clock") == "process_cpu_per_thread":
                    res["sdrt_bench_cpu_s"][prec] = {k: v["median_s"] for k, v in d["backends"][0]["phases"].items()}
        print(table(res))
        return 0
    res = {"isa": cpu_isa(), "command": "python3 " + " ".join(shlex.quote(x) for x in sys.argv),
           "family": a.family, "negative": a.negative, "size": a.size, "steps": a.steps, "threads": a.threads, "model": a.model, "ir": a.ir,
           "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "runs": []}
    if a.merge and os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        rerun = set(a.only.split(","))
        # Earlier runs are kept; a configuration run again is added beside them as NAME-2.
        res["runs"] = old["runs"]
        a.rename = {n for n in rerun if any(r["name"] == n for r in old["runs"])}
        res["sdrt_bench_cpu_s"] = old.get("sdrt_bench_cpu_s", {})
        res["command"] = old["command"] + "; then " + res["command"]
        res["merged"] = old.get("merged", []) + [{"rerun": sorted(rerun), "started": res["started"]}]
    print(res["isa"]["line"], flush=True)
    runners = {"openvino-default": lambda: run_openvino(a, "default"), "openvino-f32": lambda: run_openvino(a, "f32"),
               "sdrt-f32": lambda: run_sdrt(a, "f32"), "sdrt-auto": lambda: run_sdrt(a, "auto"), "sdcpp": lambda: run_sdcpp(a),
               "sdrt-bench-f32": lambda: run_sdrt_bench(a, "f32"), "sdrt-bench-auto": lambda: run_sdrt_bench(a, "auto")}
    failed = 0
    a.bench_cpu = res.setdefault("sdrt_bench_cpu_s", {})
    for name in a.only.split(","):
        if name not in runners:
            sys.stderr.write(f"bench-peers: unknown run '{name}' (of {', '.join(runners)})\n")
            return 2
        r = runners[name]()
        failed += r is None or r is False
        if isinstance(r, dict):
            if name in getattr(a, "rename", ()):
                r["name"], r["config"] = name + "-2", r["config"] + ", rerun"
            res["runs"].append(r)
            order = {n: i for i, n in enumerate(("openvino-default", "openvino-default-2", "sdrt-auto", "sdrt-f32",
                                                  "openvino-f32", "sdcpp"))}
            res["runs"].sort(key=lambda x: order.get(x["name"], 99))
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
    print("\n" + table(res))
    print(f"\nbench-peers: results in {path}; timings on a shared machine are noisy: the ratios within one run count")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
