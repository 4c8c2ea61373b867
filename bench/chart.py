#!/usr/bin/env python3
"""chart.py: pictures of the benchmarks for docs/benchmarks.md (Debian's python3-matplotlib).

    /usr/bin/python3 bench/chart.py [--peers build/bench-peers/results.json]
                                    [--bench sdrt-bench.json ...] [--out docs/img]

--peers   the `make bench-peers` results (bench/bench_peers.py): one panel per figure
          (per step, first step, VAE decode, text encoding, load, cold image, peak
          memory), one bar per runtime and configuration -> peers.svg / peers.png
--bench   one or more `sdrt bench --json [--profile]` outputs: median seconds per phase
          and, with --profile, seconds per op, one bar per backend of each file
          -> bench-phases.svg/.png, bench-ops.svg/.png
Small files: SVG text stays text (no embedded glyphs), PNG at 80 dpi.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 8, "axes.titlesize": 9})
COLORS = {"openvino": "#4c72b0", "sdrt": "#dd8452", "stable-diffusion.cpp": "#55a868"}
PEER_PANELS = [
    ("step_median_s", "UNet CFG step, median of steps 2-N (s)"),
    ("step_cpu_warm_s", "UNet CFG step, CPU s / threads (sdrt: sdrt bench --cpu-time)"),
    ("first_step_s", "first step of the process (s)"),
    ("vae_decode_s", "VAE decode (s)"),
    ("text_encode_s", "text encoding, 2 prompts (s)"),
    ("load_s", "load (+ compile) (s)"),
    ("cold_image_s", "cold image, load to PNG (s)"),
    ("peak_rss_kib", "peak resident memory (GiB)"),
    ("cpu_s", "process CPU time, user + sys (s)"),
]


def save(fig, out, name):
    for ext in ("svg", "png"):
        path = os.path.join(out, f"{name}.{ext}")
        fig.savefig(path, dpi=80, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        print(f"chart: wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")
    plt.close(fig)


def bar_panel(ax, labels, values, colors, title, base=None):
    """Horizontal bars with their values (and ratio to base)."""
    y = list(range(len(labels)))[::-1]
    ax.barh(y, [v or 0 for v in values], color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.set_title(title, loc="left")
    top = max([v for v in values if v] or [1])
    for yi, v in zip(y, values):
        if v is None:
            ax.text(0, yi, " -", va="center")
            continue
        txt = f"{v:.2f}" if v >= 0.995 else f"{v:.3f}"
        if base:
            txt += f" ({v / base:.2f}x)"
        ax.text(v + top * 0.01, yi, txt, va="center")
    ax.set_xlim(0, top * 1.45)
    ax.spines[["top", "right"]].set_visible(False)


def chart_peers(path, out):
    with open(path) as f:
        res = json.load(f)
    runs = [r for r in res["runs"] if r]
    cpu = res.setdefault("sdrt_bench_cpu_s", {})
    for prec in ("auto", "f32", "bf16"):  # the sdrt-bench runs' files beside results.json
        bp = os.path.join(os.path.dirname(path), f"sdrt-bench-{prec}.json")
        if prec not in cpu and os.path.exists(bp):
            with open(bp) as f:
                d = json.load(f)
            if d.get("clock") == "process_cpu_per_thread":
                cpu[prec] = {k: v["median_s"] for k, v in d["backends"][0]["phases"].items()}
    for r in runs:
        r["cpu_s"] = (r.get("user_s") or 0) + (r.get("sys_s") or 0) or None
        r["step_cpu_warm_s"] = r.get("step_median_cpu_s")
        if r["step_cpu_warm_s"] is None and r["runtime"] == "sdrt":
            r["step_cpu_warm_s"] = res.get("sdrt_bench_cpu_s", {}).get(r["name"].replace("sdrt-", ""), {}).get("unet")
    labels = [r["config"] for r in runs]
    colors = [COLORS.get(r["runtime"], "#8c8c8c") for r in runs]
    fig, axes = plt.subplots(5, 2, figsize=(11, 11.5))
    axes = axes.ravel()
    axes[-1].axis("off")
    for ax, (key, title) in zip(axes, PEER_PANELS):
        scale = 1 / 1048576 if key == "peak_rss_kib" else 1
        vals = [r.get(key) * scale if r.get(key) is not None else None for r in runs]
        # Ratios against the first OpenVINO-default run that has the figure (a rerun's where needed).
        base = next((r for r in runs if r["name"].startswith("openvino-default") and r.get(key) is not None), None)
        b = base.get(key) * scale if base else None
        bar_panel(ax, labels, vals, colors, title.replace("2-N", f"2-{res['steps']}"), b)
    fig.suptitle("sdrt, OpenVINO and stable-diffusion.cpp side by side (make bench-peers); ratios against OpenVINO "
                 f"default (< 1: less)\n{res['isa']['line']}\nSD 1.5 architecture, random weights, "
                 f"{res['size']}x{res['size']}, Euler, CFG 7.5, {res['steps']} steps, {res['threads']} threads, "
                 "one cold process each", x=0.02, ha="left", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save(fig, out, "peers")


def bench_series(paths):
    """(label, backend entry, file) for every backend of every sdrt bench --json file."""
    series = []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        for b in d["backends"]:
            compute = b.get("opencl_compute") or d.get("cpu_compute", "")
            lab = f"{b['name']} {compute}" + (" low-mem" if d.get("low_memory") else "")
            series.append((lab.strip(), b, d))
    return series


def chart_bench(paths, out):
    series = bench_series(paths)
    d0 = series[0][2]
    where = (f"sdrt bench --json, {d0['width']}x{d0['height']}, UNet batch {d0['unet_batch']}, {d0['threads']} threads, "
             f"oneDNN ISA {d0['isa']}, {d0['clock']} clock")
    phases = ["clip", "unet", "vae_decode"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.6 + 0.35 * len(series) + 1))
    for ax, ph in zip(axes, phases):
        vals = [b["phases"].get(ph, {}).get("median_s") for _, b, _ in series]
        bar_panel(ax, [s[0] for s in series], vals, ["#dd8452"] * len(series), f"{ph} (median s)")
    fig.suptitle(where, x=0.02, ha="left")
    fig.tight_layout()
    save(fig, out, "bench-phases")
    with_ops = [s for s in series if s[1].get("ops")]
    if not with_ops:
        return
    totals = {}
    for _, b, _ in with_ops:
        for o in b["ops"]:
            totals[o["op"]] = totals.get(o["op"], 0) + o["seconds"]
    ops = sorted(totals, key=totals.get, reverse=True)
    major = ops[:7]
    fig, ax = plt.subplots(figsize=(10, max(2.2, 0.8 + 0.45 * len(with_ops))))
    y = list(range(len(with_ops)))[::-1]
    left = [0.0] * len(with_ops)
    cmap = plt.get_cmap("tab10")
    for k, op in enumerate(major + ["other"]):
        w = []
        for _, b, _ in with_ops:
            sec = {o["op"]: o["seconds"] for o in b["ops"]}
            w.append(sum(v for o, v in sec.items() if o not in major) if op == "other" else sec.get(op, 0))
        ax.barh(y, w, left=left, color=cmap(k % 10), label=op)
        left = [a + b for a, b in zip(left, w)]
    for yi, t in zip(y, left):
        ax.text(t, yi, f" {t:.2f} s", va="center")
    ax.set_yticks(y)
    ax.set_yticklabels([s[0] for s in with_ops])
    ax.set_xlabel("wall seconds of one profiled CLIP + UNet CFG step + VAE decode (per-op timers are wall clock)")
    ax.set_xlim(0, max(left) * 1.15)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("where the time goes, per op (" + where + ")", loc="left", fontsize=8)
    fig.tight_layout()
    save(fig, out, "bench-ops")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers")
    ap.add_argument("--bench", action="append", default=[])
    ap.add_argument("--out", default="docs/img")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.peers and os.path.exists(a.peers):
        chart_peers(a.peers, a.out)
    if a.bench:
        chart_bench(a.bench, a.out)


if __name__ == "__main__":
    main()
