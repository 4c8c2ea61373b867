"""golden_io.py - writes the small golden files read by tests/golden.h.

Format (little endian): magic b"SDGOLDEN", u32 version (1), u32 count, then per
entry: u32 name length, name (UTF-8), u32 dtype (0 f32, 1 f64, 2 i64),
u32 ndim, i64 dims[ndim], the data (C order).
"""
import struct

import numpy as np

MAGIC = b"SDGOLDEN"
VERSION = 1
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.int64): 2}


def write_golden(path, tensors):
    """tensors: dict name -> numpy array (float32, float64 or int64)."""
    with open(path + ".tmp", "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<II", VERSION, len(tensors)))
        for name, a in tensors.items():
            a = np.ascontiguousarray(a)
            if a.dtype not in DTYPES:
                raise TypeError(f"{name}: dtype {a.dtype} not supported")
            nb = name.encode("utf-8")
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<II", DTYPES[a.dtype], a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
    import os
    os.replace(path + ".tmp", path)
