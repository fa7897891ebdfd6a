#!/usr/bin/env python3
"""Check ``skin-v1.onnx`` against its NumPy reference and its physical claims.

Runs the ONNX file in onnxruntime (CPU, 2 intra-op threads, as in production)
and verifies:

(a) ORT == skin_reference.py (max abs diff <= 1e-4 per channel) on synthetic
    skin images (skin-like colour, pores, pigmented macules, a red patch, a
    scar with a directional-light dipole, mild noise) at three sizes,
    including the minimum size;
(b) tiling: the image split into overlapping tiles with the manifest's
    ``tile_overlap_px`` margin, cropped and stitched, equals the untiled run
    (<= 1e-4), and the exact per-channel dependency reach measured with an
    impulse is within the manifest's claim (a smaller margin must fail);
(c) invariances that follow from the Tsumura model (Tsumura et al., JOSA A
    16(9):2169, 1999; SIGGRAPH 2003): exposure x0.7 / x1.3 and a white-balance
    cast leave channels 3-7 unchanged (< 1e-4); a pure melanin perturbation
    changes melanin but not shading/pore/scar; a pure grey (shading) dip
    does not reach melanin_excess/hemoglobin_excess;
(d) timing for 1024x1024 and 2048x2048 inputs.

Also verifies the file's sha256 against the manifest.  ``--determinism``
additionally rebuilds the model twice in a temporary directory and compares
bytes with the files here.  Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
import skin_reference as ref  # noqa: E402

ONNX_PATH = HERE / "skin-v1.onnx"
MANIFEST_PATH = HERE / "skin-v1.json"
TOL = 1e-4

ROWS: list[tuple[str, str, str, str]] = []
FAILED: list[str] = []


def record(test: str, value: float | str, limit: str, ok: bool | None):
    status = "info" if ok is None else ("PASS" if ok else "FAIL")
    if ok is False:
        FAILED.append(test)
    v = value if isinstance(value, str) else f"{value:.3g}"
    ROWS.append((test, v, limit, status))


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Inverse IEC 61966-2-1 EOTF in float64 (test-image synthesis only)."""
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1.0 / 2.4) - 0.055)


def to_input(od: np.ndarray) -> np.ndarray:
    """[3,H,W] float64 optical density -> srgb [1,3,H,W] float32."""
    return linear_to_srgb(np.exp(-od)).astype(np.float32)[None]


def blob(h, w, cy, cx, radius):
    """Smooth round profile (raised cosine), 1 at the centre, 0 beyond radius."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(yy - cy, xx - cx) / radius
    return np.where(r < 1.0, 0.5 + 0.5 * np.cos(np.pi * np.minimum(r, 1.0)), 0.0)


def synthetic_skin_od(h, w, a_matrix, seed=7):
    """Skin-like OD image [3,H,W] built in the model's own physical terms.

    Base colour sRGB ~(0.80, 0.60, 0.50); linear values stay within
    [0.05, 0.75] so exposure x1.3 / x0.7 never reaches the clip limits.
    """
    rng = np.random.default_rng(seed)
    base = -np.log(np.array([0.80, 0.60, 0.50]) ** 2.2)          # approx. linearisation
    mel_dir, hb_dir, one = a_matrix[:, 0], a_matrix[:, 1], a_matrix[:, 2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    shading = 0.08 * np.sin(2 * np.pi * xx / (1.7 * w)) + 0.05 * (yy / h)   # slow illumination
    melanin = np.zeros((h, w))
    hemo = 0.03 * np.sin(2 * np.pi * yy / (0.9 * h))
    # pores: 0.2-0.5 mm dark dots in shading
    for _ in range(max(4, h * w // 2500)):
        cy, cx = rng.uniform(4, h - 4), rng.uniform(4, w - 4)
        shading += rng.uniform(0.06, 0.15) * blob(h, w, cy, cx, rng.uniform(1.2, 2.8))
    # pigmented macules (3-6 mm) and a red patch (8 mm)
    for cy, cx, d_mm, amp in ((0.3, 0.3, 4.0, 0.30), (0.7, 0.6, 6.0, 0.20), (0.5, 0.85, 3.0, 0.35)):
        melanin += amp * blob(h, w, cy * h, cx * w, d_mm * 5.0)
    hemo += 0.25 * blob(h, w, 0.65 * h, 0.25 * w, 40.0)
    # atrophic scar, 3 mm: occlusion dip + directional-light dipole (lit from the left)
    cy, cx = 0.35 * h, 0.65 * w
    dip = blob(h, w, cy, cx, 15.0)
    shading += 0.08 * dip + 0.06 * np.gradient(dip, axis=1) * 15.0
    od = (base[:, None, None] + melanin[None] * mel_dir[:, None, None]
          + hemo[None] * hb_dir[:, None, None] + shading[None] * one[:, None, None])
    od += rng.normal(0.0, 0.004, size=od.shape)
    return od


class Runner:
    def __init__(self, threads=2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(ONNX_PATH), so, providers=["CPUExecutionProvider"])

    def __call__(self, srgb):
        return self.sess.run(["maps"], {"srgb": srgb})[0]


def check_sha(manifest):
    digest = hashlib.sha256(ONNX_PATH.read_bytes()).hexdigest()
    record("sha256(onnx) == manifest", digest[:16] + "...", "equal", digest == manifest["sha256"])


def check_reference(run, params, a_matrix, names):
    """(a) ORT vs NumPy reference."""
    for (h, w) in ((512, 512), (256, 384), (128, 128)):
        x = to_input(synthetic_skin_od(h, w, a_matrix, seed=h + w))
        got, want = run(x), ref.run(x, params)
        diffs = np.abs(got - want).max(axis=(0, 2, 3))
        worst = int(np.argmax(diffs))
        record(f"(a) ORT vs NumPy {h}x{w} (worst: {names[worst]})", float(diffs.max()),
               f"<= {TOL:g}", bool(diffs.max() <= TOL))


def tiled_run(run, x, margin, n_y, n_x):
    """Split into n_y x n_x tiles, extend each by `margin` (clipped at the image), stitch cores."""
    _, _, h, w = x.shape
    out = np.zeros((1, 8, h, w), dtype=np.float32)
    ys = np.linspace(0, h, n_y + 1).astype(int)
    xs = np.linspace(0, w, n_x + 1).astype(int)
    for i in range(n_y):
        for j in range(n_x):
            y0, y1, x0, x1 = ys[i], ys[i + 1], xs[j], xs[j + 1]
            ty0, ty1 = max(0, y0 - margin), min(h, y1 + margin)
            tx0, tx1 = max(0, x0 - margin), min(w, x1 + margin)
            tile = run(np.ascontiguousarray(x[:, :, ty0:ty1, tx0:tx1]))
            out[:, :, y0:y1, x0:x1] = tile[:, :, y0 - ty0:y1 - ty0, x0 - tx0:x1 - tx0]
    return out


def check_tiling(run, params, manifest, a_matrix, names):
    """(b) tiled == untiled; impulse reach <= manifest claim."""
    margin = int(manifest["tile_overlap_px"])
    h, w = 384, 1024
    x = to_input(synthetic_skin_od(h, w, a_matrix, seed=11))
    full = run(x)
    for (ny, nx) in ((1, 2), (2, 2)):
        if ny == 2:
            x2 = to_input(synthetic_skin_od(768, 1024, a_matrix, seed=12))
            full2 = run(x2)
            d = float(np.abs(tiled_run(run, x2, margin, ny, nx) - full2).max())
            label = f"(b) tiled 2x2 (768x1024, margin {margin}) vs untiled"
        else:
            d = float(np.abs(tiled_run(run, x, margin, ny, nx) - full).max())
            label = f"(b) tiled 1x2 (384x1024, margin {margin}) vs untiled"
        record(label, d, f"<= {TOL:g}", d <= TOL)
    # emulate the Rust tiler (src/model.rs): mirror-pad the whole image by `margin`, then
    # up to a multiple of 32; windows of tile + 2*margin at multiples of `tile`, clipped.
    hr, wr, tile_sz = 700, 1000, 512
    xr = to_input(synthetic_skin_od(hr, wr, a_matrix, seed=13))
    m32 = int(manifest["input"]["size_multiple"])
    ph = -(-(hr + 2 * margin) // m32) * m32
    pw = -(-(wr + 2 * margin) // m32) * m32
    padded = np.pad(xr, ((0, 0), (0, 0), (margin, ph - hr - margin), (margin, pw - wr - margin)),
                    mode="reflect")
    want = run(padded)[:, :, margin:margin + hr, margin:margin + wr]
    got = np.zeros_like(want)
    for ty in range(0, hr, tile_sz):
        for tx in range(0, wr, tile_sz):
            y1, x1 = min(ty + tile_sz + 2 * margin, ph), min(tx + tile_sz + 2 * margin, pw)
            win = run(np.ascontiguousarray(padded[:, :, ty:y1, tx:x1]))
            ih, iw = min(tile_sz, hr - ty), min(tile_sz, wr - tx)
            got[:, :, ty:ty + ih, tx:tx + iw] = win[:, :, margin:margin + ih, margin:margin + iw]
    d = float(np.abs(got - want).max())
    record(f"(b) Rust-tiler scheme 700x1000, tile {tile_sz}, vs untiled", d, f"<= {TOL:g}", d <= TOL)

    small = margin // 4
    d = float(np.abs(tiled_run(run, x, small, 1, 2) - full).max())
    record(f"(b) control: margin {small} must NOT match", d, f"> {TOL:g}", d > TOL)

    # exact dependency reach with single-pixel impulses at all pyramid phases
    claimed = manifest["tiling"]["per_channel_reach_px"]
    hh, ww = 128, 512
    base = to_input(synthetic_skin_od(hh, ww, a_matrix, seed=5))
    b_out = ref.run(base, params)
    measured = {n: 0 for n in names}
    for phase in range(8):
        xi = base.copy()
        cx = ww // 2 + phase
        xi[0, :, hh // 2, cx] = np.clip(xi[0, :, hh // 2, cx] - 0.2, 0.05, 1.0)
        diff = np.abs(ref.run(xi, params) - b_out)[0, :, hh // 2, :]
        for c, n in enumerate(names):
            nz = np.nonzero(diff[c] > 0)[0]
            if nz.size:
                measured[n] = max(measured[n], int(np.max(np.abs(nz - cx))))
    ok = all(measured[n] <= claimed[n] for n in names) and max(measured.values()) <= margin
    record("(b) impulse reach (px) <= manifest per channel",
           " ".join(f"{measured[n]}" for n in names),
           "claim " + " ".join(str(claimed[n]) for n in names), ok)


def check_invariances(run, a_matrix, pore_w, names):
    """(c) exposure / white balance / chromophore-shading separation."""
    h, w = 256, 256
    od = synthetic_skin_od(h, w, a_matrix, seed=3)
    lin = np.exp(-od)
    assert 0.02 < lin.min() and lin.max() < 0.76, (lin.min(), lin.max())
    x0 = to_input(od)
    out0 = run(x0)
    ch = {n: i for i, n in enumerate(names)}
    derived = [ch[n] for n in names[3:]]

    for k in (0.7, 1.3):
        out = run(linear_to_srgb(lin * k).astype(np.float32)[None])
        d = float(np.abs(out[:, derived] - out0[:, derived]).max())
        record(f"(c) exposure x{k}: max |d ch3-{len(names) - 1}|", d, f"< {TOL:g}", d < TOL)
        dm = float(np.abs(out[:, :2] - out0[:, :2]).max())
        record(f"(c) exposure x{k}: max |d melanin, hemoglobin|", dm, f"< {TOL:g}", dm < TOL)
        ds = float(np.abs((out[:, 2] - out0[:, 2]) + np.log(k)).max())
        record(f"(c) exposure x{k}: shading shift == -ln k", ds, f"< {TOL:g}", ds < TOL)

    gains = np.array([1.15, 1.0, 0.85])[:, None, None]
    out = run(linear_to_srgb(lin * gains).astype(np.float32)[None])
    d = float(np.abs(out[:, derived] - out0[:, derived]).max())
    record("(c) white-balance cast (1.15,1,0.85): |d ch3-7|", d, f"< {TOL:g}", d < TOL)

    spot = blob(h, w, h / 2, w / 2, 15.0)                     # 3 mm smooth spot
    mel_dir, one = a_matrix[:, 0], a_matrix[:, 2]
    out_s = run(to_input(od + 0.15 * spot[None] * one[:, None, None]))
    ds = out_s - out0
    # The pore band sees u . OD, not the Tsumura shading: a chromophore spot enters it
    # exactly as a grey spot of depth (u . direction) x amplitude would (it is linear).
    grey_pore = ds[0, ch["pore_response"]] / 0.15

    out_m = run(to_input(od + 0.3 * spot[None] * mel_dir[:, None, None]))
    dm = out_m - out0
    peak = float(dm[0, ch["melanin"], h // 2, w // 2])
    record("(c) melanin +0.3 spot: melanin change at centre", peak, "0.3 +- 1e-3",
           abs(peak - 0.3) < 1e-3)
    for n in ("hemoglobin", "shading", "scar_response", "hemoglobin_excess", "scar_energy"):
        v = float(np.abs(dm[0, ch[n]]).max())
        record(f"(c) melanin spot -> |d {n}|", v, f"< {TOL:g}", v < TOL)
    leak = float(pore_w @ mel_dir) * 0.3
    v = float(np.abs(dm[0, ch["pore_response"]] - leak * grey_pore).max())
    record("(c) melanin spot -> d pore_response == (u.s_mel) x grey", v, f"< {TOL:g}", v < TOL)
    v = float(dm[0, ch["melanin_excess"], h // 2, w // 2])
    record("(c) melanin spot -> melanin_excess at centre", v, "> 0.2", v > 0.2)

    hb_dir = a_matrix[:, 1]
    dh = run(to_input(od + 0.2 * spot[None] * hb_dir[:, None, None])) - out0
    peak = float(dh[0, ch["hemoglobin"], h // 2, w // 2])
    record("(c) hemoglobin +0.2 spot: hemoglobin change at centre", peak, "0.2 +- 1e-3",
           abs(peak - 0.2) < 1e-3)
    v = max(float(np.abs(dh[0, ch[n]]).max()) for n in
            ("melanin", "shading", "scar_response", "melanin_excess", "scar_energy"))
    record("(c) hemoglobin spot -> max |d ch 0,2,4,5,7|", v, f"< {TOL:g}", v < TOL)
    leak = float(pore_w @ hb_dir) * 0.2
    v = float(np.abs(dh[0, ch["pore_response"]] - leak * grey_pore).max())
    record("(c) hemoglobin spot -> d pore_response == (u.s_hb) x grey", v, f"< {TOL:g}", v < TOL)

    for n in ("melanin", "hemoglobin", "melanin_excess", "hemoglobin_excess"):
        v = float(np.abs(ds[0, ch[n]]).max())
        record(f"(c) grey dip 0.15 -> |d {n}|", v, f"< {TOL:g}", v < TOL)
    v = float(ds[0, ch["scar_response"], h // 2, w // 2])
    record("(c) grey dip 0.15 -> scar_response at centre", v, "> 0.05", v > 0.05)


def check_timing(run):
    """(d) onnxruntime wall time on 2 threads."""
    rng = np.random.default_rng(0)
    for n, reps in ((1024, 5), (2048, 3)):
        x = (0.45 + 0.3 * rng.random((1, 3, n, n))).astype(np.float32)
        run(x)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t0)
        med, best = statistics.median(times), min(times)
        mp = n * n / 1e6
        record(f"(d) ORT time {n}x{n} (2 threads, median/min of {reps})",
               f"{med * 1000:.0f}/{best * 1000:.0f} ms = {med / mp * 1000:.0f} ms/MP",
               "< 1000 ms/MP", med / mp < 1.0)


def check_determinism():
    digests = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("build_skin_model.py", "skin_reference.py"):
            shutil.copy(HERE / name, Path(tmp) / name)
        for _ in range(2):
            subprocess.run([sys.executable, "-B", str(Path(tmp) / "build_skin_model.py")],
                           check=True, capture_output=True)
            digests.append(tuple(hashlib.sha256((Path(tmp) / f).read_bytes()).hexdigest()
                                 for f in ("skin-v1.onnx", "skin-v1.json")))
    here = tuple(hashlib.sha256((HERE / f).read_bytes()).hexdigest()
                 for f in ("skin-v1.onnx", "skin-v1.json"))
    record("rebuild x2 byte-identical (onnx, json)", digests[0][0][:16] + "...",
           "== files here", digests[0] == digests[1] == here)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--determinism", action="store_true", help="also rebuild twice and compare bytes")
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args()

    manifest = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    params = manifest["graph"]
    names = [c["name"] for c in manifest["outputs"]["channels"]]
    a_matrix = np.asarray(params["decomposition"]["matrix"], dtype=np.float64)
    run = Runner(threads=2)

    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}; channels: {', '.join(names)}")
    check_sha(manifest)
    check_reference(run, params, a_matrix, names)
    check_tiling(run, params, manifest, a_matrix, names)
    pore_w = np.asarray(params["decomposition"]["pore_weights"], dtype=np.float64)
    check_invariances(run, a_matrix, pore_w, names)
    if not args.skip_timing:
        check_timing(run)
    if args.determinism:
        check_determinism()

    w0 = max(len(r[0]) for r in ROWS)
    w1 = max(len(r[1]) for r in ROWS)
    w2 = max(len(r[2]) for r in ROWS)
    print(f"{'check':<{w0}}  {'value':>{w1}}  {'limit':<{w2}}  result")
    print("-" * (w0 + w1 + w2 + 12))
    for t, v, lim, s in ROWS:
        print(f"{t:<{w0}}  {v:>{w1}}  {lim:<{w2}}  {s}")

    print("\nscale selectivity (channel value at the centre of a disk of OD depth 1):")
    rows = manifest["disk_center_gain"]["rows"]
    print(f"{'diameter mm':>11}  {'pore':>6}  {'scar':>6}  {'mel_excess':>10}")
    for r in rows:
        print(f"{r['diameter_mm']:>11}  {r['pore_response']:>6.3f}  {r['scar_response']:>6.3f}  "
              f"{r['melanin_excess']:>10.3f}")

    if FAILED:
        print(f"\nFAILED: {len(FAILED)} check(s): " + "; ".join(FAILED))
        sys.exit(1)
    print(f"\nall {sum(1 for r in ROWS if r[3] == 'PASS')} checks passed")


if __name__ == "__main__":
    main()
