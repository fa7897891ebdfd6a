#!/usr/bin/env python3
"""Build ``skin-v1.onnx`` + ``skin-v1.json``: an untrained, physics-based skin
measurement model for dermatrack.

Nothing here is learned and nothing is random.  Every weight in the ONNX graph
is either a physical constant (the sRGB transfer function), a 3x3 matrix
derived from published absorption spectra (the chromophore decomposition), or
a normalised Gaussian kernel whose sigma is chosen from lesion sizes.  Running
this script twice produces byte-identical files (no timestamps, fixed op
order, float32 values produced by deterministic float64 arithmetic).

Why the model looks like this
-----------------------------
Tsumura, Haneishi & Miyake (JOSA A 16(9):2169-2176, 1999) showed that in
optical-density space (-log of linear camera RGB) skin colour is, to first
order, a linear combination of a melanin vector and a hemoglobin vector;
Tsumura et al. (ACM SIGGRAPH 2003, "Image-based skin color and texture
analysis/synthesis by extracting hemoglobin and melanin information in the
skin") added the shading/illumination term along (1,1,1), because a change of
illumination intensity multiplies all linear channels alike and therefore adds
the same constant to all OD channels.  We solve that 3x3 system per pixel
(no ICA at run time: the vectors are fixed, see below), then measure:

* pores  - small dark dots in *shading* (geometry), 0.08-0.5 mm;
* atrophic scars - 0.5-4 mm depressions, visible as shading (shadowed wall,
  ambient occlusion); under directional light a depression is a +/- dipole,
  so we also output the local RMS band-pass energy (light-direction tolerant);
* hyperpigmentation / redness - melanin or hemoglobin minus its local
  Gaussian background, which removes white-balance casts exactly.

Chromophore vectors
-------------------
The Tsumura papers estimate the two vectors per camera by ICA and do not
publish camera-independent values, so we derive them from spectra for an
idealised sRGB camera and record the derivation in the manifest:

* melanin absorption  mu_a ~ lambda^-3.33 (Jacques, "Skin optics", Oregon
  Medical Laser Center News, 1998: mu_a.mel = 6.6e11 * lambda^-3.33 cm^-1);
* oxy-hemoglobin molar extinction, Prahl's compilation of Gratzer & Kollias
  data (omlc.org/spectra/hemoglobin), 400-700 nm in 2 nm steps, embedded below;
* channel sensitivities: Gaussians centred at R 610, G 545, B 465 nm with
  FWHM 60 nm (camera CFA bands are 60-100 nm wide; the colour-correction
  matrix to sRGB sharpens them; cf. Jiang et al., "What is the space of
  spectral sensitivity functions for digital color cameras?", WACV 2013),
  equal-energy illuminant (the camera is white balanced).
* Broad bands cannot simply average the extinction: the hemoglobin Soret peak
  (415 nm, ~10x the 545 nm value) would dominate the blue channel although in
  real skin that light is fully absorbed.  We therefore take the Jacobian of
  the band-integrated OD, d(-ln int S_c R)/dc = int S_c R mu / int S_c R, at a
  typical light-skin operating point R = exp(-mu_mel - mu_hb) with melanin OD
  1.0 at 465 nm and HbO2 OD 0.7 at 545 nm (the transmitted-light weighting
  suppresses saturated bands).  The script prints how much the vectors move
  for other operating points (a few degrees).

Outputs (NCHW float32 [1, 8, H, W]; channel 7 is an addition to the 7-channel
contract, appended last): melanin, hemoglobin, shading, pore_response,
scar_response, melanin_excess, hemoglobin_excess, scar_energy.

Usage:  python models/build_skin_model.py [--out DIR]   (default: writes next to this file;
        scripts/setup.sh builds into a temporary DIR and checks the bytes equal the committed files)
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True   # keep models/ free of __pycache__
sys.path.insert(0, str(HERE))
import skin_reference as ref  # noqa: E402  (kernel maths shared with the reference)

MODEL_NAME = "skin-v1"
MODEL_VERSION = "1.1.0"
ONNX_PATH = HERE / "skin-v1.onnx"
MANIFEST_PATH = HERE / "skin-v1.json"
OPSET = 17          # Resize-13, Pad-13, Clip-13, Split-13 semantics
IR_VERSION = 8      # the IR version that pairs with opset 17 (widest runtime support)

PX_PER_MM = 10.0
SIZE_MULTIPLE = 32
CLIP_MIN, CLIP_MAX = 1e-4, 1.0

# ---------------------------------------------------------------------------
# Spectral data
# ---------------------------------------------------------------------------

# Oxy-hemoglobin molar extinction coefficient [cm^-1 / (mol/L)], 400..700 nm
# step 2 nm.  S. Prahl, "Tabulated molar extinction coefficient for hemoglobin
# in water", Oregon Medical Laser Center, compiled from W. B. Gratzer (MRC
# Labs, London) and N. Kollias (Wellman Labs, Harvard).
HBO2_LAMBDA_NM = np.arange(400, 701, 2, dtype=np.float64)
HBO2_EPS = np.array([
    266232, 284224, 308716, 354208, 422320, 466840, 500200, 524280, 521880, 515520,
    480360, 431880, 376236, 326032, 283112, 246072, 214120, 165332, 132820, 119140,
    102580, 92780, 81444, 76324, 67044, 62816, 58864, 53552, 49496, 47496,
    44480, 41320, 39807.2, 37073.2, 34870.8, 33209.2, 31620, 30113.6, 28850.8, 27718,
    26629.2, 25701.6, 25180.4, 24669.6, 24174.8, 23684.4, 23086.8, 22457.6, 21850.4, 21260,
    20932.8, 20596.4, 20418, 19946, 19996, 20035.2, 20150.4, 20429.2, 21001.6, 22509.6,
    24202.4, 26450.4, 29269.2, 32496.4, 35990, 39956.8, 43876, 46924, 49752, 51712,
    53236, 53292, 52096, 49868, 46660, 43016, 39675.2, 36815.2, 34476.8, 33456,
    32613.2, 32620, 33915.6, 36495.2, 40172, 44496, 49172, 53308, 55540, 54728,
    50104, 43304, 34639.6, 26600.4, 19763.2, 14400.8, 10468.4, 7678.8, 5683.6, 4504.4,
    3200, 2664, 2128, 1789.2, 1647.6, 1506, 1364.4, 1222.8, 1110, 1026,
    942, 858, 774, 707.6, 658.8, 610, 561.2, 512.4, 478.8, 460.4,
    442, 423.6, 405.2, 390.4, 379.2, 368, 356.8, 345.6, 335.2, 325.6,
    319.6, 314, 308.4, 302.8, 298, 294, 290, 285.6, 282, 279.2,
    277.6, 276, 274.4, 272.8, 274.4, 276, 277.6, 279.2, 282, 286,
    290,
], dtype=np.float64)
assert HBO2_EPS.shape == HBO2_LAMBDA_NM.shape

MELANIN_EXPONENT = 3.33          # Jacques 1998
BAND_CENTERS_NM = (610.0, 545.0, 465.0)   # R, G, B
BAND_FWHM_NM = 60.0
OPERATING_POINT = {"melanin_od_at_465nm": 1.0, "hbo2_od_at_545nm": 0.7}
VECTOR_DECIMALS = 6


def chromophore_vectors(fwhm=BAND_FWHM_NM, od_mel=1.0, od_hb=0.7):
    """Effective unit OD direction vectors (R,G,B) of melanin and HbO2.

    Jacobian of channel OD w.r.t. chromophore amount at the operating point,
    for Gaussian bands; see the module doc string for the reasoning.
    """
    lam = HBO2_LAMBDA_NM
    mel = (lam / 500.0) ** (-MELANIN_EXPONENT)
    mu_mel = mel / np.interp(465.0, lam, mel) * od_mel
    mu_hb = HBO2_EPS / np.interp(545.0, lam, HBO2_EPS) * od_hb
    refl = np.exp(-mu_mel - mu_hb)
    sd = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    out = []
    for mu in (mu_mel, mu_hb):
        v = []
        for c in BAND_CENTERS_NM:
            w = np.exp(-0.5 * ((lam - c) / sd) ** 2) * refl
            v.append(float(np.sum(w * mu) / np.sum(w)))
        v = np.array(v)
        out.append(v / np.linalg.norm(v))
    return out[0], out[1]


# Noise model behind the pore band's channel weights (see pore_weights): photos arrive as
# 8-bit sRGB code values (JPEG, camera pipelines), so every channel carries about the same
# noise in *encoded* units; in optical density that noise is std(OD_c) ~ dOD/dsrgb =
# 2.4 / (srgb_c + 0.055) (IEC 61966-2-1 above the knee), largest in the darkest channel.
# The weights are averaged over this range of constitutive pigmentation (melanin OD at the
# model's melanin vector), hemoglobin 0.5 and a base shading of 0.25 OD.
PORE_WEIGHT_MELANIN_RANGE = (0.5, 5.5, 11)
PORE_WEIGHT_OPERATING_POINT = {"hemoglobin_od": 0.5, "shading_od": 0.25}
PORE_WEIGHT_DECIMALS = 2


def pore_weights(mel, hb):
    """Channel weights u (sum 1) of the pore band's shading estimate u . OD.

    Why not the Tsumura shading row: that row rejects melanin and hemoglobin exactly, at the
    price of weighting every channel by more than 1 (row norm ~1.9) and of leaning on blue,
    the darkest and noisiest channel on pigmented skin.  On dark skin one sRGB code value of
    blue is ~0.07 OD, and JPEG's Y/Cb/Cr rounding leaves +-1 code contours in blue that the
    shading row turned into pore-sized steps; sensor noise likewise.  Pores are 0.08-0.5 mm,
    far smaller than macules or erythema, so the pore band does not need chromophore
    rejection: any darkening that small is a pore opening (shading).  The minimum-variance
    unbiased estimate of a common (shading) offset under independent channel noise is the
    inverse-variance weighted mean, u_c ~ 1/var(OD_c) (sum 1 keeps the shading gain at 1,
    so exposure and white balance still cancel in the band-pass).  It depends on the skin's
    colour; a fixed average over the pigmentation range stays within ~10% of the optimum
    noise on the lightest and darkest skin and needs no per-pixel weights (which would add
    their own spatial structure to the band).
    """
    lo, hi, n = PORE_WEIGHT_MELANIN_RANGE
    hb_od = PORE_WEIGHT_OPERATING_POINT["hemoglobin_od"]
    s_od = PORE_WEIGHT_OPERATING_POINT["shading_od"]
    ws = []
    for m in np.linspace(lo, hi, n):
        lin = np.exp(-(m * mel + hb_od * hb + s_od))
        enc = 1.055 * lin ** (1.0 / 2.4) - 0.055
        inv_var = ((enc + 0.055) / 2.4) ** 2
        ws.append(inv_var / inv_var.sum())
    u = np.round(np.mean(ws, axis=0), PORE_WEIGHT_DECIMALS)
    u[1] = round(1.0 - u[0] - u[2], PORE_WEIGHT_DECIMALS)   # exact unit sum after rounding
    return u


def single_wavelength_vectors():
    """Point-sampled vectors at the band centres, for comparison only (not used)."""
    lam = HBO2_LAMBDA_NM
    mel = np.array([c ** (-MELANIN_EXPONENT) for c in BAND_CENTERS_NM])
    hb = np.array([np.interp(c, lam, HBO2_EPS) for c in BAND_CENTERS_NM])
    return mel / np.linalg.norm(mel), hb / np.linalg.norm(hb)


def angle_deg(a, b):
    c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


# ---------------------------------------------------------------------------
# Filter design (all sigmas in full-resolution px at 10 px/mm)
# ---------------------------------------------------------------------------

# name -> (nominal sigma px, pyramid factor, why)
FILTER_DESIGN = {
    "pore_center": (0.8, 1,
                    "Centre of the pore DoG: suppresses single-pixel sensor/demosaic noise "
                    "while keeping 0.8-5 px (0.08-0.5 mm) pores."),
    "pore_surround": (4.0, 1,
                      "Surround of the pore DoG (0.4 mm); also the centre of the scar DoG, so that "
                      "for a pure shading feature pore_response + scar_response = G(0.8) - G(20) "
                      "partitions the band."),
    "scar_surround": (20.0, 4,
                      "Surround of the scar DoG (2 mm): background for 0.5-4 mm depressions; a 4 mm "
                      "scar keeps ~60% of its depth at the centre. Pyramid f=4."),
    "scar_energy": (8.0, 4,
                    "Local mean of scar_response^2 (0.8 mm), square-rooted: RMS band-pass amplitude, "
                    "which captures the shadow/highlight dipole of a depression under "
                    "directional light whose signed mean is ~0. Pyramid f=4."),
    "chromophore_background": (32.0, 8,
                               "Local background of melanin/hemoglobin (3.2 mm). A macule of diameter D "
                               "keeps exp(-D^2/(8 sigma^2)) of its contrast at its centre: 90% at 3 mm, "
                               "74% at 5 mm; larger sigma would follow slow pigment/colour-light "
                               "gradients less well and needs more tile margin. Pyramid f=8."),
}


def make_filters():
    filters = {}
    for name, (sigma, f, why) in FILTER_DESIGN.items():
        s_low = ref.pyramid_sigma(sigma, f)
        w = ref.gaussian_kernel(s_low)
        r = (len(w) - 1) // 2
        k = np.arange(-r, r + 1, dtype=np.float64)
        var_k = float(np.sum(w.astype(np.float64) * k * k))
        # realised variance in full-res px^2: f^2*var(kernel) + f^2/4 (box+tent), 0 for f=1
        var_full = var_k if f == 1 else f * f * var_k + f * f / 4.0
        filters[name] = {
            "sigma_px": sigma,
            "sigma_mm": round(sigma / PX_PER_MM, 4),
            "pyramid_factor": f,
            "kernel_sigma_px": round(s_low, 6),
            "kernel_sigma_unit": "full-res px" if f == 1 else f"low-res px (1/{f} scale)",
            "radius": r,
            "taps": 2 * r + 1,
            "realised_std_px": round(math.sqrt(var_full), 4),
            "weights": [float(x) for x in w],   # float32 values, exact in JSON
            "why": why,
        }
    return filters


# ---------------------------------------------------------------------------
# ONNX graph
# ---------------------------------------------------------------------------


class GraphBuilder:
    def __init__(self):
        self.nodes = []
        self.inits = []
        self._init_names = set()

    def const(self, name, array):
        if name not in self._init_names:
            self.inits.append(numpy_helper.from_array(array, name=name))
            self._init_names.add(name)
        return name

    def scalar(self, name, value):
        return self.const(name, np.array(value, dtype=np.float32))

    def node(self, op, inputs, name, n_out=1, **attrs):
        outs = [name] if n_out == 1 else [f"{name}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def blur(self, x, tag, filt, channels):
        """Pad(reflect, r) -> depthwise Conv[1,K] -> depthwise Conv[K,1]."""
        w = np.asarray(filt["weights"], dtype=np.float32)
        k, r = len(w), (len(w) - 1) // 2
        pads = self.const(f"pads_r{r}", np.array([0, 0, r, r, 0, 0, r, r], dtype=np.int64))
        wh = self.const(f"k_{tag}_c{channels}_h", np.tile(w.reshape(1, 1, 1, k), (channels, 1, 1, 1)))
        wv = self.const(f"k_{tag}_c{channels}_v", np.tile(w.reshape(1, 1, k, 1), (channels, 1, 1, 1)))
        p = self.node("Pad", [x, pads], f"{x}__pad_{tag}", mode="reflect")
        h = self.node("Conv", [p, wh], f"{x}__blurw_{tag}", group=channels, kernel_shape=[1, k])
        return self.node("Conv", [h, wv], f"{x}__blurh_{tag}", group=channels, kernel_shape=[k, 1])

    def blur_each(self, xs, tag, filts):
        """Blur channel i of xs with filts[i] (one depthwise conv, group=len(filts)).

        Shorter kernels are zero-padded to the longest one's taps: zero taps add exact
        zeros, and reflect padding by the longest radius leaves the used samples unchanged.
        """
        ws = [np.asarray(f["weights"], dtype=np.float32) for f in filts]
        n = len(ws)
        k = max(len(w) for w in ws)
        r = (k - 1) // 2
        w = np.zeros((n, k), dtype=np.float32)
        for i, wi in enumerate(ws):
            w[i, (k - len(wi)) // 2:(k + len(wi)) // 2] = wi
        pads = self.const(f"pads_r{r}", np.array([0, 0, r, r, 0, 0, r, r], dtype=np.int64))
        wh = self.const(f"k_{tag}_x{n}_h", w.reshape(n, 1, 1, k))
        wv = self.const(f"k_{tag}_x{n}_v", w.reshape(n, 1, k, 1))
        p = self.node("Pad", [xs, pads], f"{xs}__pad_{tag}", mode="reflect")
        h = self.node("Conv", [p, wh], f"{xs}__blurw_{tag}", group=n, kernel_shape=[1, k])
        v = self.node("Conv", [h, wv], f"{xs}__blurh_{tag}", group=n, kernel_shape=[k, 1])
        split = self.const(f"split_ones_{n}", np.ones(n, dtype=np.int64))
        return self.node("Split", [v, split], f"{xs}__split_{tag}", n_out=n, axis=1)

    def smooth(self, x, tag, filt, channels):
        f = int(filt["pyramid_factor"])
        if f == 1:
            return self.blur(x, tag, filt, channels)
        low = self.node("AveragePool", [x], f"{x}__pool{f}_{tag}", kernel_shape=[f, f], strides=[f, f])
        if channels == 1:
            # A single-channel Conv (group=1, 1 input channel) is rewritten by onnxruntime's
            # NCHWc layout pass (level 3) with the output padded to 8/16 channels, and the
            # following Resize then runs on the padded tensor at full resolution (~10x slower).
            # Duplicating the tiny low-res plane into a group=2 depthwise conv avoids that;
            # channel 0 is kept. Numerically identical to a 1-channel blur.
            dup = self.node("Concat", [low, low], f"{low}__dup", axis=1)
            low = self.blur(dup, tag, filt, 2)
            low = self.node("Slice", [low, self.const("i64_0", np.array([0], dtype=np.int64)),
                                      self.const("i64_1", np.array([1], dtype=np.int64)),
                                      self.const("i64_1", np.array([1], dtype=np.int64))],
                            f"{low}__ch0")
        else:
            low = self.blur(low, tag, filt, channels)
        scales = self.const(f"scales_x{f}", np.array([1, 1, f, f], dtype=np.float32))
        return self.node("Resize", [low, "", scales], f"{x}__up{f}_{tag}",
                         mode="linear", coordinate_transformation_mode="half_pixel")


def build_graph(ainv32, pore_w32, filters, channel_names):
    g = GraphBuilder()
    x = "srgb"
    # 1) sRGB EOTF (IEC 61966-2-1)
    le = g.node("LessOrEqual", [x, g.scalar("c_srgb_knee", 0.04045)], "srgb_le_knee")
    lo = g.node("Div", [x, g.scalar("c_srgb_slope", 12.92)], "linear_lo")
    t = g.node("Add", [x, g.scalar("c_srgb_offset", 0.055)], "srgb_plus_offset")
    t = g.node("Div", [t, g.scalar("c_srgb_scale", 1.055)], "srgb_scaled")
    hi = g.node("Pow", [t, g.scalar("c_srgb_gamma", 2.4)], "linear_hi")
    lin = g.node("Where", [le, lo, hi], "linear")
    # 2) optical density
    lin = g.node("Clip", [lin, g.scalar("c_clip_min", CLIP_MIN), g.scalar("c_clip_max", CLIP_MAX)],
                 "linear_clipped")
    od = g.node("Neg", [g.node("Log", [lin], "log_linear")], "optical_density")
    # 3) Tsumura decomposition [m,h,s] = Ainv @ OD and the pore band's noise-weighted
    #    shading u . OD, per pixel, as one MatMul of the stacked [4, 3] matrix over a
    #    [3, H*W] view (a 1x1 Conv would be equivalent, but onnxruntime's NCHWc layout
    #    pass pads small 1x1 convs to 8/16 output channels, ~2x slower overall).
    od_shape = g.node("Shape", [od], "od_shape")
    out_shape = g.node("Concat", [g.const("i64_1_4", np.array([1, 4], dtype=np.int64)),
                                  g.node("Slice", [od_shape, g.const("i64_2", np.array([2], dtype=np.int64)),
                                                   g.const("i64_4", np.array([4], dtype=np.int64))],
                                         "od_hw")], "mhsu_shape", axis=0)
    od_flat = g.node("Reshape", [od, g.const("shape_3_m1", np.array([3, -1], dtype=np.int64))], "od_flat")
    proj = np.concatenate([ainv32, pore_w32.reshape(1, 3)], axis=0).astype(np.float32)
    mhsu_flat = g.node("MatMul", [g.const("decomposition_projection", proj), od_flat], "chromophores_flat")
    mhsu = g.node("Reshape", [mhsu_flat, out_shape], "chromophores")
    split = g.const("split_2_1_1", np.array([2, 1, 1], dtype=np.int64))
    mh, s, su = g.node("Split", [mhsu, split], "chromophores_split", n_out=3, axis=1)
    # 4) shading band-passes.  The three full-resolution blurs (0.8 px and 4 px of the pore
    #    band's u . OD, 4 px of the Tsumura shading s for the scar band) run as ONE 3-channel
    #    depthwise conv on [su, su, s], which keeps them off onnxruntime's NCHWc path.
    s3 = g.node("Concat", [su, su, s], "shading_x3", axis=1)
    s_pore, su_mid, s_mid = g.blur_each(
        s3, "bands", [filters["pore_center"], filters["pore_surround"], filters["pore_surround"]])
    s_wide = g.smooth(s, "scar_surround", filters["scar_surround"], 1)
    pore = g.node("Sub", [s_pore, su_mid], "pore_response")
    scar = g.node("Sub", [s_mid, s_wide], "scar_response")
    sq = g.node("Mul", [scar, scar], "scar_response_sq")
    e = g.smooth(sq, "scar_energy", filters["scar_energy"], 1)
    energy = g.node("Sqrt", [e], "scar_energy")
    # 5) chromophore excess over local background
    bg = g.smooth(mh, "chromophore_background", filters["chromophore_background"], 2)
    excess = g.node("Sub", [mh, bg], "chromophore_excess")
    # 6) output
    g.nodes.append(helper.make_node("Concat", [mh, s, pore, scar, excess, energy], ["maps"],
                                    name="maps_concat", axis=1))

    inp = helper.make_tensor_value_info("srgb", TensorProto.FLOAT, [1, 3, "H", "W"])
    out = helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, len(channel_names), "H", "W"])
    inp.doc_string = ("gamma-encoded sRGB in [0,1], NCHW, 10 px/mm, H and W multiples of 32, "
                      "min 128")
    out.doc_string = "channels: " + ", ".join(channel_names)
    graph = helper.make_graph(g.nodes, "skin_v1", [inp], [out], initializer=g.inits,
                              doc_string="dermatrack skin-v1 physics-based measurement graph")
    return graph


# ---------------------------------------------------------------------------
# Manifest content
# ---------------------------------------------------------------------------

CHANNELS = [
    ("melanin", "Melanin optical-density component m (Tsumura decomposition).",
     "natural-log OD along the unit melanin vector",
     "higher = more melanin; absolute level depends on white balance, differences do not"),
    ("hemoglobin", "Hemoglobin optical-density component h (Tsumura decomposition).",
     "natural-log OD along the unit hemoglobin vector",
     "higher = more (oxy)hemoglobin; absolute level depends on white balance"),
    ("shading", "Shading/geometry component s: the OD common to R,G,B (illumination, exposure, "
                "shadows, surface relief).",
     "natural-log OD per channel",
     "higher = darker; exposure x k adds -ln(k) here and nowhere else"),
    ("pore_response", "G(0.8 px)*(u.OD) - G(4 px)*(u.OD): DoG band-pass at pore scale "
                      "(0.08-0.5 mm diameter) of the noise-weighted shading u.OD "
                      "(physics.pore_weights).",
     "natural-log OD", "positive where darker than the surroundings (pore opening)"),
    ("scar_response", "G(4 px)*shading - G(20 px)*shading: DoG band-pass at atrophic-scar scale "
                      "(0.5-4 mm).",
     "natural-log OD", "signed; positive where darker (depression floor, shadowed wall, occlusion), "
                       "negative on lit walls/shoulders"),
    ("melanin_excess", "melanin - G(32 px)*melanin: hyperpigmentation contrast against the local "
                       "background.",
     "natural-log OD along the melanin vector",
     "positive = more pigment than surroundings; white-balance and exposure invariant"),
    ("hemoglobin_excess", "hemoglobin - G(32 px)*hemoglobin: redness contrast against the local "
                          "background.",
     "natural-log OD along the hemoglobin vector",
     "positive = redder than surroundings; white-balance and exposure invariant"),
    ("scar_energy", "sqrt(G(8 px)*(scar_response^2)): local RMS of the scar band-pass. ADDED channel "
                    "(not in the original 7-channel contract, appended last): under directional "
                    "light a depression is a +/- dipole in scar_response whose signed mean is ~0; "
                    "its energy is light-direction tolerant.",
     "natural-log OD (RMS)", "non-negative; high = strong relief at 0.5-4 mm scale"),
]

SUGGESTED_THRESHOLDS = {
    "note": ("Uncalibrated priors, chosen as ~2-3x the luminance just-noticeable difference "
             "(~2% -> 0.02 OD) divided by the filter gain at the target size (see "
             "disk_center_gain). They WILL be recalibrated on phantoms / annotated images; "
             "treat them as configuration, not constants."),
    "pore_response_gt": 0.04,
    "pore_min_area_px": 2,
    "pore_max_diameter_px": 6,
    "scar_response_gt": 0.03,
    "scar_energy_gt": 0.03,
    "scar_min_diameter_px": 5,
    "melanin_excess_gt": 0.06,
    "hemoglobin_excess_gt": 0.05,
    "excess_presmooth_sigma_px": 3.0,
    "lesion_min_area_px": 80,
    "noise_note": ("melanin/hemoglobin are per-pixel and amplify camera OD noise (see "
                   "physics.noise_gain, ~5x for melanin); smooth *_excess with a Gaussian of "
                   "~3 px (0.3 mm; noise std x ~0.1) and require ~80 px (0.8 mm^2, a 1 mm "
                   "macule) before thresholding. pore/scar channels are already band-limited."),
}

CITATIONS = [
    "Tsumura N, Haneishi H, Miyake Y. Independent-component analysis of skin color image. "
    "J Opt Soc Am A 16(9):2169-2176, 1999. doi:10.1364/JOSAA.16.002169",
    "Tsumura N, Ojima N, Sato K, Shiraishi M, Shimizu H, Nabeshima H, Akazaki S, Hori K, Miyake Y. "
    "Image-based skin color and texture analysis/synthesis by extracting hemoglobin and melanin "
    "information in the skin. ACM Trans Graph 22(3):770-779 (SIGGRAPH 2003). "
    "doi:10.1145/882262.882344",
    "Jacques SL. Skin optics. Oregon Medical Laser Center News, Jan 1998 "
    "(melanin mu_a = 6.6e11 * lambda^-3.33 cm^-1).",
    "Prahl S. Tabulated molar extinction coefficient for hemoglobin in water (data of W.B. Gratzer "
    "and N. Kollias). Oregon Medical Laser Center, https://omlc.org/spectra/hemoglobin/",
    "IEC 61966-2-1:1999 Multimedia systems and equipment - Colour measurement and management - "
    "Part 2-1: Default RGB colour space - sRGB.",
    "Jiang J, Liu D, Gu J, Susstrunk S. What is the space of spectral sensitivity functions for "
    "digital color cameras? IEEE WACV 2013 (typical camera band widths).",
    "Lindeberg T. Feature detection with automatic scale selection. IJCV 30(2):79-116, 1998 "
    "(DoG/LoG blob response vs. blob size).",
]


def disk_center_gains(params):
    """Filter gain at the centre of a dark disk of unit OD depth (via the reference).

    Tells the metric code what fraction of a lesion's true contrast each channel
    reports at its centre, for the diameters listed.
    """
    size = 256
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = size // 2
    rr = np.hypot(yy - c, xx - c)
    ainv = np.asarray(params["decomposition"]["inverse_matrix"], dtype=np.float64)
    a = np.linalg.inv(ainv)
    base_od = np.array([0.9, 1.1, 1.4])          # light-skin-like OD (R,G,B)
    rows = []
    for d_mm in (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0):
        r_px = d_mm * PX_PER_MM / 2.0
        disk = (rr <= r_px).astype(np.float64)
        row = {"diameter_mm": d_mm}
        for label, direction, chans in (("shading", np.ones(3), {"pore_response": 3, "scar_response": 4}),
                                         ("melanin", a[:, 0], {"melanin_excess": 5})):
            amp = 0.1
            od = base_od[:, None, None] + amp * disk[None] * direction[:, None, None]
            srgb = linear_to_srgb(np.exp(-od)).astype(np.float32)[None]
            out = ref.run(srgb, params)
            for name, ch in chans.items():
                row[name] = round(float(out[0, ch, size // 2, size // 2]) / amp, 3)
        rows.append(row)
    return rows


def linear_to_srgb(lin):
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1.0 / 2.4) - 0.055)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main():
    global ONNX_PATH, MANIFEST_PATH
    if len(sys.argv) == 3 and sys.argv[1] == "--out":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        ONNX_PATH, MANIFEST_PATH = out / ONNX_PATH.name, out / MANIFEST_PATH.name
    elif len(sys.argv) != 1:
        sys.exit("usage: build_skin_model.py [--out DIR]")
    # --- chromophore vectors -------------------------------------------------
    mel, hb = chromophore_vectors()
    mel = np.round(mel, VECTOR_DECIMALS)
    hb = np.round(hb, VECTOR_DECIMALS)
    a = np.stack([mel, hb, np.ones(3)], axis=1)          # columns: s_mel, s_hb, 1
    ainv = np.linalg.inv(a)
    ainv32 = ainv.astype(np.float32)
    pore_w = pore_weights(mel, hb)
    pore_w32 = pore_w.astype(np.float32)
    sens = []
    for fw in (40.0, 60.0, 80.0):
        for om, oh in ((0.5, 0.5), (1.0, 0.7), (1.5, 1.0)):
            m2, h2 = chromophore_vectors(fw, om, oh)
            sens.append((fw, om, oh, angle_deg(m2, mel), angle_deg(h2, hb)))
    max_dm = max(t[3] for t in sens)
    max_dh = max(t[4] for t in sens)

    filters = make_filters()
    channel_names = [c[0] for c in CHANNELS]
    params = {
        "size_multiple": SIZE_MULTIPLE,
        "decomposition": {
            "clip_min": CLIP_MIN,
            "clip_max": CLIP_MAX,
            "matrix_columns": ["melanin", "hemoglobin", "shading"],
            "matrix": [[float(v) for v in row] for row in a],
            "inverse_matrix": [[float(v) for v in row] for row in ainv32],
            "pore_weights": [float(v) for v in pore_w32],
        },
        "filters": filters,
    }
    reach = ref.channel_reach(params)
    max_reach = max(reach.values())
    largest_sigma = max(f["sigma_px"] for f in filters.values())
    margin = int(math.ceil(max(max_reach, 3 * largest_sigma) / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    min_size = SIZE_MULTIPLE
    for f in filters.values():
        pf = f["pyramid_factor"]
        need = (f["radius"] + 1) * pf          # reflect pad r needs low-res size > r
        min_size = max(min_size, int(math.ceil(need / SIZE_MULTIPLE) * SIZE_MULTIPLE))

    # --- ONNX model ----------------------------------------------------------
    graph = build_graph(ainv32, pore_w32, filters, channel_names)
    doc = (
        "dermatrack skin-v1: untrained, physics-based skin measurement model (no learned or random "
        "weights). srgb [1,3,H,W] gamma-encoded sRGB in [0,1] at 10 px/mm (H, W multiples of 32, "
        f">= {min_size}) -> maps [1,{len(channel_names)},H,W]: "
        + ", ".join(channel_names)
        + ". sRGB EOTF -> clip [1e-4,1] -> OD=-ln -> per-pixel Tsumura decomposition "
        "OD = m*s_mel + h*s_hb + s*(1,1,1) (Tsumura et al. JOSA A 1999; SIGGRAPH 2003) -> "
        "difference-of-Gaussian band-passes of the noise-weighted shading u.OD at pore scale "
        "(0.8/4 px) and of s at scar scale (4/20 px), RMS scar energy (8 px), and melanin/hemoglobin minus 32 px Gaussian background. "
        "Gaussians: reflect padding, 3-sigma truncation; sigma > 4 px via AveragePool / blur / "
        "linear half_pixel Resize pyramid. See skin-v1.json for vectors, kernels and tiling margin."
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="dermatrack-build_skin_model",
        producer_version=MODEL_VERSION,
        doc_string=doc,
        model_version=1,
        domain="org.dermatrack",
    )
    model.ir_version = IR_VERSION
    meta = {
        "dermatrack.model": MODEL_NAME,
        "dermatrack.version": MODEL_VERSION,
        "dermatrack.channels": ",".join(channel_names),
        "dermatrack.working_px_per_mm": "10",
        "dermatrack.size_multiple": str(SIZE_MULTIPLE),
        "dermatrack.min_size_px": str(min_size),
        "dermatrack.tile_margin_px": str(margin),
        "dermatrack.tile_origin_multiple": str(SIZE_MULTIPLE),
    }
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    out_shape = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert out_shape == [1, len(channel_names), "H", "W"], out_shape
    ONNX_PATH.write_bytes(model.SerializeToString(deterministic=True))
    onnx_sha = sha256(ONNX_PATH)

    # --- manifest -----------------------------------------------------------
    gains = disk_center_gains(params)
    manifest = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "file": ONNX_PATH.name,
        "sha256": onnx_sha,
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "producer_name": "dermatrack-build_skin_model",
        "trained": False,
        "description": ("Untrained physics-based skin measurement model: per-pixel Tsumura "
                        "melanin/hemoglobin/shading decomposition in optical density plus "
                        "fixed Gaussian band-pass and background-contrast filters."),
        "input": {
            "name": "srgb",
            "layout": "NCHW",
            "shape": [1, 3, "H", "W"],
            "dtype": "float32",
            "encoding": "sRGB gamma-encoded in [0,1]",
            "working_px_per_mm": PX_PER_MM,
            "size_multiple": SIZE_MULTIPLE,
            "min_size_px": min_size,
            "size_note": (f"H and W must be multiples of {SIZE_MULTIPLE} (the x8 pyramid must divide "
                          f"exactly) and >= {min_size} (reflect padding at the 1/8 level needs "
                          "pad < size). The Rust tiler pads with reflection to satisfy this."),
        },
        "outputs": {
            "name": "maps",
            "layout": "NCHW",
            "shape": [1, len(channel_names), "H", "W"],
            "dtype": "float32",
            "channels": [],
        },
        "tile_overlap_px": margin,
        "tile_overlap_note": ("context margin in working px that every tile needs on each side "
                              "(adjacent tiles overlap by twice this); see tiling"),
        "tiling": {
            "tile_margin_px": margin,
            "tile_margin_mm": margin / PX_PER_MM,
            "tile_origin_multiple": SIZE_MULTIPLE,
            "max_dependency_reach_px": max_reach,
            "per_channel_reach_px": reach,
            "rule": (f"Run tiles whose sizes are multiples of {SIZE_MULTIPLE}, whose origins (in the "
                     f"padded full image) are multiples of {SIZE_MULTIPLE} (the pyramid grid must "
                     f"align; factor 8 is the minimum), and keep only pixels at least "
                     f"{margin} px from every tile edge that is not an image edge; adjacent "
                     f"tiles therefore overlap by {2 * margin} px. Outputs then equal an untiled "
                     "run to float rounding. The margin is >= the exact dependency reach "
                     f"({max_reach} px) and >= 3x the largest sigma ({3 * largest_sigma:g} px), "
                     f"rounded up to a multiple of {SIZE_MULTIPLE}."),
        },
        "physics": {
            "eotf": "IEC 61966-2-1: c <= 0.04045 ? c/12.92 : ((c+0.055)/1.055)^2.4 (float32)",
            "clip_linear": [CLIP_MIN, CLIP_MAX],
            "optical_density": "OD_c = -ln(clip(linear_c)) (natural log)",
            "model": "OD = m*sigma_mel + h*sigma_hb + s*(1,1,1); [m,h,s] = inverse_matrix @ OD",
            "sigma_mel_rgb": [float(v) for v in mel],
            "sigma_hb_rgb": [float(v) for v in hb],
            "shading_rgb": [1.0, 1.0, 1.0],
            "inverse_matrix_rows": ["melanin", "hemoglobin", "shading"],
            "inverse_matrix_cols": ["OD_R", "OD_G", "OD_B"],
            "inverse_matrix_float32": [[float(v) for v in row] for row in ainv32],
            "pore_weights": {
                "values_rgb": [float(v) for v in pore_w32],
                "use": "pore band input: u . OD (sum of u is 1, so shading passes with gain 1)",
                "method": ("inverse-variance weights u_c ~ ((srgb_c + 0.055) / 2.4)^2 for equal noise "
                           "in sRGB code values, averaged over melanin OD "
                           f"{PORE_WEIGHT_MELANIN_RANGE[0]}-{PORE_WEIGHT_MELANIN_RANGE[1]} "
                           f"({PORE_WEIGHT_MELANIN_RANGE[2]} steps) at {PORE_WEIGHT_OPERATING_POINT}, "
                           f"rounded to {PORE_WEIGHT_DECIMALS} decimals"),
                "why": ("the Tsumura shading row rejects chromophores exactly but leans on the "
                        "noisiest (blue) channel; pores are far smaller than any chromophore "
                        "feature the metrics measure, so the pore band takes the minimum-noise "
                        "estimate instead: OD noise on dark skin ~4x lower"),
                "chromophore_leak": {
                    "melanin": round(float(pore_w @ mel), 3),
                    "hemoglobin": round(float(pore_w @ hb), 3),
                    "note": "gain with which chromophore texture at pore scale enters pore_response",
                },
                "noise_gain": round(float(np.linalg.norm(pore_w)), 3),
            },
            "matrix_condition_number": round(float(np.linalg.cond(a)), 3),
            "noise_gain": {
                "note": ("row norms of the inverse matrix: i.i.d. per-channel OD noise of std n "
                         "gives melanin/hemoglobin/shading noise of std gain*n (per pixel, before "
                         "any smoothing); separating the two chromophores amplifies noise"),
                "melanin": round(float(np.linalg.norm(ainv[0])), 3),
                "hemoglobin": round(float(np.linalg.norm(ainv[1])), 3),
                "shading": round(float(np.linalg.norm(ainv[2])), 3),
            },
            "derivation": {
                "method": ("Jacobian of band-integrated OD w.r.t. chromophore amount at an "
                           "operating point: sigma_c = sum S_c R mu / sum S_c R, normalised to "
                           f"unit length, rounded to {VECTOR_DECIMALS} decimals. Tsumura et al. "
                           "estimate these vectors per camera by ICA; no camera-independent "
                           "published values exist, so they are derived from spectra for an "
                           "idealised sRGB camera. Re-estimate per camera (ICA on calibration "
                           "images) for a future model version if needed."),
                "melanin_absorption": f"mu_a ~ lambda^-{MELANIN_EXPONENT} (Jacques 1998)",
                "hemoglobin_absorption": ("oxy-hemoglobin molar extinction, Prahl/Gratzer/Kollias, "
                                          "400-700 nm, 2 nm steps (embedded in build_skin_model.py)"),
                "band_centers_nm": {"R": BAND_CENTERS_NM[0], "G": BAND_CENTERS_NM[1],
                                    "B": BAND_CENTERS_NM[2]},
                "band_shape": f"Gaussian, FWHM {BAND_FWHM_NM:g} nm; equal-energy illuminant",
                "operating_point": OPERATING_POINT,
                "why_not_plain_band_average": ("a plain band average lets the 415 nm Soret peak "
                                               "dominate the blue channel, making hemoglobin nearly "
                                               "collinear with melanin (condition number > 70); in "
                                               "skin that light is absorbed, which the transmitted-"
                                               "light weighting models."),
                "sensitivity_max_angle_deg": {
                    "melanin": round(max_dm, 2), "hemoglobin": round(max_dh, 2),
                    "over": "FWHM 40-80 nm x operating points (0.5,0.5),(1.0,0.7),(1.5,1.0)",
                },
                "single_wavelength_vectors_for_comparison": {
                    "note": "point samples at the band centres; not used, shown for context",
                    "melanin": [round(float(v), 4) for v in single_wavelength_vectors()[0]],
                    "hemoglobin": [round(float(v), 4) for v in single_wavelength_vectors()[1]],
                },
            },
            "invariances": ("exposure x k -> -ln(k) added to shading only; white-balance gains "
                            "-> constant offsets in m, h, s which the *_excess and band-pass "
                            "channels remove exactly (all kernels sum to 1)"),
        },
        "graph": params,
        "filters_summary": {k: {"sigma_px": v["sigma_px"], "sigma_mm": v["sigma_mm"],
                                "pyramid_factor": v["pyramid_factor"],
                                "kernel_sigma_px": v["kernel_sigma_px"], "taps": v["taps"]}
                            for k, v in filters.items()},
        "implementation_notes": {
            "padding": "ONNX Pad mode=reflect == numpy 'reflect' (edge not repeated), r on all 4 sides, before each separable blur",
            "kernels": "w_k = exp(-k^2/(2 sigma^2)), k=-r..r, r=ceil(3 sigma), float64, normalised to sum 1, cast to float32 (use graph.filters.*.weights)",
            "separable_order": "horizontal [1,K] then vertical [K,1], both depthwise, valid",
            "pyramid": "AveragePool(k=f, s=f, no pad) -> blur(kernel_sigma_px at 1/f scale) -> Resize(linear, half_pixel, scales [1,1,f,f]); kernel sigma' = sqrt(sigma^2/f^2 - 1/4) so the composite variance (box (f^2-1)/12 + tent (2f^2+1)/12 + f^2 sigma'^2) equals sigma^2",
            "resize": "src = (x+0.5)/f - 0.5 clamped to [0, n-1]; x0=floor(src), x1=min(x0+1,n-1), t=src-x0; bilinear with weights (1-t),t per axis",
            "reference": "skin_reference.py mirrors the graph op by op",
        },
        "disk_center_gain": {
            "note": ("channel value at the centre of a dark disk of OD depth 1 (shading disk for "
                     "pore/scar, melanin disk for melanin_excess), from the NumPy reference; "
                     "multiply by the lesion depth to predict the response."),
            "rows": gains,
        },
        "suggested_thresholds": SUGGESTED_THRESHOLDS,
        "citations": CITATIONS,
    }
    for name, meaning, units, sign in CHANNELS:
        ch = {"index": channel_names.index(name), "name": name, "meaning": meaning,
              "units": units, "sign": sign, "reach_px": reach[name]}
        if name in ("pore_response",):
            ch["filters"] = ["pore_center", "pore_surround"]
        elif name == "scar_response":
            ch["filters"] = ["pore_surround", "scar_surround"]
        elif name == "scar_energy":
            ch["filters"] = ["pore_surround", "scar_surround", "scar_energy"]
        elif name.endswith("_excess"):
            ch["filters"] = ["chromophore_background"]
        if "filters" in ch:
            ch["sigmas"] = [{"filter": f, "sigma_px": filters[f]["sigma_px"],
                             "sigma_mm": filters[f]["sigma_mm"]} for f in ch["filters"]]
        manifest["outputs"]["channels"].append(ch)
    if len(channel_names) > 7:
        manifest["outputs"]["note"] = ("Channels 0-6 follow the original contract; channel 7 "
                                      "(scar_energy) is an addition appended last.")
    MANIFEST_PATH.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    print(f"sigma_mel = {mel.tolist()}  sigma_hb = {hb.tolist()}  cond = {np.linalg.cond(a):.3f}")
    print(f"vector sensitivity: max {max_dm:.2f} deg (melanin), {max_dh:.2f} deg (hemoglobin)")
    for k, v in filters.items():
        print(f"  {k:24s} sigma {v['sigma_px']:5.1f} px ({v['sigma_mm']:.2f} mm) f={v['pyramid_factor']} "
              f"kernel sigma {v['kernel_sigma_px']:.4f} r={v['radius']} realised std {v['realised_std_px']:.3f}")
    print(f"reach {reach} -> tile margin {margin} px, min size {min_size}")
    print(f"{ONNX_PATH.name}: {ONNX_PATH.stat().st_size} bytes sha256 {onnx_sha}")
    print(f"{MANIFEST_PATH.name}: {MANIFEST_PATH.stat().st_size} bytes sha256 {sha256(MANIFEST_PATH)}")


if __name__ == "__main__":
    main()
