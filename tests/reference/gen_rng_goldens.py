"""gen_rng_goldens.py - torch.randn outputs on a CPU generator -> tests/golden/rng.bin.

Run from the repository root with the reference venv (see requirements.txt):
    python tests/reference/gen_rng_goldens.py
Entries:
  seed<S>_n<N>      torch.randn(N, generator=Generator("cpu").manual_seed(S))
  seq<S>_<i>        the i-th call of a sequence of randn calls on one generator
                    (sizes SEQ_SIZES), which exercises torch's cached normal
  shape_seed<S>     torch.randn((2, 4, 9, 7)) (shape only matters through numel)
  latent_seed1      torch.randn((1, 4, 64, 64)): a 512x512 SD latent
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import write_golden  # noqa: E402

SEEDS = [0, 42, 1234, 2**32 + 7]
SIZES = [1, 2, 3, 15, 16, 17, 31, 32, 100, 256, 1000]
SEQ_SIZES = [3, 5, 20, 1, 16, 7, 33]


def main():
    out = {}
    for s in SEEDS:
        for n in SIZES:
            g = torch.Generator("cpu").manual_seed(s)
            out[f"seed{s}_n{n}"] = torch.randn(n, generator=g, dtype=torch.float32).numpy()
        g = torch.Generator("cpu").manual_seed(s)
        for i, n in enumerate(SEQ_SIZES):
            out[f"seq{s}_{i}"] = torch.randn(n, generator=g, dtype=torch.float32).numpy()
        g = torch.Generator("cpu").manual_seed(s)
        out[f"shape_seed{s}"] = torch.randn((2, 4, 9, 7), generator=g, dtype=torch.float32).numpy()
    g = torch.Generator("cpu").manual_seed(1)
    out["latent_seed1"] = torch.randn((1, 4, 64, 64), generator=g, dtype=torch.float32).numpy()
    out["meta.torch_version"] = np.array([ord(c) for c in torch.__version__], dtype=np.int64)
    path = os.path.join(os.path.dirname(__file__), "..", "golden", "rng.bin")
    write_golden(os.path.normpath(path), out)
    print("wrote", path, len(out), "entries")


if __name__ == "__main__":
    main()
