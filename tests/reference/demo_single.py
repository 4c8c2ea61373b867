#!/usr/bin/env python3
"""demo_single.py - the demo model's single file (LDM key names), built from its
diffusers folder instead of committed: the same F16 weights under other names,
so only the folder and a small recipe (tests/models/demo.single.json: the single
file's safetensors header and, per tensor, where its bytes come from) are in the
repository. Python standard library only (runs in `make tests`, no torch).

    demo_single.py build FOLDER RECIPE OUT     # OUT byte-identical to what train_demo.py wrote
    demo_single.py recipe FOLDER SINGLE RECIPE # after retraining: record SINGLE's layout

Each tensor of the single file is either the bytes of one tensor of the folder
(matched by content when the recipe is made) or CLIP's position ids (int64
0..n-1, which the folder does not store)."""
import json
import os
import struct
import sys

COMPONENTS = ("text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
              "vae/diffusion_pytorch_model.safetensors")


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        data = f.read()
    return raw, json.loads(raw), data


def folder_tensors(folder):
    out = {}
    for comp in COMPONENTS:
        _, h, data = read(os.path.join(folder, comp))
        for k, v in h.items():
            if k != "__metadata__":
                b, e = v["data_offsets"]
                out[comp + ":" + k] = data[b:e]
    return out


def make_recipe(folder, single, recipe):
    raw, h, data = read(single)
    by_bytes = {}
    for src, b in folder_tensors(folder).items():
        by_bytes.setdefault(b, src)
    source = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        if v["dtype"] == "I64" and data[b:e] == b"".join(struct.pack("<q", i) for i in range((e - b) // 8)):
            source[k] = "arange"
        elif data[b:e] in by_bytes:
            source[k] = by_bytes[data[b:e]]
        else:
            sys.exit(f"demo_single: {k} of {single} is in no tensor of {folder}")
    with open(recipe, "w") as f:
        json.dump({"header": raw.decode("utf-8"), "source": source}, f, indent=0, sort_keys=True)
        f.write("\n")


def build(folder, recipe, out):
    with open(recipe) as f:
        r = json.load(f)
    raw = r["header"].encode("utf-8")
    h = json.loads(raw)
    tensors = folder_tensors(folder)
    items = sorted(((v["data_offsets"], k) for k, v in h.items() if k != "__metadata__"))
    body = bytearray()
    for (b, e), k in items:
        src = r["source"][k]
        chunk = b"".join(struct.pack("<q", i) for i in range((e - b) // 8)) if src == "arange" else tensors[src]
        if len(body) != b or len(chunk) != e - b:
            sys.exit(f"demo_single: {k}: {folder} does not match the recipe {recipe} (retrained? run `recipe`)")
        body += chunk
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + bytes(body))
    os.replace(tmp, out)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "build":
        build(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "recipe":
        make_recipe(*sys.argv[2:])
    else:
        sys.exit(__doc__)
