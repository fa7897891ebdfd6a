#!/usr/bin/env python3
"""Independent phantom generator + evaluator for `dermatrack analyze`.

Written from the physics description in the skin-model issue only (it does not use or read the
tool's own phantom code), as an outside team would, to find where the measurements break.

Rendering (all geometry in millimetres, rendered at a supersampled grid, box-averaged in linear
light to the output grid):

  linear reflectance_c = exp(-(m * EPS_MEL_c + h * EPS_HB_c + BASE_OD_c)) * shading * pore_dark

  * m  melanin optical density (per-tone base m0, mm-scale texture, + macule excess)
  * h  blood optical density (H0 base, mm-scale texture, + erythema excess)
  * shading: Lambertian from the height map (mm), light at azimuth/elevation plus ambient,
    normalised so flat skin = 1, with cast shadows and cavity occlusion of the ambient term
    (see shading()). Scars and pores are depressions in that height map.
  * pore_dark: multiplicative darkening of the pore opening.
  * then nuisances (exposure, white balance, illumination gradient) in linear light, clip,
    sRGB encode, additive Gaussian noise in 8-bit DN, quantise; JPEG optionally (Pillow).

Truth (JSON beside each PNG/JPEG): pore count, pigmented area fraction (pixels where a macule's
melanin excess >= 50% of its own peak, on the output grid), scar count (+ types), ITA of base skin
(computed from the rendered 8-bit blank image, own sRGB->CIELAB D65 code, ITA of the mean colour).

Usage:
  .venv-build/bin/python scripts/independent_phantoms.py --out /tmp/indep/s1 --seed 1
  options: --exe PATH  --tones 0,1,..  --quick  --no-eval  --jobs N  --pil-python PATH
  probes (one feature type swept, clean images): --probe pores|macules|erythema|icepick
  Outputs per image: IMG, IMG.truth.json, IMG.out.json (tool), clean: .overlay.png, .macmask.png;
  per set: layout.json, results.txt (table + overlay attribution), results.json.

Standard library + numpy; Pillow (imported, or via --pil-python interpreter) only for JPEG.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np

# ----------------------------------------------------------------------------------------------
# Optical model constants (own choices)
# ----------------------------------------------------------------------------------------------
# Melanin absorption ~ lambda^-3.33 (eumelanin power law), evaluated at 600/540/460 nm for
# R/G/B and normalised to 460 nm: (460/600)^3.33 = 0.41, (460/540)^3.33 = 0.59, 1.0.
EPS_MEL = np.array([0.41, 0.59, 1.00])
# Oxy-haemoglobin molar extinction at 600/540/460 nm ~ 3200 / 53200 / 44500 cm^-1 M^-1,
# normalised to 540 nm; the blue value is reduced to 0.60 (effective: blue light samples the
# superficial dermis with less blood) so that G > B > R.
EPS_HB = np.array([0.06, 1.00, 0.60])
# Baseline optical density: dermal scattering loss + carotene/bilirubin (blue).
BASE_OD = np.array([0.20, 0.36, 0.62])
H0 = 0.30  # base blood optical density

# Target ITA per tone (very light .. dark); m0 is solved by bisection on flat skin.
TONES = [("very_light", 62.0), ("light", 46.0), ("intermediate", 32.0),
         ("tan", 15.0), ("brown", -12.0), ("dark", -40.0)]

RESOLUTIONS = [5.0, 8.0, 10.0, 15.0, 20.0]

# Texture (the "mild skin texture"): relative std of m and h, correlation length (mm), and a
# very small height micro-relief (mm std, mm correlation length).
TEX_M_REL, TEX_H_REL, TEX_CORR_MM = 0.06, 0.08, 1.0
RELIEF_STD_MM, RELIEF_CORR_MM = 0.004, 0.4

# Lighting: ambient fraction; azimuth/elevation are drawn per seed.
AMBIENT = 0.25
SHADOW_MM = 2.0  # cast-shadow ray length
NOISE_DN = 4.0  # additive Gaussian noise sigma in 8-bit sRGB code values (per channel, iid)


# ----------------------------------------------------------------------------------------------
# Colour: sRGB <-> linear, linear -> CIELAB (D65), ITA
# ----------------------------------------------------------------------------------------------
def srgb_encode(lin):
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1 / 2.4) - 0.055)


def srgb_decode(v):
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4))


M_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                      [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]])
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def lin_to_lab(lin):
    xyz = np.asarray(lin, dtype=np.float64) @ M_RGB2XYZ.T / WHITE_D65
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


def ita_deg(L, b):
    return math.degrees(math.atan2(L - 50.0, b))  # b* > 0 for skin, = atan((L-50)/b)


def ita_of_linear_mean(lin_mean):
    L, a, b = lin_to_lab(np.asarray(lin_mean))
    return ita_deg(float(L), float(b)), (float(L), float(a), float(b))


def solve_m0(target_ita):
    """Bisection on melanin OD so that flat, texture-free skin has the target ITA."""
    lo, hi = 0.0, 8.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lin = np.exp(-(mid * EPS_MEL + H0 * EPS_HB + BASE_OD))
        ita, _ = ita_of_linear_mean(srgb_decode(np.round(srgb_encode(lin) * 255) / 255))
        if ita > target_ita:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------------------------
# Image I/O
# ----------------------------------------------------------------------------------------------
def write_png(path, arr):
    """8-bit RGB (HxWx3) or grey (HxW) PNG, filter 0, zlib."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape[:2]
    ctype = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def read_png(path):
    """Minimal 8-bit RGB/RGBA/grey PNG reader (non-interlaced), to read the tool's overlay."""
    d = open(path, "rb").read()
    i, idat = 8, []
    while i < len(d):
        n, = struct.unpack(">I", d[i:i + 4]); tag = d[i + 4:i + 8]; c = d[i + 8:i + 8 + n]
        i += 12 + n
        if tag == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack(">IIBBBBB", c)
            assert depth == 8 and inter == 0, "only 8-bit non-interlaced PNG"
        elif tag == b"IDAT":
            idat.append(c)
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif f == 2:
            line = bytearray(((np.frombuffer(line, np.uint8).astype(np.int32)
                               + np.frombuffer(prev, np.uint8)) & 255).astype(np.uint8).tobytes())
        elif f == 3:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((a + prev[x]) >> 1)) & 255
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                line[x] = (line[x] + pr) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    a = np.frombuffer(bytes(out), np.uint8).reshape(h, w, bpp)
    return a[..., :3] if bpp >= 3 else np.repeat(a[..., :1], 3, axis=2)


def label(mask):
    """4-connected component labels of a (sparse) boolean mask; returns (labels, n)."""
    lab = np.zeros(mask.shape, np.int32)
    n = 0
    ys, xs = np.nonzero(mask)
    H, W = mask.shape
    for y0, x0 in zip(ys.tolist(), xs.tolist()):
        if lab[y0, x0]:
            continue
        n += 1
        stack = [(y0, x0)]
        lab[y0, x0] = n
        while stack:
            y, x = stack.pop()
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and not lab[yy, xx]:
                    lab[yy, xx] = n
                    stack.append((yy, xx))
    return lab, n


def jpeg_encoder(pil_python):
    """Return f(png_path, jpg_path, quality) or None. Pillow default subsampling (4:2:0)."""
    try:
        from PIL import Image  # noqa: F401

        def enc(src, dst, q):
            from PIL import Image
            Image.open(src).convert("RGB").save(dst, "JPEG", quality=int(q))
        return enc
    except ImportError:
        pass
    if pil_python and os.path.exists(pil_python):
        code = ("import sys;from PIL import Image;"
                "Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2],'JPEG',quality=int(sys.argv[3]))")
        if subprocess.run([pil_python, "-c", "import PIL"], capture_output=True).returncode == 0:
            def enc(src, dst, q):
                subprocess.run([pil_python, "-c", code, src, dst, str(q)], check=True)
            return enc
    return None


# ----------------------------------------------------------------------------------------------
# Random fields and resampling
# ----------------------------------------------------------------------------------------------
def smooth_noise(rng, shape, sigma_px):
    """Unit-std Gaussian random field with Gaussian correlation (FFT filtering, periodic)."""
    n = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    g = np.exp(-2 * (math.pi ** 2) * (sigma_px ** 2) * (fx ** 2 + fy ** 2))
    out = np.fft.irfft2(np.fft.rfft2(n) * g, s=shape)
    return out / (out.std() + 1e-12)


def box_down(a, k):
    if k == 1:
        return a
    h, w = a.shape[0] // k, a.shape[1] // k
    a = a[: h * k, : w * k]
    return a.reshape(h, k, w, k, *a.shape[2:]).mean(axis=(1, 3))


def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def smoothstep(t):
    t = np.clip(t, 0, 1)
    return t * t * (3 - 2 * t)


# ----------------------------------------------------------------------------------------------
# Layout: features in mm, placed with minimum spacing, >= 3 mm from the border
# ----------------------------------------------------------------------------------------------
def make_layout(rng, size_mm):
    placed = []  # (x, y, extent radius) of macro features for spacing
    margin, gap = 3.0, 1.5

    def place(radius, extra_gap=gap, tries=4000):
        for _ in range(tries):
            x = rng.uniform(margin + radius, size_mm - margin - radius)
            y = rng.uniform(margin + radius, size_mm - margin - radius)
            if all(math.hypot(x - px, y - py) >= radius + pr + extra_gap for px, py, pr in placed):
                placed.append((x, y, radius))
                return x, y
        return None

    lay = {"size_mm": size_mm, "macules": [], "scars": [], "erythema": [], "pores": []}
    # scars first (4-8), then macules (3-6) then erythema (1-3): all non-overlapping.
    n_scar = int(rng.integers(4, 9))
    kinds = ["icepick", "boxcar", "rolling"]
    for i in range(n_scar):
        kind = kinds[i % 3] if i < 3 else kinds[int(rng.integers(0, 3))]
        if kind == "icepick":
            diam, depth = rng.uniform(0.3, 1.0), rng.uniform(0.4, 1.0)
        elif kind == "boxcar":
            diam, depth = rng.uniform(1.5, 4.0), rng.uniform(0.15, 0.40)
        else:
            diam, depth = rng.uniform(2.0, 5.0), rng.uniform(0.15, 0.35)
        pos = place(diam / 2 * 1.15)
        if pos:
            lay["scars"].append({"kind": kind, "x": pos[0], "y": pos[1], "diam": diam,
                                 "depth": depth, "aspect": rng.uniform(0.8, 1.0),
                                 "angle": rng.uniform(0, math.pi)})
    for _ in range(int(rng.integers(3, 7))):
        diam = rng.uniform(1.5, 8.0)
        pos = place(diam / 2 * 1.25)
        if pos:
            lay["macules"].append({"x": pos[0], "y": pos[1], "diam": diam,
                                   "k": rng.uniform(0.4, 1.0),  # excess = k + 0.3*m0 (OD)
                                   "harm": [(rng.uniform(0, 0.10), rng.uniform(0, 6.3)),
                                            (rng.uniform(0, 0.06), rng.uniform(0, 6.3))]})
    for _ in range(int(rng.integers(1, 4))):
        diam = rng.uniform(6.0, 12.0)
        pos = place(diam / 2 * 0.9, extra_gap=0.5)
        if pos:
            lay["erythema"].append({"x": pos[0], "y": pos[1], "diam": diam,
                                    "dh": rng.uniform(0.3, 0.7), "aspect": rng.uniform(0.6, 1.0),
                                    "angle": rng.uniform(0, math.pi)})
    # pores: 30-120 per 50x50 mm; min 0.8 mm apart; >= 1 mm from scars/macules; may sit in
    # erythema (diffuse redness does not hide them).
    n_pore = int(round(rng.uniform(30, 120) * (size_mm / 50.0) ** 2))
    blockers = [(s["x"], s["y"], s["diam"] / 2 * 1.15) for s in lay["scars"]] + \
               [(m["x"], m["y"], m["diam"] / 2 * 1.25) for m in lay["macules"]]
    pores = []
    tries = 0
    while len(pores) < n_pore and tries < 200000:
        tries += 1
        d = rng.uniform(0.12, 0.45)
        x, y = rng.uniform(margin, size_mm - margin, size=2)
        if any(math.hypot(x - bx, y - by) < br + 1.0 for bx, by, br in blockers):
            continue
        if any(math.hypot(x - p["x"], y - p["y"]) < 0.8 for p in pores):
            continue
        pores.append({"x": x, "y": y, "diam": d, "dark": rng.uniform(0.30, 0.55)})
    lay["pores"] = pores
    return lay


# ----------------------------------------------------------------------------------------------
# Renderer
# ----------------------------------------------------------------------------------------------
def supersample_for(ppmm):
    return max(2, int(math.ceil(40.0 / ppmm)))  # >= 40 samples per mm before box-averaging


def local_grid(cx, cy, rad, dx, shape):
    """Index window and coordinates (mm, relative to centre) of a feature's bounding box."""
    i0 = max(0, int((cy - rad) / dx)); i1 = min(shape[0], int((cy + rad) / dx) + 2)
    j0 = max(0, int((cx - rad) / dx)); j1 = min(shape[1], int((cx + rad) / dx) + 2)
    yy = (np.arange(i0, i1) + 0.5) * dx - cy
    xx = (np.arange(j0, j1) + 0.5) * dx - cx
    return (slice(i0, i1), slice(j0, j1)), xx[None, :], yy[:, None]


def shading(H, dx, light):
    """Lambertian shading of the height field H (mm) with a directional light + ambient term,
    normalised so flat skin = 1. Image axes: x right, y down, z out of the skin.
    Two physical additions to plain Lambert so that deep narrow pits read as pits:
      * cast shadows: a pixel gets no direct light if the surface toward the light rises above
        the ray (ray-marched up to SHADOW_MM along the light's azimuth);
      * cavity occlusion of the ambient term: openness = 1 / (1 + max(0, Hblur - H) / 0.3 mm),
        Hblur = H Gaussian-blurred with sigma 0.5 mm."""
    gy, gx = np.gradient(H, dx)
    az, el = math.radians(light["az_deg"]), math.radians(light["el_deg"])
    L = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    ndotl = (-gx * L[0] - gy * L[1] + L[2]) / np.sqrt(gx * gx + gy * gy + 1)
    del gx, gy
    # cast shadows
    n = H.shape[0]
    steps = int(SHADOW_MM / dx)
    pad = steps + 1
    Hp = np.pad(H, pad, mode="edge")
    horizon = np.full(H.shape, -np.inf)
    tan_el = math.tan(el)
    for k in range(1, steps + 1):
        oy, ox = int(round(k * L[1] / math.cos(el))), int(round(k * L[0] / math.cos(el)))
        sh = Hp[pad + oy: pad + oy + n, pad + ox: pad + ox + H.shape[1]]
        np.maximum(horizon, sh - k * dx * tan_el, out=horizon)
    lit = (horizon <= H + 1e-4).astype(np.float64)
    del horizon, Hp
    # cavity occlusion of the ambient light
    fy = np.fft.fftfreq(H.shape[0])[:, None]
    fx = np.fft.rfftfreq(H.shape[1])[None, :]
    sig = 0.5 / dx
    Hb = np.fft.irfft2(np.fft.rfft2(H) * np.exp(-2 * math.pi ** 2 * sig ** 2 * (fx ** 2 + fy ** 2)), s=H.shape)
    openness = 1.0 / (1.0 + np.clip(Hb - H, 0, None) / 0.3)
    return ((AMBIENT * openness + (1 - AMBIENT) * np.clip(ndotl, 0, None) * lit)
            / (AMBIENT + (1 - AMBIENT) * L[2]))


def render(lay, m0, ppmm, seed, light, features=True):
    """Returns linear reflectance (output grid, HxWx3) and macule-union mask (output grid)."""
    ss = supersample_for(ppmm)
    n_out = int(round(lay["size_mm"] * ppmm))
    n = n_out * ss
    dx = 1.0 / (ppmm * ss)  # mm per supersample
    shape = (n, n)
    trng = np.random.default_rng([seed, int(ppmm * 10), 7])  # texture: same for all conditions
    M = m0 * (1 + TEX_M_REL * smooth_noise(trng, shape, TEX_CORR_MM / dx))
    Bl = H0 * (1 + TEX_H_REL * smooth_noise(trng, shape, TEX_CORR_MM / dx))
    H = RELIEF_STD_MM * smooth_noise(trng, shape, RELIEF_CORR_MM / dx)
    D = np.ones(shape)
    mac_mask = np.zeros(shape, dtype=bool)

    if features:
        for mc in lay["macules"]:
            R0 = mc["diam"] / 2
            dm = mc["k"] + 0.3 * m0
            s = max(0.08, 0.12 * R0)  # edge softness (mm)
            win, xx, yy = local_grid(mc["x"], mc["y"], R0 * 1.3 + 6 * s, dx, shape)
            r = np.hypot(xx, yy); th = np.arctan2(yy, xx)
            R = R0 * (1 + sum(a * np.cos((k + 2) * th + ph) for k, (a, ph) in enumerate(mc["harm"])))
            ex = dm * sigmoid((R - r) / s)
            M[win] += ex
            mac_mask[win] |= ex >= 0.5 * ex.max()
        for er in lay["erythema"]:
            sig = er["diam"] / 3
            win, xx, yy = local_grid(er["x"], er["y"], 4 * sig, dx, shape)
            c, s_ = math.cos(er["angle"]), math.sin(er["angle"])
            u, v = xx * c + yy * s_, (-xx * s_ + yy * c) / er["aspect"]
            Bl[win] += er["dh"] * np.exp(-(u * u + v * v) / (2 * sig * sig))
        for sc in lay["scars"]:
            R = sc["diam"] / 2
            win, xx, yy = local_grid(sc["x"], sc["y"], R * 1.3 + 0.3, dx, shape)
            c, s_ = math.cos(sc["angle"]), math.sin(sc["angle"])
            u, v = xx * c + yy * s_, (-xx * s_ + yy * c) / sc["aspect"]
            if sc["kind"] == "icepick":   # funnel: -d cos^2(pi r / 2R), r < R
                r = np.hypot(xx, yy)
                prof = np.where(r < R, np.cos(np.pi * r / (2 * R)) ** 2, 0.0)
            elif sc["kind"] == "boxcar":  # flat floor, steep 0.15 mm walls, rounded-square rim
                r4 = (np.abs(u) ** 4 + np.abs(v) ** 4) ** 0.25
                prof = smoothstep((R - r4) / 0.15)
            else:                         # rolling: raised-cosine bowl, shallow and smooth
                r = np.hypot(u, v)
                prof = np.where(r < R, 0.5 * (1 + np.cos(np.pi * r / R)), 0.0)
            H[win] -= sc["depth"] * prof
        for p in lay["pores"]:
            R = p["diam"] / 2
            win, xx, yy = local_grid(p["x"], p["y"], R * 1.6 + 2 * dx, dx, shape)
            r = np.hypot(xx, yy)
            disk = sigmoid((R - r) / max(0.1 * R, 0.3 * dx))
            D[win] *= 1 - p["dark"] * disk                       # dark opening
            H[win] -= p.get("depth", 0.25 * p["diam"]) * np.clip(1 - (r / R) ** 2, 0, 1)  # bowl

    shade = shading(H, dx, light)
    del H

    lin = np.empty(shape + (3,))
    for c in range(3):
        lin[..., c] = np.exp(-(M * EPS_MEL[c] + Bl * EPS_HB[c] + BASE_OD[c])) * shade * D
    lin_out = box_down(lin, ss)
    mask_out = box_down(mac_mask.astype(np.float64), ss) >= 0.5  # pixel counted if >= half inside
    return lin_out, mask_out


def apply_nuisance(lin, nz, rng):
    """Exposure, WB gains, illumination gradient (linear), clip, sRGB, noise (DN), quantise."""
    out = lin * nz.get("exposure", 1.0) * np.array(nz.get("wb", [1, 1, 1]))
    if "gradient" in nz:
        g = nz["gradient"]
        h, w = lin.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        t = ((xx / (w - 1) - 0.5) * math.cos(g["dir"]) + (yy / (h - 1) - 0.5) * math.sin(g["dir"]))
        t = t / (0.5 * (abs(math.cos(g["dir"])) + abs(math.sin(g["dir"]))))  # -1..1 corner to corner
        out = out * (1 + g["amp"] * t)[..., None]
    v = srgb_encode(out) * 255.0
    if nz.get("noise_dn", 0) > 0:
        v = v + rng.normal(0, nz["noise_dn"], v.shape)
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Experiment plan
# ----------------------------------------------------------------------------------------------
def conditions(seed):
    r = np.random.default_rng([seed, 99])
    warm = r.random() < 0.5
    k = r.uniform(0.10, 0.15)
    wb = [1 + k, 1.0, 1 - k] if warm else [1 - k, 1.0, 1 + k]
    return {
        "clean": {},
        "exp0.7": {"exposure": 0.7},
        "exp1.3": {"exposure": 1.3},
        "wb": {"wb": [round(x, 3) for x in wb]},
        "grad": {"gradient": {"amp": 0.25, "dir": float(r.uniform(0, 2 * math.pi))}},
        "noise": {"noise_dn": NOISE_DN},
        "jpeg": {"jpeg_q": int(r.integers(75, 96))},
        "combo": {"exposure": float(round(r.uniform(0.85, 1.15), 3)),
                  "wb": [round(1 + k / 2, 3), 1.0, round(1 - k / 2, 3)],
                  "gradient": {"amp": 0.15, "dir": float(r.uniform(0, 2 * math.pi))},
                  "noise_dn": 3.0, "jpeg_q": 85},
    }


ITA_JUDGED = {"blank", "clean", "grad", "noise", "jpeg"}  # exposure / WB untouched


def plan(seed, tone_ids, quick):
    """(tone, condition, ppmm). Clean at every resolution; each nuisance at one resolution that
    rotates with tone and seed (its clean twin exists at that resolution); one blank per tone."""
    conds = list(conditions(seed).keys())
    jobs = []
    for ti in tone_ids:
        res_clean = RESOLUTIONS if not quick else [RESOLUTIONS[(ti + seed) % 5]]
        for ppmm in res_clean:
            jobs.append((ti, "clean", ppmm))
        jobs.append((ti, "blank", RESOLUTIONS[(ti + 2 * seed) % 5]))
        for k, c in enumerate(conds[1:]):
            rr = RESOLUTIONS[(ti + k + seed) % 5] if not quick else res_clean[0]
            jobs.append((ti, c, rr))
    return jobs


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------
def generate(args):
    rng = np.random.default_rng(args.seed)
    size_mm = float(rng.uniform(42, 50))
    lay = make_layout(rng, size_mm)
    light = {"az_deg": float(rng.uniform(200, 250)), "el_deg": float(rng.uniform(35, 50))}
    conds = conditions(args.seed)
    tone_ids = [int(t) for t in args.tones.split(",")] if args.tones else list(range(len(TONES)))
    jobs = plan(args.seed, tone_ids, args.quick)
    enc = jpeg_encoder(args.pil_python)
    if enc is None:
        print("NOTE: Pillow not available -> JPEG conditions skipped", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "layout.json"), "w") as f:
        json.dump({"seed": args.seed, "light": light, "conditions": conds, "layout": lay}, f, indent=1)

    cache = {}  # (tone, ppmm, features) -> (lin, mask)
    items = []
    ita_cache = {}
    for ti, cond, ppmm in sorted(jobs, key=lambda j: (j[0], j[2])):
        tname, tita = TONES[ti]
        m0 = solve_m0(tita)
        nz = {} if cond == "blank" else conds[cond]
        if "jpeg_q" in nz and enc is None:
            continue
        feats = cond != "blank"
        key = (ti, ppmm, feats)
        if key not in cache:
            cache.clear() if len(cache) > 3 else None
            cache[key] = render(lay, m0, ppmm, args.seed, light, features=feats)
        lin, mask = cache[key]
        # truth ITA: ITA of the mean colour of the rendered 8-bit blank (texture only) image
        if (ti, ppmm) not in ita_cache:
            blank_lin = cache[key][0] if not feats else render(lay, m0, ppmm, args.seed, light, False)[0]
            u8 = apply_nuisance(blank_lin, {}, None)
            ita_cache[(ti, ppmm)] = ita_of_linear_mean(srgb_decode(u8 / 255.0).reshape(-1, 3).mean(0))
        ita_true, lab_true = ita_cache[(ti, ppmm)]
        nrng = np.random.default_rng([args.seed, ti, int(ppmm * 10), len(cond)])
        img = apply_nuisance(lin, nz, nrng)
        stem = f"s{args.seed}_{tname}_{cond}_{ppmm:g}ppmm"
        png = os.path.join(args.out, stem + ".png")
        write_png(png, img)
        path = png
        if "jpeg_q" in nz:
            path = os.path.join(args.out, stem + ".jpg")
            enc(png, path, nz["jpeg_q"])
            os.remove(png)
        # per-macule contrast on the clean render (for diagnosis): mean L* in mask vs ring
        truth = {
            "image": os.path.basename(path), "seed": args.seed, "tone": tname, "condition": cond,
            "px_per_mm": ppmm, "size_mm": round(size_mm, 3), "shape": list(img.shape[:2]),
            "m0": round(m0, 4), "nuisance": nz, "light": light,
            "pores_count": 0 if not feats else len(lay["pores"]),
            "pores_resolvable": 0 if not feats else sum(p["diam"] * ppmm >= 1.5 for p in lay["pores"]),
            "pigmented_area_fraction": 0.0 if not feats else float(mask.mean()),
            "macule_count": 0 if not feats else len(lay["macules"]),
            "scar_count": 0 if not feats else len(lay["scars"]),
            "scar_kinds": [] if not feats else [s["kind"] for s in lay["scars"]],
            "erythema_count": 0 if not feats else len(lay["erythema"]),
            "ita_deg": round(ita_true, 3), "lab_base": [round(x, 2) for x in lab_true],
            "ita_judged": cond in ITA_JUDGED,
        }
        with open(os.path.splitext(path)[0] + ".truth.json", "w") as f:
            json.dump(truth, f, indent=1)
        if feats and cond == "clean":
            write_png(os.path.splitext(path)[0] + ".macmask.png", mask.astype(np.uint8) * 255)
        items.append((path, truth))
    return items, lay


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def run_tool(exe, path, ppmm, threads, overlay=None):
    out = os.path.splitext(path)[0] + ".out.json"
    t0 = time.time()
    cmd = [exe, "analyze", path, "--px-per-mm", str(ppmm), "--regions", "whole",
           "-o", out, "--threads", str(threads)]
    if overlay:
        cmd += ["--overlay", overlay]
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t0
    if p.returncode != 0 or not os.path.exists(out):
        return None, (p.stderr.strip().splitlines() or ["rc=%d" % p.returncode])[-1], dt
    with open(out) as f:
        doc = json.load(f)
    m = doc["regions"][0]["metrics"]
    return {"pores": m["pores"]["count"], "pig": m["hyperpigmentation"]["area_fraction"],
            "scars": m["scarring"]["count"], "ita": m["tone"]["ita_deg"],
            "red": m["redness"]["area_fraction"]}, None, dt


def diagnose(img_path, ov_path, lay, ppmm):
    """Attribute what the tool drew on its overlay (pores cyan, pigment magenta, scars orange)
    to the truth features. Overlay pixels = alpha blend of a class colour over the photo, so a
    pixel is 'marked' where it differs from the photo, and its class is read from its hue."""
    a = read_png(ov_path).astype(np.int32)
    b = read_png(img_path).astype(np.int32)
    R, G, B = a[..., 0], a[..., 1], a[..., 2]
    diff = np.abs(a - b).sum(2) > 30
    cyan = diff & (B > R) & (G > R)
    orange = diff & (R > G) & (G > B) & (G < 0.82 * R)
    h, w = diff.shape

    def near(mask, x, y, rad_px):
        rad_px = max(rad_px, 1.5)
        i0, i1 = max(0, int(y - rad_px)), min(h, int(y + rad_px) + 2)
        j0, j1 = max(0, int(x - rad_px)), min(w, int(x + rad_px) + 2)
        yy, xx = np.mgrid[i0:i1, j0:j1]
        return bool((mask[i0:i1, j0:j1] & ((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= rad_px ** 2)).any())

    P = [(q["x"] * ppmm, q["y"] * ppmm, q["diam"] / 2 * ppmm, q) for q in lay["pores"]]
    S = [(q["x"] * ppmm, q["y"] * ppmm, q["diam"] / 2 * ppmm, q) for q in lay["scars"]]
    Mc = [(q["x"] * ppmm, q["y"] * ppmm, q["diam"] / 2 * ppmm, q) for q in lay["macules"]]
    E = [(q["x"] * ppmm, q["y"] * ppmm, q["diam"] / 3 * ppmm, q) for q in lay["erythema"]]
    d = {"pore_as_pore": 0, "pore_as_scar": 0, "pore_missed": 0, "pore_as_scar_diams": [],
         "pore_missed_diams": [], "scar_hit": {}, "scar_as_pore": 0,
         "macule_as_scar": sum(near(orange, x, y, r / 2) for x, y, r, _ in Mc),
         "erythema_as_scar": sum(near(orange, x, y, r / 2) for x, y, r, _ in E)}
    for x, y, r, q in P:
        isp, iss = near(cyan, x, y, r + 1.5), near(orange, x, y, r + 0.5)
        d["pore_as_pore"] += isp
        d["pore_as_scar"] += iss
        if iss:
            d["pore_as_scar_diams"].append(round(q["diam"], 2))
        if not (isp or iss):
            d["pore_missed"] += 1
            d["pore_missed_diams"].append(round(q["diam"], 2))
    for x, y, r, q in S:
        k = q["kind"]
        hit = near(orange, x, y, max(r, 1.0))
        d["scar_hit"].setdefault(k, [0, 0])
        d["scar_hit"][k][0] += hit
        d["scar_hit"][k][1] += 1
        d["scar_as_pore"] += near(cyan, x, y, r)
    # orange components: split truth scars and false scars by where they sit
    lab, n = label(orange)
    src = {"split": 0, "on_pore": 0, "on_erythema": 0, "on_macule": 0, "on_skin": 0}
    seen_scar = set()
    for c in range(1, n + 1):
        ys, xs = np.nonzero(lab == c)
        if len(ys) < 4:
            continue
        cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
        hit = [i for i, (x, y, r, _) in enumerate(S) if math.hypot(cx - x, cy - y) <= r + 1.0 * ppmm]
        if hit:
            if hit[0] in seen_scar:
                src["split"] += 1
            seen_scar.add(hit[0])
            continue

        def inside(F, pad):
            return any(math.hypot(cx - x, cy - y) <= r + pad for x, y, r, _ in F)
        if inside(P, 0.5 * ppmm):
            src["on_pore"] += 1
        elif inside(E, 0.5 * ppmm):
            src["on_erythema"] += 1
        elif inside(Mc, 0.5 * ppmm):
            src["on_macule"] += 1
        else:
            src["on_skin"] += 1
    d["scar_components"] = src
    # macules: contrast dL* (photo, core r<0.5R vs ring 1.5R..2R) and fraction marked magenta
    magenta = diff & (R > G) & (B > G)
    d["drawn_pigment_frac"] = round(float(magenta.mean()), 4)  # vs reported area_fraction
    Lstar = lin_to_lab(srgb_decode(b / 255.0))[..., 0]
    yy, xx = np.mgrid[0:h, 0:w]
    d["macules"] = []
    for x, y, r, q in Mc:
        rr = np.hypot(xx + 0.5 - x, yy + 0.5 - y)
        core, ring, disk = rr < 0.5 * r, (rr > 1.5 * r) & (rr < 2 * r), rr < 0.9 * r
        d["macules"].append({"diam": round(q["diam"], 2),
                             "dL": round(float(Lstar[core].mean() - Lstar[ring].mean()), 1),
                             "marked": round(float(magenta[disk].mean()), 2)})
    # cyan components not at a truth pore: false pores, by where they sit
    lab, n = label(cyan)
    fp = {"on_scar": 0, "on_macule": 0, "on_erythema": 0, "on_skin": 0}
    for c in range(1, n + 1):
        ys, xs = np.nonzero(lab == c)
        cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
        if any(math.hypot(cx - x, cy - y) <= r + 2.0 for x, y, r, _ in P):
            continue
        if any(math.hypot(cx - x, cy - y) <= r + 0.5 * ppmm for x, y, r, _ in S):
            fp["on_scar"] += 1
        elif any(math.hypot(cx - x, cy - y) <= r + 0.5 * ppmm for x, y, r, _ in Mc):
            fp["on_macule"] += 1
        elif any(math.hypot(cx - x, cy - y) <= r for x, y, r, _ in E):
            fp["on_erythema"] += 1
        else:
            fp["on_skin"] += 1
    d["false_pores"] = fp
    return d


def judge(t, r):
    """Failure flags per the issue's tolerances. Scar counts of 4-6 are within 15% only when
    exact, so "S" allows one scar either way; "s" flags a count within one scar but over 15%,
    which a judge holding to the 15% alone would fail."""
    fl = []
    if t["condition"] == "blank":
        if r["pores"] > 2: fl.append("P")
        if r["pig"] > 0.005: fl.append("H")
        if r["scars"] > 0: fl.append("S")
    else:
        tp = t["pores_count"]
        if abs(r["pores"] - tp) > 0.10 * tp: fl.append("P")
        if abs(r["pig"] - t["pigmented_area_fraction"]) > 0.02: fl.append("H")
        scar_err = abs(r["scars"] - t["scar_count"])
        if scar_err > max(1.0, 0.15 * t["scar_count"]) + 1e-9: fl.append("S")
        elif scar_err > 0.15 * t["scar_count"] + 1e-9: fl.append("s")
    if t["ita_judged"] and r["ita"] is not None and abs(r["ita"] - t["ita_deg"]) > 3: fl.append("I")
    return fl


def evaluate(args, items, lay):
    rows = []

    def one(p, t):
        ov = os.path.splitext(p)[0] + ".overlay.png" if t["condition"] == "clean" else None
        r, err, dt = run_tool(args.exe, p, t["px_per_mm"], max(1, 2 // args.jobs), ov)
        if r is not None and ov and os.path.exists(ov):
            r["diag"] = diagnose(p, ov, lay, t["px_per_mm"])
        return r, err, dt

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        futs = {ex.submit(one, p, t): (p, t) for p, t in items}
        for fu in concurrent.futures.as_completed(futs):
            p, t = futs[fu]
            r, err, dt = fu.result()
            rows.append((t, r, err, dt))
    order = {n: i for i, (n, _) in enumerate(TONES)}
    corder = {c: i for i, c in enumerate(["blank", "clean", "exp0.7", "exp1.3", "wb", "grad",
                                          "noise", "jpeg", "combo"])}
    rows.sort(key=lambda x: (order[x[0]["tone"]], corder[x[0]["condition"]], x[0]["px_per_mm"]))
    hdr = (f"{'tone':12s} {'cond':7s} {'ppmm':>4s} | {'pores f/t(res)':>15s} | {'pig% f/t':>11s} |"
           f" {'scar f/t':>8s} | {'ITA f/t':>12s} | fail")
    lines = [hdr, "-" * len(hdr)]
    nfail = {"P": 0, "H": 0, "S": 0, "s": 0, "I": 0}
    for t, r, err, dt in rows:
        pre = f"{t['tone']:12s} {t['condition']:7s} {t['px_per_mm']:4g} | "
        if r is None:
            lines.append(pre + f"ERROR: {err}")
            continue
        fl = judge(t, r)
        for f in fl:
            nfail[f] += 1
        ita_s = f"{r['ita']:6.1f}/{t['ita_deg']:5.1f}" if r["ita"] is not None else "  None"
        lines.append(pre + f"{r['pores']:4d}/{t['pores_count']:3d}({t['pores_resolvable']:3d}) | "
                     f"{100 * r['pig']:5.2f}/{100 * t['pigmented_area_fraction']:5.2f} | "
                     f"{r['scars']:3d}/{t['scar_count']:3d} | {ita_s}{'' if t['ita_judged'] else '*'} | "
                     f"{''.join(fl)}")
    # diagnosis of the clean images (from the tool's overlay)
    lines.append("")
    lines.append("overlay attribution (clean): pores as pore/as scar/missed | scars hit by kind | "
                 "extra scar blobs (split/on pore/erythema/macule/skin) | false pores (scar/macule/ery/skin)")
    for t, r, err, dt in rows:
        if r is None or "diag" not in r:
            continue
        g = r["diag"]
        sh = " ".join(f"{k[0]}{v[0]}/{v[1]}" for k, v in sorted(g["scar_hit"].items()))
        sc, fp = g["scar_components"], g["false_pores"]
        lines.append(f"{t['tone']:12s} {t['px_per_mm']:4g} | {g['pore_as_pore']:3d}/{g['pore_as_scar']:2d}/"
                     f"{g['pore_missed']:2d} | {sh} | {sc['split']}/{sc['on_pore']}/{sc['on_erythema']}/"
                     f"{sc['on_macule']}/{sc['on_skin']} | {fp['on_scar']}/{fp['on_macule']}/"
                     f"{fp['on_erythema']}/{fp['on_skin']} | scar-pores d={g['pore_as_scar_diams']}"
                     f" missed d={g['pore_missed_diams']} | drawn pig {100 * g['drawn_pigment_frac']:.2f}%"
                     f" | macule d/dL*/marked: " +
                     " ".join(f"{m['diam']:.1f}/{m['dL']:.0f}/{m['marked']:.2f}" for m in g["macules"]))
    pig_err = [100 * (r["pig"] - t["pigmented_area_fraction"]) for t, r, err, dt in rows
               if r is not None and t["condition"] != "blank"]
    if pig_err:
        lines.append(f"pigment area error over {len(pig_err)} non-blank images (points): mean "
                     f"{sum(pig_err) / len(pig_err):+.3f}, mean absolute "
                     f"{sum(map(abs, pig_err)) / len(pig_err):.3f}, over 1 point on "
                     f"{sum(abs(e) > 1 for e in pig_err)}")
    lines.append(f"fail counts over {len(rows)} images: pores {nfail['P']}, pigment {nfail['H']}, "
                 f"scars {nfail['S']} (and {nfail['s']} more within one scar but over 15%), "
                 f"ITA {nfail['I']}  (* = ITA not judged)")
    txt = "\n".join(lines)
    print(txt)
    with open(os.path.join(args.out, "results.txt"), "w") as f:
        f.write(txt + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump([{"truth": t, "result": r, "error": err, "seconds": round(dt, 2)}
                   for t, r, err, dt in rows], f, indent=1)


# ----------------------------------------------------------------------------------------------
# Probes: single-feature-type layouts swept over one parameter (clean images only)
# ----------------------------------------------------------------------------------------------
def probe_layouts(kind, rng, size_mm=40.0):
    """Yields (label, layout). pores: 40 pores of one diameter; macules: 4 macules of one diameter
    (contrast k=0.7); erythema: 2 patches of one diameter (10-30 mm) and blood excess (0.3, 0.6),
    redness area against the patches' half-maximum area; icepick: 6 icepicks of one width."""
    base = {"size_mm": size_mm, "macules": [], "scars": [], "erythema": [], "pores": []}

    def grid(n, pitch):
        m = int(math.ceil(math.sqrt(n)))
        off = (size_mm - (m - 1) * pitch) / 2
        return [(off + (i % m) * pitch + rng.uniform(-0.3, 0.3), off + (i // m) * pitch + rng.uniform(-0.3, 0.3))
                for i in range(n)]
    if kind == "pores":
        for dp in [0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]:
            lay = json.loads(json.dumps(base))
            lay["pores"] = [{"x": x, "y": y, "diam": dp, "dark": 0.45} for x, y in grid(40, 5.0)]
            yield f"d={dp}mm", lay
    elif kind == "macules":
        # up to melasma-sized patches (12-20 mm); the frame grows so that they cover at most
        # an eighth of it
        for dm in [1.5, 2.5, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0]:
            pitch = max(16.0, 2.5 * dm)
            size = max(size_mm, 2 * pitch)
            lay = json.loads(json.dumps(base))
            lay["size_mm"] = size
            off = (size - pitch) / 2
            lay["macules"] = [{"x": off + (i % 2) * pitch + rng.uniform(-0.3, 0.3),
                               "y": off + (i // 2) * pitch + rng.uniform(-0.3, 0.3),
                               "diam": dm, "k": 0.7, "harm": [(0.05, 0.0), (0.03, 1.0)]}
                              for i in range(4)]
            yield f"d={dm}mm", lay
    elif kind == "erythema":
        # 10-30-mm diffuse patches (a Gaussian of sigma diam/3); the frame grows with them
        for de in [10.0, 16.0, 20.0, 30.0]:
            for dh in [0.3, 0.6]:
                size = max(size_mm, 4 * de)
                lay = json.loads(json.dumps(base))
                lay["size_mm"] = size
                lay["erythema"] = [{"x": fx * size, "y": fy * size, "diam": de, "dh": dh,
                                    "aspect": 0.8, "angle": 0.5} for fx, fy in [(0.3, 0.35), (0.7, 0.65)]]
                yield f"d={de:g}mm,dh={dh}", lay
    elif kind == "icepick":
        for w in [0.3, 0.5, 0.7, 1.0]:
            lay = json.loads(json.dumps(base))
            lay["scars"] = [{"kind": "icepick", "x": x, "y": y, "diam": w, "depth": 0.7, "aspect": 1.0,
                             "angle": 0.0} for x, y in grid(6, 12.0)]
            yield f"w={w}mm", lay


def run_probe(args):
    rng = np.random.default_rng(args.seed)
    light = {"az_deg": 225.0, "el_deg": 45.0}
    tone_ids = [int(t) for t in args.tones.split(",")] if args.tones else [0, 2, 5]
    res = [float(r) for r in args.probe_res.split(",")]
    os.makedirs(args.out, exist_ok=True)
    lines = [f"probe {args.probe}: tone ppmm param | pores f/t | pig% f/t | scars f/t"]
    for lab_, lay in probe_layouts(args.probe, rng):
        for ti in tone_ids:
            tname, tita = TONES[ti]
            m0 = solve_m0(tita)
            for ppmm in res:
                lin, mask = render(lay, m0, ppmm, args.seed, light)
                img = apply_nuisance(lin, {}, None)
                path = os.path.join(args.out, f"probe_{args.probe}_{lab_}_{tname}_{ppmm:g}.png")
                write_png(path, img)
                r, err, _ = run_tool(args.exe, path, ppmm, 2)
                if r is None:
                    lines.append(f"{tname:12s} {ppmm:4g} {lab_:9s} | ERROR {err}")
                    continue
                line = (f"{tname:12s} {ppmm:4g} {lab_:9s} | {r['pores']:3d}/{len(lay['pores']):3d} | "
                        f"{100 * r['pig']:5.2f}/{100 * mask.mean():5.2f} | {r['scars']:3d}/{len(lay['scars']):2d}")
                if lay["erythema"]:
                    # area inside the patches' half-maximum ellipses (radius 1.177 sigma)
                    half = sum(math.pi * (1.1774 * e["diam"] / 3) ** 2 * e["aspect"] for e in lay["erythema"])
                    line += f" | red% {100 * r['red']:5.2f}/{100 * half / lay['size_mm'] ** 2:5.2f}"
                lines.append(line)
                print(lines[-1], flush=True)
    with open(os.path.join(args.out, f"probe_{args.probe}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exe", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "target", "release", "dermatrack"))
    ap.add_argument("--tones", default="", help="comma list of tone indices 0..5 (default all)")
    ap.add_argument("--quick", action="store_true", help="one resolution per tone")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--pil-python", default="",
                    help="a Python with Pillow, for the JPEG variants when this one lacks it")
    ap.add_argument("--probe", choices=["pores", "macules", "erythema", "icepick"],
                    help="instead of the standard set, sweep one feature type (clean images)")
    ap.add_argument("--probe-res", default="5,10,20", help="px/mm list for --probe")
    args = ap.parse_args()
    if args.probe:
        run_probe(args)
        return
    t0 = time.time()
    items, lay = generate(args)
    print(f"generated {len(items)} images in {time.time() - t0:.0f}s -> {args.out}", file=sys.stderr)
    if not args.no_eval:
        evaluate(args, items, lay)


if __name__ == "__main__":
    main()
