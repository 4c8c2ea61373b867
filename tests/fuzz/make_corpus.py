#!/usr/bin/env python3
"""make_corpus.py - writes the fuzz seed corpus (tiny valid and invalid
safetensors files) into tests/fuzz/corpus/. Run from the repository root."""
import json, os, struct

out = os.path.join(os.path.dirname(__file__), "corpus")
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
