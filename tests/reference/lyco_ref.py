"""lyco_ref.py - numpy deltas of LoRA / LyCORIS modules, written from the
formulas (LyCORIS docs and A1111 extensions-builtin/Lora network_*.py), for
the formats diffusers cannot load (LoHa, LoKr, Tucker LoCon, full diffs).

Every function returns the delta with the target's shape in float64;
scale = multiplier * (alpha / rank) as the callers pass it.
"""
import numpy as np


def lora(up, down, scale, shape, mid=None):
    """up [out, r(,1,1)], down [r, in(,kh,kw)]; mid [r, r, kh, kw] (Tucker)."""
    u = up.reshape(up.shape[0], -1).astype(np.float64)
    if mid is None:
        d = down.reshape(down.shape[0], -1).astype(np.float64)
        return (scale * (u @ d)).reshape(shape)
    d = down.reshape(down.shape[0], -1).astype(np.float64)  # [r, in]
    w = np.einsum("nmkl,in,mj->ijkl", mid.astype(np.float64), u, d)
    return (scale * w).reshape(shape)


def _tucker(t, wa, wb):
    """W[p, r, k, l] = sum_ij t[i, j, k, l] wa[i, p] wb[j, r]"""
    return np.einsum("ijkl,ip,jr->prkl", t.astype(np.float64), wa.astype(np.float64), wb.astype(np.float64))


def loha(w1a, w1b, w2a, w2b, scale, shape, t1=None, t2=None):
    if t1 is None:
        p1 = w1a.astype(np.float64) @ w1b.reshape(w1b.shape[0], -1).astype(np.float64)
        p2 = w2a.astype(np.float64) @ w2b.reshape(w2b.shape[0], -1).astype(np.float64)
    else:
        p1, p2 = _tucker(t1, w1a, w1b), _tucker(t2, w2a, w2b)
    return (scale * p1.reshape(shape) * p2.reshape(shape))


def lokr(w1, w2, scale, shape, w1a=None, w1b=None, w2a=None, w2b=None, t2=None):
    if w1 is None:
        w1 = w1a.astype(np.float64) @ w1b.astype(np.float64)
    if w2 is None:
        if t2 is not None:
            w2 = _tucker(t2, w2a, w2b)
        else:
            w2 = w2a.astype(np.float64) @ w2b.reshape(w2b.shape[0], -1).astype(np.float64)
            if len(shape) == 4:
                w2 = w2.reshape(w2.shape[0], shape[1] // w1.shape[1], *shape[2:])
    w1 = w1.astype(np.float64)
    w2 = w2.astype(np.float64)
    if len(shape) == 4 and w2.ndim == 4:
        w1 = w1[:, :, None, None]
    return scale * np.kron(w1, w2).reshape(shape)
