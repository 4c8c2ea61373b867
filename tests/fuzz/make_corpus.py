#!/usr/bin/env python3
"""make_corpus.py - writes the fuzz seed corpus (tiny valid and invalid
safetensors files) into tests/fuzz/safetensors/. Run from the repository root."""
import json, os, struct

out = os.path.join(os.path.dirname(__file__), "safetensors")
os.makedirs(out, exist_ok=True)

def raw(header, data=b"", pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

def tensors(spec, meta=None):
    """spec: list of (name, dtype, shape, bytes); laid out back to back."""
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, b in spec:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    return hdr, data

def save(name, blob):
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)

f32 = struct.pack("<4f", 1.0, -0.0, float("inf"), 1e-40)
f16 = struct.pack("<4H", 0x3C00, 0x0001, 0x7C00, 0x7E00)
bf16 = struct.pack("<2H", 0x3F80, 0xFF80)
h, d = tensors([("conv.weight", "F32", [2, 2], f32), ("h", "F16", [4], f16), ("b", "BF16", [1, 2], bf16),
                ("i", "I32", [1], struct.pack("<i", -7)), ("l", "I64", [], struct.pack("<q", 1 << 40)),
                ("e", "F16", [0, 3], b"")], {"format": "pt", "k\u00e9y": "v\u2603"})
save("valid_all_dtypes.safetensors", raw(h, d))
h, d = tensors([("d", "F64", [1], b"\0" * 8), ("u", "U8", [3], b"abc"), ("z", "BOOL", [1], b"\1"),
                ("q", "F8_E4M3", [2], b"\1\2"), ("n", "F4", [2], b"\x12"), ("s", "I16", [1], b"\0\0")])
save("valid_unsupported.safetensors", raw(h, d))
save("valid_gap.safetensors", raw({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 4 + f32[:4] + b"tail"))
save("valid_empty.safetensors", raw({}))
save("valid_escaped_names.safetensors",
     raw(b'{"a\\"b\\\\c\\u00e9\\ud83d\\ude00":{"dtype":"F16","shape":[2,1],"data_offsets":[0,4]}}', f16[:4]))
h, d = tensors([("a", "F32", [2], f32[:8]), ("b", "F32", [2], f32[8:])])
h["b"]["data_offsets"] = [4, 12]
save("invalid_overlap.safetensors", raw(h, d))
h, d = tensors([("a", "F32", [3], f32[:8])])
save("invalid_size_mismatch.safetensors", raw(h, d))
save("invalid_header_len.safetensors", struct.pack("<Q", 1 << 20) + b'{"a":{}}')
save("invalid_duplicate.safetensors",
     raw(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32[:8]))
save("invalid_json.safetensors", raw(b'{"a":{"dtype":"F32","shape":[1,],"data_offsets":[0,4]}}', f32[:4], pad=False))
save("invalid_shape.safetensors", raw({"a": {"dtype": "F32", "shape": [-1, 2.5, 1e3], "data_offsets": [0, 4]}}, f32[:4]))
save("invalid_dtype.safetensors", raw({"a": {"dtype": "Q4_0", "shape": [1], "data_offsets": [0, 4]}}, f32[:4]))
save("invalid_metadata.safetensors", raw({"__metadata__": {"epoch": 3}, "a": [1]}))

# ---- seed corpora of the other targets (tests/fuzz/<target>/) -------------
import zlib

def save_to(target, name, blob):
    d = os.path.join(os.path.dirname(__file__), target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob if isinstance(blob, bytes) else blob.encode())

def chunk(t, d, say=None):
    return struct.pack(">I", len(d) if say is None else say) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)

def png(w, h, bits, color, rows, interlace=0, extra=b"", after=b"", plte=None, trns=None):
    """rows: raw scanline bytes (filter byte included) as one bytes object."""
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, color, 0, 0, interlace)) + extra
    if plte: out += chunk(b"PLTE", plte)
    if trns: out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(rows, 9)) + after + chunk(b"IEND", b"")

def scan(w, h, bpp_bits, seed):
    rb = (w * bpp_bits + 7) // 8
    return b"".join(bytes([(y % 5)]) + bytes(((x * 37 + y * 11 + seed) & 255) for x in range(rb)) for y in range(h))

text = b"parameters\0a photo of a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 1"
save_to("png", "rgb8.png", png(4, 3, 8, 2, scan(4, 3, 24, 1), extra=chunk(b"tEXt", text)))
save_to("png", "rgba16_adam7.png", png(5, 4, 16, 6, b"".join(b"\0" + bytes(5 * 8) for _ in range(4)), interlace=1))
save_to("png", "gray1.png", png(9, 2, 1, 0, scan(9, 2, 1, 2)))
save_to("png", "gray_alpha8.png", png(3, 3, 8, 4, scan(3, 3, 16, 3)))
save_to("png", "palette4_trns.png", png(6, 2, 4, 3, b"\0\x01\x23\x10\0\x32\x01", plte=bytes(range(12)), trns=b"\0\x80"))
save_to("png", "ztxt.png", png(1, 1, 8, 0, b"\0\x07", after=chunk(b"zTXt", b"parameters\0\0" + zlib.compress("caf\xe9".encode("latin-1")))))
save_to("png", "itxt.png", png(1, 1, 8, 0, b"\0\x07", extra=chunk(b"iTXt", b"parameters\0\x01\0\0\0" + zlib.compress("\u732b".encode()))))
ihdr = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
save_to("png", "regress_huge_text_len.png", (ihdr + chunk(b"tEXt", b"parameters\0" + b"A" * 40, 0x7FFFFFF0))[:96])
save_to("png", "regress_huge_dims.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 16, 6, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))

for i, p in enumerate([
        "a photo of a cat", "(masterpiece:1.2), [blurry], ((very detailed)) cat", "a BREAK b BREAK",
        "<lora:detail:0.8> a <lora:x:0.5:unet=0.2> castle", "(unbalanced [brackets", "\\(escaped\\) \\[x\\]",
        "(word:abc) and (word:1.2.3)", ", , , " * 30 + "end", "caf\u00e9 \u732b (\u732b:1.5)", ""]):
    save_to("prompt", "seed%02d.txt" % i, p)

for i, p in enumerate(["a photo of a cat", "HELLO   World!! it's 3.14159 <|startoftext|>x<|endoftext|>",
                       "caf\u00e9 na\u00efve \u732b\U0001F600 \u00c5ngstr\u00f6m", "don't won't I'M", "a" * 300,
                       "\u0130stanbul \u03a3\u039f\u03a3 \uff21\uff22", "<|endoftext|>" * 3, "\t\n\r  x  "]):
    save_to("tokenizer", "text%02d.txt" % i, p)
vocab = json.dumps({"a</w>": 0, "b</w>": 1, "a": 2, "b": 3, "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6, "!": 7})
save_to("tokenizer", "load_small.bin", b"L" + vocab.encode() + b"\0#version: 0.2\na b</w>\n\0" + json.dumps({"pad_token": "!"}).encode())
save_to("tokenizer", "load_bad_merge.bin", b"L" + vocab.encode() + b"\0#version: 0.2\na\n\0{}")

for name, j in {
        "unet": {"_class_name": "UNet2DConditionModel", "attention_head_dim": [5, 10, 20, 20], "norm_num_groups": 32, "norm_eps": 1e-05, "cross_attention_dim": 1024},
        "unet_heads_int": {"num_attention_heads": 8, "attention_head_dim": None},
        "vae": {"_class_name": "AutoencoderKL", "norm_num_groups": 32, "scaling_factor": 0.18215, "block_out_channels": [128, 256, 512, 512]},
        "text_encoder": {"architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "num_attention_heads": 12},
        "scheduler": {"_class_name": "PNDMScheduler", "prediction_type": "v_prediction", "timestep_spacing": "leading", "steps_offset": 1},
        "tokenizer": {"pad_token": {"content": "!", "lstrip": False}},
        "model_index": {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]},
        }.items():
    save_to("json", name + ".json", json.dumps(j, indent=1))
save_to("json", "escapes.json", '{"s": "a\\u00e9\\ud83d\\ude00\\n\\"", "n": [-0, 1e308, -1.5e-7, 12345678901234567890], "t": true, "f": false, "z": null}')
save_to("json", "deep.json", "[" * 300 + "]" * 300)
save_to("json", "bad_trailing.json", '{"a": 1,}')
