#!/usr/bin/env python3
"""peer_openvino.py: OpenVINO's side of the side-by-side benchmark (`make bench-peers`,
`make bench-peers-sdxl`).

Benchmark tooling only, never a dependency of sdrt: it runs in the bench's own
virtualenv (build/peers-venv, `make peers-venv`, pinned versions in
bench/requirements-peers.txt: openvino + optimum-intel from PyPI).

    python bench/peer_openvino.py export DIFFUSERS_FOLDER IR_DIR [--weight-format auto|fp32|fp16]
        Exports a diffusers SD 1.5 or SDXL base folder to OpenVINO IR with
        `optimum-cli export openvino --task text-to-image --weight-format F`:
        SD 1.5 e.g. the random-weight folder of tests/reference/gen_full.py --folder,
        SDXL the one of tests/reference/sdxl_single_to_folder.py (the weights of
        models/sdxl-random-f16.safetensors). Every tensor has its own seed, so the
        export's merging of identical tensors does not shrink the model. "auto" is
        fp32 for SD 1.5 and fp16 for SDXL (the file's own precision; optimum's
        default for models over 1 B parameters would be int8 weights, a different
        model): uncompressed weights either way; what precision OpenVINO computes in
        is chosen at compile time (`run` prints it). The folder's tokenizer/ (and
        tokenizer_2/) hold configs only (sdrt reads the CLIP vocabulary from
        build/vocab); vocab.json and merges.txt are built from that same BPE file
        (--vocab) into a staging folder of links beside IR_DIR.

    python bench/peer_openvino.py run IR_DIR [--precision default|f32] [--steps 4]
                                      [--size 512] [--threads 2] [--negative TEXT] [--json OUT]
        One process = one cold measurement: load + reshape to a static
        1xSIZExSIZE shape + compile, then one txt2img (Euler, CFG 7.5, seed 1) to a
        PNG, with OVStableDiffusionPipeline or, for an SDXL IR (text_encoder_2/),
        OVStableDiffusionXLPipeline. Times every UNet call (one per step: CFG runs
        as a batch of 2), the text encoder calls (prompt and negative prompt; SDXL:
        both encoders, also apart) and the VAE decode, and prints what
        INFERENCE_PRECISION_HINT each compiled model ran with.
        "default" is OpenVINO's own choice (bf16 on CPUs with avx512_bf16 or
        AMX, f32 elsewhere); "f32" forces f32. Peak RSS is ru_maxrss of this
        process (the driver also runs it under /usr/bin/time -v).
"""
import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time

T_PROCESS = time.perf_counter()
PROMPT = "a photograph of an astronaut riding a horse"


def bytes_to_unicode():
    """GPT-2/CLIP byte -> printable-unicode map (the BPE files' alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_clip_tokenizer(bpe_gz, out_dir, src_tokenizer_dir):
    """vocab.json + merges.txt of CLIP's tokenizer from OpenAI's bpe_simple_vocab_16e6.txt.gz
    (49152 - 256 - 2 merges; ids: 256 bytes, 256 bytes + </w>, merges, the two specials)."""
    os.makedirs(out_dir, exist_ok=True)
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in lines]
    alphabet = bytes_to_unicode()
    vocab = alphabet + [v + "</w>" for v in alphabet] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    for name in os.listdir(src_tokenizer_dir):
        if name.endswith(".json") and name != "vocab.json":
            with open(os.path.join(src_tokenizer_dir, name)) as fi, open(os.path.join(out_dir, name), "w") as fo:
                fo.write(fi.read())


def is_sdxl(folder):
    """An SDXL (base) folder or IR: it has a second text encoder."""
    return os.path.isdir(os.path.join(folder, "text_encoder_2"))


def cmd_export(a):
    src = os.path.abspath(a.folder)
    sdxl = is_sdxl(src)
    tokenizers = ("tokenizer", "tokenizer_2") if sdxl else ("tokenizer",)
    fmt = a.weight_format if a.weight_format != "auto" else ("fp16" if sdxl else "fp32")
    stage = os.path.abspath(a.ir_dir.rstrip("/") + "-src")
    os.makedirs(stage, exist_ok=True)
    for name in os.listdir(src):
        link = os.path.join(stage, name)
        if name in tokenizers:
            continue
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.join(src, name), link)
    for name in tokenizers:
        write_clip_tokenizer(a.vocab, os.path.join(stage, name), os.path.join(src, name))
    cli = os.path.join(os.path.dirname(sys.executable), "optimum-cli")
    cmd = [cli, "export", "openvino", "--model", stage, "--task", "text-to-image", "--weight-format", fmt, a.ir_dir]
    print(f"peer_openvino: {'SDXL' if sdxl else 'SD'} folder, weights {fmt}: " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"peer_openvino: exported {a.ir_dir} in {time.perf_counter() - t0:.1f} s", flush=True)


def timed(obj, sink, cpu_sink, threads):
    """Wrap obj.forward: append the wall seconds of each call to sink, and the process CPU
    seconds / threads of the call to cpu_sink (steadier than wall time on a shared machine)."""
    inner = obj.forward

    def forward(*args, **kw):
        t, c = time.perf_counter(), time.process_time()
        r = inner(*args, **kw)
        sink.append(time.perf_counter() - t)
        cpu_sink.append((time.process_time() - c) / threads)
        return r
    obj.forward = forward


def precision_of(part):
    req = getattr(part, "request", None)
    if req is None:
        return "?"
    cm = req.get_compiled_model() if hasattr(req, "get_compiled_model") else req
    try:
        v = cm.get_property("INFERENCE_PRECISION_HINT")
        return v.to_string() if hasattr(v, "to_string") else str(v)
    except Exception as e:  # a property this plugin does not report
        return f"? ({e})"


def cmd_run(a):
    import numpy as np
    import openvino as ov
    import torch
    from diffusers import EulerDiscreteScheduler
    from optimum.intel import OVStableDiffusionPipeline, OVStableDiffusionXLPipeline

    t_import = time.perf_counter() - T_PROCESS
    sdxl = is_sdxl(a.ir_dir)
    torch.set_num_threads(a.threads)
    cfg = {"INFERENCE_NUM_THREADS": str(a.threads)}
    if a.precision == "f32":
        cfg["INFERENCE_PRECISION_HINT"] = "f32"
    t0 = time.perf_counter()
    cls = OVStableDiffusionXLPipeline if sdxl else OVStableDiffusionPipeline
    pipe = cls.from_pretrained(a.ir_dir, compile=False, ov_config=cfg)
    pipe.reshape(batch_size=1, height=a.size, width=a.size, num_images_per_prompt=1)
    pipe.compile()
    load = time.perf_counter() - t0
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    encoders = ("text_encoder", "text_encoder_2") if sdxl else ("text_encoder",)
    prec = {name: precision_of(getattr(pipe, name)) for name in encoders + ("unet", "vae_decoder")}
    print(f"peer_openvino: openvino {ov.__version__}, {cls.__name__}, precision {a.precision}: "
          "INFERENCE_PRECISION_HINT " + ", ".join(f"{k} {v}" for k, v in prec.items()), flush=True)
    unet, vae, unet_cpu, vae_cpu = [], [], [], []
    text = {name: ([], []) for name in encoders}
    timed(pipe.unet, unet, unet_cpu, a.threads)
    for name in encoders:
        timed(getattr(pipe, name), *text[name], a.threads)
    timed(pipe.vae_decoder, vae, vae_cpu, a.threads)
    t1 = time.perf_counter()
    image = pipe(PROMPT, negative_prompt=a.negative, num_inference_steps=a.steps, guidance_scale=7.5, height=a.size,
                 width=a.size, generator=torch.Generator().manual_seed(1)).images[0]
    if a.png:
        image.save(a.png)
    generate = time.perf_counter() - t1
    arr = np.asarray(image)
    text_s = [x for name in encoders for x in text[name][0]]
    res = {
        "runtime": "openvino",
        "version": ov.__version__,
        "pipeline": cls.__name__,
        "config": "OpenVINO " + ("default (" + prec["unet"] + ")" if a.precision == "default" else "f32"),
        "precision": prec,
        "weight_format": ir_weight_format(a.ir_dir),
        "threads": a.threads,
        "size": a.size,
        "steps": a.steps,
        "negative_prompt": a.negative,
        "step_s": unet,
        "first_step_s": unet[0] if unet else None,
        "step_median_s": statistics.median(unet[1:]) if len(unet) > 1 else None,
        "step_cpu_s": unet_cpu,
        "step_median_cpu_s": statistics.median(unet_cpu[1:]) if len(unet_cpu) > 1 else None,
        "vae_decode_cpu_s": sum(vae_cpu),
        "text_encode_cpu_s": sum(x for name in encoders for x in text[name][1]),
        "vae_decode_s": sum(vae),
        "text_encode_s": sum(text_s),
        "text_encode_calls": len(text_s),
        "text_encode_per_encoder_s": {name: sum(text[name][0]) for name in encoders},
        "load_s": load,
        "generate_s": generate,
        "cold_image_s": load + generate,
        "import_s": t_import,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "image_mean": float(arr.mean()),
    }
    per_enc = "; ".join(f"{name} {sum(text[name][0]):.3f} s" for name in encoders) if sdxl else ""
    print(f"peer_openvino: load+compile {load:.2f} s; UNet calls {', '.join(f'{x:.2f}' for x in unet)} s; "
          f"text {sum(text_s):.3f} s ({len(text_s)} calls{'; ' + per_enc if per_enc else ''}); "
          f"VAE decode {sum(vae):.2f} s; generate {generate:.2f} s; "
          f"peak RSS {res['peak_rss_kib'] / 1048576:.2f} GiB", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


def ir_weight_format(ir_dir):
    """The element types of the UNet IR's weight constants (e.g. {"f16": 2400}), read from its XML."""
    import re
    counts = {}
    try:
        with open(os.path.join(ir_dir, "unet", "openvino_model.xml")) as f:
            for m in re.finditer(r'type="Const"[^>]*>\s*<data [^>]*element_type="(\w+)"', f.read()):
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    except OSError:
        pass
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("folder")
    e.add_argument("ir_dir")
    e.add_argument("--vocab", default="build/vocab/bpe_simple_vocab_16e6.txt.gz")
    e.add_argument("--weight-format", choices=["auto", "fp32", "fp16"], default="auto",
                   help="auto: fp32 for SD 1.5, fp16 for SDXL (never optimum's int8 default)")
    r = sub.add_parser("run")
    r.add_argument("ir_dir")
    r.add_argument("--precision", choices=["default", "f32"], default="default")
    r.add_argument("--steps", type=int, default=4)
    r.add_argument("--size", type=int, default=512)
    r.add_argument("--threads", type=int, default=os.cpu_count())
    r.add_argument("--negative", default="", help="negative prompt (sdrt's run gets the same)")
    r.add_argument("--png")
    r.add_argument("--json")
    a = ap.parse_args()
    cmd_export(a) if a.cmd == "export" else cmd_run(a)


if __name__ == "__main__":
    main()
