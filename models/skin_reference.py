"""NumPy reference implementation of the dermatrack ``skin-v1`` measurement model.

This file mirrors ``skin-v1.onnx`` operation by operation, in float32, so that
(1) ``check_skin_model.py`` can prove the ONNX graph computes what we say it
computes, and (2) the Rust port can be written line by line from it.  It is
deliberately written with plain loops over kernel taps instead of clever NumPy
so that the order of floating-point operations is obvious.

Every numeric parameter (chromophore inverse matrix, Gaussian kernels, pyramid
factors) is read from the manifest ``skin-v1.json`` ("graph" section), which is
the single source of truth shared by the ONNX builder, this reference and Rust.

Pipeline (why each step exists):

1. sRGB -> linear (IEC 61966-2-1 piecewise EOTF).  Optical density is only
   additive for *linear* light (Beer-Lambert), so the gamma must be removed
   before taking logs.
2. clamp linear to [1e-4, 1] and take OD = -ln(linear).  The lower clamp keeps
   OD finite (max 9.21); the upper clamp makes blown highlights OD 0.
3. Per-pixel 3x3 solve OD = m*s_mel + h*s_hb + s*(1,1,1)
   (Tsumura et al., JOSA A 16(9):2169, 1999; ACM SIGGRAPH 2003).  Exposure
   gain k adds -ln(k)*(1,1,1) to OD, which the (1,1,1) column maps entirely
   into ``shading``; melanin and hemoglobin are therefore exposure-invariant.
4. Band-pass (difference of Gaussians) at pore scale of the noise-weighted
   shading u . OD (weights in the manifest, ``pore_weights``), at scar scale of
   the Tsumura shading, and
   chromophore-minus-local-background ("excess") maps.  Any spatially constant
   offset (white-balance cast, exposure) is removed exactly because every
   Gaussian kernel sums to 1.
5. Large Gaussians use a pyramid: AveragePool(f) -> Gaussian(sigma') ->
   bilinear Resize(xf, half_pixel).  The box filter has variance (f^2-1)/12
   and half-pixel linear up-sampling a tent of variance (2f^2+1)/12 (full-res
   px^2); they sum to exactly f^2/4, so sigma' = sqrt(sigma^2/f^2 - 1/4)
   (low-res px) gives a composite filter whose variance, averaged over the f
   sampling phases, equals sigma^2 (before 3-sigma truncation).

Port notes for Rust (all of these matter for bit-level agreement to ~1e-6):

* Layout NCHW, batch 1, float32 everywhere; accumulate in f32 in the tap
  order used below (tap 0 .. 2r, i.e. left-to-right / top-to-bottom).
* Reflect padding = NumPy ``mode="reflect"`` = ONNX Pad ``mode="reflect"``:
  the edge sample is NOT repeated (index -1 -> 1, index n -> n-2).  Requires
  pad < n, which is why the minimum input size is 128 px (see manifest).
* Each blur pads H and W by r on both sides first, then runs the horizontal
  kernel (valid), then the vertical kernel (valid).  Because reflection along H
  commutes with filtering along W this equals pad-W/filter-W/pad-H/filter-H.
* Kernels: w_k = exp(-k^2 / (2 sigma^2)), k = -r..r, r = ceil(3 sigma),
  computed in float64, divided by their float64 sum, then cast to float32.
  Use the float32 weights stored in the manifest rather than recomputing.
* AveragePool f x f stride f, no padding: sum the f*f samples in row-major
  order (dy outer, dx inner) in f32, then divide by f*f.
* Resize linear half_pixel by integer factor f: for output index x,
  src = (x + 0.5)/f - 0.5, clamped to [0, n-1]; x0 = floor(src),
  x1 = min(x0 + 1, n - 1), t = src - x0; same for y.  Output
  = (1-ty)(1-tx) X[y0,x0] + (1-ty)tx X[y0,x1] + ty(1-tx) X[y1,x0] + ty tx X[y1,x1]
  (this is onnxruntime's UpsampleBilinear; clamping == edge replication).
* Graph-only layout tricks that do not change the numbers (so they are not
  mirrored here): the decomposition is a MatMul on a [3, H*W] view; the two
  full-resolution shading blurs run as one 2-channel depthwise conv on [s, s]
  with the 0.8 px kernel zero-padded to 25 taps (zero taps add exact zeros,
  and reflect padding by 12 instead of 3 leaves the used samples unchanged);
  single-channel pyramid blurs duplicate the low-res plane into a group=2
  depthwise conv and keep channel 0.  These keep onnxruntime's NCHWc layout
  pass from padding 1- and 3-channel convs to 8/16 channels.
* Tiling: the pyramid grid is anchored at the tile origin, so tile origins
  must be multiples of the largest pyramid factor (8; we require 32) in the
  padded-image frame, and each tile needs ``tile_margin_px`` of context on
  every side that is not an image border.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

F32 = np.float32

# ---------------------------------------------------------------------------
# Parameter helpers (also used by build_skin_model.py to create the kernels)
# ---------------------------------------------------------------------------


def gaussian_radius(sigma: float) -> int:
    """Kernel half-width: truncate at 3 sigma (r = ceil(3*sigma))."""
    return int(math.ceil(3.0 * sigma - 1e-9))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised, 3-sigma-truncated sampled Gaussian, returned as float32.

    Computed in float64 (exp, sum, divide) and cast once to float32 so the
    stored weights are reproducible; they sum to 1 within float32 rounding.
    """
    r = gaussian_radius(sigma)
    k = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-(k * k) / (2.0 * sigma * sigma))
    w = w / w.sum()
    return w.astype(F32)


def pyramid_sigma(sigma: float, f: int) -> float:
    """Low-resolution sigma for AveragePool(f) -> blur -> Resize(xf).

    var(box f) + var(half-pixel tent f) = (f^2-1)/12 + (2f^2+1)/12 = f^2/4
    (full-res px^2), i.e. 1/4 in low-res px^2, so sigma'^2 = sigma^2/f^2 - 1/4.
    For f == 1 no pyramid is used and sigma is returned unchanged.
    """
    if f == 1:
        return float(sigma)
    return math.sqrt(sigma * sigma / (f * f) - 0.25)


def load_params(manifest_path: str | Path) -> dict:
    """Read the "graph" section of skin-v1.json (matrix + kernels)."""
    with open(manifest_path, "r", encoding="utf-8") as fh:
        manifest = json.load(fh)
    return manifest["graph"]


# ---------------------------------------------------------------------------
# Elementary operations, one per ONNX op (or per small fixed op group)
# ---------------------------------------------------------------------------


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 EOTF: Where(x <= 0.04045, x/12.92, ((x+0.055)/1.055)^2.4)."""
    x = x.astype(F32)
    lo = x / F32(12.92)
    hi = np.power((x + F32(0.055)) / F32(1.055), F32(2.4))
    return np.where(x <= F32(0.04045), lo, hi).astype(F32)


def optical_density(lin: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip(lin, lo, hi) then Neg(Log(.)) -> natural-log optical density."""
    c = np.clip(lin, F32(lo), F32(hi)).astype(F32)
    return (-np.log(c)).astype(F32)


def decompose(od: np.ndarray, ainv: np.ndarray) -> np.ndarray:
    """out_o = sum_i ainv[o,i] * od_i per pixel (graph: MatMul(ainv, od viewed as [3, H*W])).

    od: [1,3,H,W] -> [1,3,H,W] with channels (melanin, hemoglobin, shading).
    """
    ainv = np.asarray(ainv, dtype=F32)
    out = np.zeros_like(od, dtype=F32)
    for o in range(3):
        acc = np.zeros(od.shape[2:], dtype=F32)
        for i in range(3):
            acc = acc + ainv[o, i] * od[0, i]
        out[0, o] = acc
    return out


def weighted_sum(od: np.ndarray, u: np.ndarray) -> np.ndarray:
    """sum_i u[i] * od_i per pixel: [1,3,H,W] -> [1,1,H,W] (graph: the 4th MatMul row).

    The pore band's shading estimate: inverse-variance weights with unit sum (see
    build_skin_model.pore_weights for why the pore band does not use the Tsumura row).
    """
    u = np.asarray(u, dtype=F32)
    acc = np.zeros(od.shape[2:], dtype=F32)
    for i in range(3):
        acc = acc + u[i] * od[0, i]
    return acc[None, None]


def pad_reflect(x: np.ndarray, r: int) -> np.ndarray:
    """ONNX Pad mode=reflect on H and W (edge sample not repeated)."""
    if r == 0:
        return x
    h, w = x.shape[2], x.shape[3]
    if r >= h or r >= w:
        raise ValueError(f"reflect pad {r} needs spatial size > {r}, got {h}x{w}")
    return np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect").astype(F32)


def conv_w_valid(xp: np.ndarray, kern: np.ndarray) -> np.ndarray:
    """Depthwise Conv with a [1, K] kernel, no padding (cross-correlation)."""
    kern = np.asarray(kern, dtype=F32)
    k = kern.shape[0]
    w_out = xp.shape[3] - k + 1
    acc = np.zeros(xp.shape[:3] + (w_out,), dtype=F32)
    for t in range(k):
        acc = acc + kern[t] * xp[:, :, :, t:t + w_out]
    return acc


def conv_h_valid(xp: np.ndarray, kern: np.ndarray) -> np.ndarray:
    """Depthwise Conv with a [K, 1] kernel, no padding (cross-correlation)."""
    kern = np.asarray(kern, dtype=F32)
    k = kern.shape[0]
    h_out = xp.shape[2] - k + 1
    acc = np.zeros(xp.shape[:2] + (h_out,) + xp.shape[3:], dtype=F32)
    for t in range(k):
        acc = acc + kern[t] * xp[:, :, t:t + h_out, :]
    return acc


def gaussian_blur(x: np.ndarray, kern: np.ndarray) -> np.ndarray:
    """Pad(reflect, r) -> Conv[1,K] -> Conv[K,1]; output has the input's size."""
    r = (len(kern) - 1) // 2
    xp = pad_reflect(x, r)
    return conv_h_valid(conv_w_valid(xp, kern), kern)


def avg_pool(x: np.ndarray, f: int) -> np.ndarray:
    """AveragePool kernel f, stride f, no padding (H, W divisible by f)."""
    n, c, h, w = x.shape
    if h % f or w % f:
        raise ValueError(f"size {h}x{w} not divisible by pool factor {f}")
    acc = np.zeros((n, c, h // f, w // f), dtype=F32)
    for dy in range(f):
        for dx in range(f):
            acc = acc + x[:, :, dy::f, dx::f]
    return (acc / F32(f * f)).astype(F32)


def _linear_taps(n_in: int, f: int):
    """Source indices/weights for half_pixel linear up-sampling by factor f."""
    n_out = n_in * f
    out = np.arange(n_out, dtype=F32)
    src = (out + F32(0.5)) / F32(f) - F32(0.5)
    src = np.clip(src, F32(0.0), F32(n_in - 1))
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    t = (src - i0.astype(F32)).astype(F32)
    return i0, i1, t


def resize_linear_half_pixel(x: np.ndarray, f: int) -> np.ndarray:
    """ONNX Resize(mode=linear, coordinate_transformation_mode=half_pixel,
    scales=[1,1,f,f]) as computed by onnxruntime (bilinear, edge-clamped)."""
    if f == 1:
        return x
    h, w = x.shape[2], x.shape[3]
    y0, y1, ty = _linear_taps(h, f)
    x0, x1, tx = _linear_taps(w, f)
    ty = ty[:, None]
    tx = tx[None, :]
    one = F32(1.0)
    a = x[:, :, y0][:, :, :, x0]
    b = x[:, :, y0][:, :, :, x1]
    c = x[:, :, y1][:, :, :, x0]
    d = x[:, :, y1][:, :, :, x1]
    out = ((one - ty) * (one - tx)) * a + ((one - ty) * tx) * b \
        + (ty * (one - tx)) * c + (ty * tx) * d
    return out.astype(F32)


def smooth(x: np.ndarray, filt: dict) -> np.ndarray:
    """Gaussian of nominal sigma_px: direct (f == 1) or pyramid (f > 1)."""
    f = int(filt["pyramid_factor"])
    kern = np.asarray(filt["weights"], dtype=F32)
    if f == 1:
        return gaussian_blur(x, kern)
    low = avg_pool(x, f)
    low = gaussian_blur(low, kern)
    return resize_linear_half_pixel(low, f)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def run(srgb: np.ndarray, params: dict) -> np.ndarray:
    """srgb [1,3,H,W] float32 in [0,1] -> maps [1,8,H,W] float32.

    Channels: 0 melanin, 1 hemoglobin, 2 shading, 3 pore_response,
    4 scar_response, 5 melanin_excess, 6 hemoglobin_excess, 7 scar_energy.
    """
    srgb = np.asarray(srgb, dtype=F32)
    if srgb.ndim != 4 or srgb.shape[0] != 1 or srgb.shape[1] != 3:
        raise ValueError("expected [1,3,H,W]")
    mult = int(params["size_multiple"])
    if srgb.shape[2] % mult or srgb.shape[3] % mult:
        raise ValueError(f"H and W must be multiples of {mult}")
    filters = params["filters"]
    dec = params["decomposition"]

    lin = srgb_to_linear(srgb)
    od = optical_density(lin, dec["clip_min"], dec["clip_max"])
    mhs = decompose(od, np.asarray(dec["inverse_matrix"], dtype=F32))
    mh = mhs[:, 0:2]                    # melanin, hemoglobin
    s = mhs[:, 2:3]                     # shading
    su = weighted_sum(od, np.asarray(dec["pore_weights"], dtype=F32))   # pore band's u . OD

    s_pore = smooth(su, filters["pore_center"])     # sigma 0.8 px
    su_mid = smooth(su, filters["pore_surround"])   # sigma 4 px
    s_mid = smooth(s, filters["pore_surround"])     # sigma 4 px (scar centre)
    s_wide = smooth(s, filters["scar_surround"])    # sigma 20 px, pyramid f=4
    pore = (s_pore - su_mid).astype(F32)
    scar = (s_mid - s_wide).astype(F32)

    energy = np.sqrt(smooth((scar * scar).astype(F32), filters["scar_energy"])).astype(F32)

    mh_bg = smooth(mh, filters["chromophore_background"])  # sigma 32 px, f=8
    excess = (mh - mh_bg).astype(F32)

    return np.concatenate([mh, s, pore, scar, excess, energy], axis=1).astype(F32)


# ---------------------------------------------------------------------------
# Analysis helpers used by the builder (manifest) and the checker
# ---------------------------------------------------------------------------


def dependency_reach_1d(filt: dict) -> int:
    """Largest |x_out - x_in| with nonzero influence, for one smoothing step.

    Brute force over one sampling period of the pyramid, so it is exact for
    the implemented ops (pool block, kernel radius, 2-tap linear resize).
    """
    f = int(filt["pyramid_factor"])
    r = (len(filt["weights"]) - 1) // 2
    if f == 1:
        return r
    n_low = 4 * (r + 4)
    i0, i1, _ = _linear_taps(n_low, f)
    reach = 0
    for x in range(n_low * f):
        if x < 2 * f * (r + 2) or x >= (n_low - 2 * (r + 2)) * f:
            continue  # stay away from the clamped borders
        for src in (int(i0[x]), int(i1[x])):
            for j in range(src - r, src + r + 1):
                lo, hi = j * f, j * f + f - 1
                reach = max(reach, abs(x - lo), abs(x - hi))
    return reach


def channel_reach(params: dict) -> dict:
    """Per-output-channel dependency radius in full-resolution px."""
    fl = params["filters"]
    rp_c = dependency_reach_1d(fl["pore_center"])
    rp_s = dependency_reach_1d(fl["pore_surround"])
    rs_s = dependency_reach_1d(fl["scar_surround"])
    re_ = dependency_reach_1d(fl["scar_energy"])
    rb = dependency_reach_1d(fl["chromophore_background"])
    scar = max(rp_s, rs_s)
    return {
        "melanin": 0, "hemoglobin": 0, "shading": 0,
        "pore_response": max(rp_c, rp_s),
        "scar_response": scar,
        "melanin_excess": rb, "hemoglobin_excess": rb,
        "scar_energy": scar + re_,
    }
