#!/usr/bin/env python3
"""Rebuild the face detector and face mesh ONNX models from MediaPipe's TFLite files.

Usage (from anywhere; any python3 with the venv module starts it; verified with 3.11.7):

    python3 models/face/convert_face_models.py [--venv DIR] [--wheel FILE]
                                               [--photo FILE] [--out DIR] [--work DIR]

    --venv DIR   virtualenv holding the pinned converter toolchain (PINNED_REQUIREMENTS).
                 Default: $DERMATRACK_CONVERT_VENV, else /tmp/dermatrack-face-convenv.
                 Created if missing; the pins are (re)installed unless --no-install.
    --wheel FILE use an already downloaded mediapipe wheel instead of `pip download`
                 (its sha256 is checked all the same).
    --photo FILE real face photo for the verification / reference tensors.
                 Default: <repo>/../shared/photos/london_038_neutral.jpg
    --out DIR    where the deliverables go. Default: this script's directory.
    --work DIR   scratch (downloaded wheel, extracted .tflite). Default: /tmp/dermatrack-face-work.

Writes into --out:
    face_detection_short_range.onnx, face_landmark.onnx   converted models (opset 17)
    face_models.json        provenance + I/O contract + verification results
    reference_outputs.json  expected TFLite outputs for ref_*.f32 (for the Rust ort test)
    ref_det_input.f32, ref_mesh_input.f32   raw little-endian float32 NHWC input tensors
    LICENSE-APACHE-2.0.txt, NOTICE.md

tf2onnx is not byte-deterministic (its generated constant names change from run to run),
so a rerun gives new file hashes. What must stay stable is behaviour: every run checks the
ONNX outputs against the TFLite interpreter on the same inputs (max abs diff <= 1e-3), and
face_models.json also records a name-independent digest of each graph.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

MEDIAPIPE_VERSION = "0.10.21"
WHEEL_NAME = f"mediapipe-{MEDIAPIPE_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
# The wheel is only an archive to us: pin one concrete build so the sha256 above is meaningful,
# independently of the Python that runs this script.
PIP_DOWNLOAD_ARGS = [
    "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
    "--platform", "manylinux_2_28_x86_64", "--implementation", "cp", "--abi", "cp311",
    f"mediapipe=={MEDIAPIPE_VERSION}",
]
DETECTOR_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
MESH_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
LICENSE_MEMBER = f"mediapipe-{MEDIAPIPE_VERSION}.dist-info/LICENSE"

# The combination that was verified. pillow only matters for the reference tensors (its
# resampling decides their exact bytes); the rest decides the conversion and the check.
PINNED_REQUIREMENTS = [
    "tensorflow-cpu==2.21.0",
    "tf2onnx==1.17.0",
    "onnx==1.23.2",
    "onnxruntime==1.31.1",
    "numpy==2.4.6",
    "protobuf==7.36.2",
    "pillow==13.0.0",
]
OPSET = 17
TOLERANCE = 1e-3
RANDOM_SEED = 20240601
N_RANDOM = 3

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_PHOTO = REPO_ROOT.parent / "shared" / "photos" / "london_038_neutral.jpg"
DEFAULT_VENV = "/tmp/dermatrack-face-convenv"
DEFAULT_WORK = "/tmp/dermatrack-face-work"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(msg):
    print(f"[convert_face_models] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Bootstrap: main() needs TensorFlow & co. at pinned versions, so hop into the venv first.
# --------------------------------------------------------------------------------------------

def ensure_venv(args):
    venv = Path(args.venv).resolve()
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv:
        return  # already re-executed inside it
    if not py.exists():
        log(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not args.no_install:
        log("installing pinned requirements (no-op when already satisfied)")
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PINNED_REQUIREMENTS], check=True)
    # Re-exec rather than import from the venv, so that the venv's own site-packages and
    # compiled extensions are the only ones in play.
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


# --------------------------------------------------------------------------------------------
# Provenance: wheel -> .tflite
# --------------------------------------------------------------------------------------------

def fetch_wheel(args, work):
    if args.wheel:
        wheel = Path(args.wheel).resolve()
    else:
        dl = work / "wheel"
        dl.mkdir(parents=True, exist_ok=True)
        wheel = dl / WHEEL_NAME
        if not (wheel.exists() and sha256_file(wheel) == WHEEL_SHA256):
            log("pip download mediapipe wheel")
            subprocess.run([sys.executable, "-m", "pip", *PIP_DOWNLOAD_ARGS, "-d", str(dl)],
                           check=True)
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        sys.exit(f"wheel sha256 mismatch: {wheel} has {digest}, expected {WHEEL_SHA256}")
    return wheel


def extract(wheel, work):
    """Pull the two models and the license out of the wheel (zipfile: unzip may be absent)."""
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for member in (DETECTOR_MEMBER, MESH_MEMBER):
            dst = work / Path(member).name
            dst.write_bytes(z.read(member))
            out[member] = dst
        license_text = z.read(LICENSE_MEMBER).decode("utf-8")
    return out, license_text


def apache_text_only(license_text):
    # MediaPipe's LICENSE is the Apache-2.0 text followed by a "=====" separated notice for
    # code (a UTF-8 helper) that these models do not contain; keep only the Apache part.
    apache = license_text.split("\n====")[0].rstrip() + "\n"
    assert "Apache License" in apache and "Version 2.0, January 2004" in apache
    assert "END OF TERMS AND CONDITIONS" in apache
    return apache


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------

def convert(tflite, onnx_out):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.monotonic()
    # tf2onnx writes "converted from <path as given>" into the graph doc_string: run it next
    # to the file so that no machine-specific directory ends up in the committed model.
    proc = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--tflite", tflite.name,
         "--output", str(onnx_out), "--opset", str(OPSET)],
        cwd=tflite.parent, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit(f"tf2onnx failed on {tflite}")
    return seconds


def graph_digest(onnx_path):
    """sha256 of the graph with tf2onnx's run-dependent tensor names replaced by canonical
    ones (order of first use), so two conversions that differ only in naming compare equal."""
    import onnx

    model = onnx.load(str(onnx_path))
    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    mapping = {}

    def canon(name):
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = f"t{len(mapping)}"
        return mapping[name]

    for node in g.node:
        node.name = ""
        node.input[:] = [canon(n) for n in node.input]
        node.output[:] = [canon(n) for n in node.output]
    for init in g.initializer:
        init.name = canon(init.name)
    g.initializer.sort(key=lambda t: t.name)
    del g.value_info[:]
    model.producer_version = ""
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def io_spec(onnx_path):
    import onnx

    model = onnx.load(str(onnx_path))

    def spec(v):
        t = v.type.tensor_type
        return {
            "name": v.name,
            "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param
                      for d in t.shape.dim],
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
        }

    init_names = {i.name for i in model.graph.initializer}
    return {
        "ir_version": model.ir_version,
        "opset_imports": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [spec(v) for v in model.graph.input if v.name not in init_names],
        "outputs": [spec(v) for v in model.graph.output],
    }


# --------------------------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------------------------

class TfliteRunner:
    """tf.lite.Interpreter with its default (XNNPACK) CPU path: what MediaPipe itself runs."""

    def __init__(self, path):
        import tensorflow as tf

        self.it = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.outs = self.it.get_output_details()

    def __call__(self, x):
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        return {o["name"]: self.it.get_tensor(o["index"]).copy() for o in self.outs}


class OnnxRunner:
    def __init__(self, path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.inp = self.sess.get_inputs()[0].name
        self.names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, x):
        return dict(zip(self.names, self.sess.run(None, {self.inp: x})))


def compare(tfl, onx, x):
    """Max abs diff per output; ONNX output names must match TFLite's one-for-one."""
    a, b = tfl(x), onx(x)
    if set(a) != set(b):
        sys.exit(f"output name mismatch: tflite {sorted(a)} vs onnx {sorted(b)}")
    diffs = {}
    for name in a:
        if a[name].shape != b[name].shape:
            sys.exit(f"{name}: shape {a[name].shape} (tflite) vs {b[name].shape} (onnx)")
        diffs[name] = float(abs(a[name].astype("float64") - b[name]).max())
    return a, diffs


# --------------------------------------------------------------------------------------------
# Detector post-processing (MediaPipe face_detection_short_range graph options)
# --------------------------------------------------------------------------------------------

DET_SIZE = 128
MESH_SIZE = 192
ANCHOR_STRIDES = [8, 16, 16, 16]
ANCHOR_OFFSET = 0.5
DET_SCORE_THRESHOLD = 0.5
DET_SCORE_CLIP = 100.0
NMS_IOU = 0.3
KEYPOINT_NAMES = ["right_eye", "left_eye", "nose_tip", "mouth_center",
                  "right_ear_tragion", "left_ear_tragion"]


def ssd_anchors():
    """SsdAnchorsCalculator with fixed_anchor_size: only centres matter (w = h = 1).
    Consecutive layers with the same stride share one grid; each layer contributes two
    anchors per cell (aspect 1.0 plus the interpolated scale)."""
    import numpy as np

    centres = []
    layer = 0
    while layer < len(ANCHOR_STRIDES):
        stride = ANCHOR_STRIDES[layer]
        same = 0
        while layer + same < len(ANCHOR_STRIDES) and ANCHOR_STRIDES[layer + same] == stride:
            same += 1
        grid = -(-DET_SIZE // stride)
        per_cell = 2 * same
        for y in range(grid):
            for x in range(grid):
                centres += [((x + ANCHOR_OFFSET) / grid, (y + ANCHOR_OFFSET) / grid)] * per_cell
        layer += same
    a = np.array(centres, dtype=np.float64)
    assert a.shape == (896, 2)
    return a


def decode_detections(regressors, scores):
    """Raw outputs -> detections in the 128x128 input frame, normalised to [0,1].
    Regressor layout per anchor: cx, cy, w, h, then 6 (x, y) keypoints, all in input pixels
    relative to the anchor centre (reverse_output_order: x before y)."""
    import numpy as np

    anchors = ssd_anchors()
    r = regressors.reshape(896, 16).astype(np.float64) / DET_SIZE
    raw = scores.reshape(896).astype(np.float64)
    prob = 1.0 / (1.0 + np.exp(-np.clip(raw, -DET_SCORE_CLIP, DET_SCORE_CLIP)))
    cx, cy = r[:, 0] + anchors[:, 0], r[:, 1] + anchors[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = r[:, 4:].reshape(896, 6, 2) + anchors[:, None, :]
    keep = np.nonzero(prob >= DET_SCORE_THRESHOLD)[0]
    return weighted_nms(boxes[keep], kps[keep], prob[keep])


def weighted_nms(boxes, kps, prob):
    """MediaPipe's WEIGHTED non-max suppression: each cluster (IoU > 0.3 with its best
    member) becomes the score-weighted mean of its boxes and keypoints."""
    import numpy as np

    order = list(np.argsort(-prob))
    out = []
    while order:
        best = order[0]
        b = boxes[order]
        ix0 = np.maximum(b[:, 0], boxes[best, 0]); iy0 = np.maximum(b[:, 1], boxes[best, 1])
        ix1 = np.minimum(b[:, 2], boxes[best, 2]); iy1 = np.minimum(b[:, 3], boxes[best, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        iou = inter / (area + area[0] - inter)
        members = [order[i] for i in np.nonzero(iou > NMS_IOU)[0]]
        wts = prob[members][:, None]
        out.append({
            "score": float(prob[best]),
            "box": (boxes[members] * wts).sum(0) / wts.sum(),
            "keypoints": (kps[members] * wts[:, :, None]).sum(0) / wts.sum(),
            "cluster_size": len(members),
        })
        order = [i for i in order if i not in members]
    return out


# --------------------------------------------------------------------------------------------
# Deterministic inputs from a real face
# --------------------------------------------------------------------------------------------

def letterbox(img, size):
    """Aspect-preserving resize into size x size, zero (black) padding, as MediaPipe's
    ImageToTensorCalculator(keep_aspect_ratio, BORDER_ZERO). Returns the RGB uint8 array and
    the transform needed to map normalised detector coordinates back to image pixels."""
    import numpy as np
    from PIL import Image

    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size))
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), (px, py))
    return np.asarray(canvas), {"scale": scale, "pad_x": px, "pad_y": py}


def to_image_px(xy_norm, tf):
    return (xy_norm * DET_SIZE - [tf["pad_x"], tf["pad_y"]]) / tf["scale"]


def face_crop(img, box_px, size):
    """Square crop 1.5x the detector box, centred on it, no rotation (the face-landmark
    graph's ROI minus the eye-line rotation, which is ~0 for a frontal studio photo).
    PIL pads out-of-image areas with black."""
    import numpy as np
    from PIL import Image

    x0, y0, x1, y1 = box_px
    side = 1.5 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rect = [round(cx - side / 2), round(cy - side / 2)]
    rect += [rect[0] + round(side), rect[1] + round(side)]
    crop = img.crop(tuple(rect)).resize((size, size), Image.BILINEAR)
    return np.asarray(crop), rect


# --------------------------------------------------------------------------------------------

def f32(x):
    """Shortest decimal that round-trips to the same float32, to keep JSON small."""
    import numpy as np

    return float(str(np.float32(x)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--venv", default=os.environ.get("DERMATRACK_CONVERT_VENV", DEFAULT_VENV))
    ap.add_argument("--no-install", action="store_true",
                    help="use the venv as is (no pip install of the pins)")
    ap.add_argument("--wheel", help="local copy of the mediapipe wheel (sha256-checked)")
    ap.add_argument("--photo", default=str(DEFAULT_PHOTO), help="frontal face photo")
    ap.add_argument("--out", default=str(HERE), help="output directory")
    ap.add_argument("--work", default=DEFAULT_WORK, help="scratch directory")
    args = ap.parse_args()
    ensure_venv(args)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings
    # tf.lite.Interpreter still works in TF 2.21 and is the reference MediaPipe ran against.
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    import numpy as np
    import onnx
    import onnxruntime
    import PIL
    import tensorflow as tf
    import tf2onnx
    from PIL import Image

    t_start = time.monotonic()
    out, work = Path(args.out).resolve(), Path(args.work).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    wheel = fetch_wheel(args, work)
    tflites, license_text = extract(wheel, work)
    (out / "LICENSE-APACHE-2.0.txt").write_text(apache_text_only(license_text))

    models = {
        "detector": {"member": DETECTOR_MEMBER, "onnx": out / "face_detection_short_range.onnx"},
        "mesh": {"member": MESH_MEMBER, "onnx": out / "face_landmark.onnx"},
    }
    for m in models.values():
        m["tflite"] = tflites[m["member"]]
        log(f"tf2onnx {m['tflite'].name} -> {m['onnx'].name}")
        m["convert_seconds"] = round(convert(m["tflite"], m["onnx"]), 2)
        m["io"] = io_spec(m["onnx"])
        assert m["io"]["opset_imports"]["ai.onnx"] == OPSET
        m["tfl"] = TfliteRunner(m["tflite"])
        m["ort"] = OnnxRunner(m["onnx"])
        m["diffs"] = {}

    det, mesh = models["detector"], models["mesh"]

    def check(m, label, x):
        ref, diffs = compare(m["tfl"], m["ort"], x)
        m["diffs"][label] = diffs
        worst = max(diffs.values())
        log(f"  {m['onnx'].name} [{label}] max abs diff {worst:.3g}")
        if worst > TOLERANCE:
            sys.exit(f"{m['onnx'].name} [{label}]: max abs diff {worst} > {TOLERANCE}")
        return ref

    # --- Real face: detector on the letterboxed photo -------------------------------------
    photo = Path(args.photo)
    if not photo.is_file():
        sys.exit(f"face photo not found: {photo} (pass --photo)")
    img = Image.open(photo).convert("RGB")
    det_rgb, lb = letterbox(img, DET_SIZE)
    det_x = (det_rgb.astype(np.float32) / 127.5 - 1.0)[None]  # [-1, 1]
    det_ref = check(det, "face_photo", det_x)
    dets = decode_detections(det_ref["regressors"], det_ref["classificators"])
    if len(dets) != 1:
        sys.exit(f"expected exactly one face in {photo.name}, got {len(dets)}")
    face = dets[0]
    box_px = np.concatenate([to_image_px(face["box"][:2], lb), to_image_px(face["box"][2:], lb)])
    kp_px = to_image_px(face["keypoints"], lb)
    kp = dict(zip(KEYPOINT_NAMES, kp_px))

    # Keypoint order, checked on an unmirrored photo: the subject's right side is on the
    # image's left, so x grows right_tragion < right_eye < nose < left_eye < left_tragion,
    # and y grows eyes < nose < mouth.
    x = {k: v[0] for k, v in kp.items()}
    y = {k: v[1] for k, v in kp.items()}
    order_checks = {
        "right_ear_tragion.x < right_eye.x": x["right_ear_tragion"] < x["right_eye"],
        "right_eye.x < nose_tip.x < left_eye.x": x["right_eye"] < x["nose_tip"] < x["left_eye"],
        "left_eye.x < left_ear_tragion.x": x["left_eye"] < x["left_ear_tragion"],
        "eyes.y < nose_tip.y < mouth_center.y":
            max(y["right_eye"], y["left_eye"]) < y["nose_tip"] < y["mouth_center"],
        "mouth_center.x between the eyes": x["right_eye"] < x["mouth_center"] < x["left_eye"],
    }
    if not all(order_checks.values()):
        sys.exit(f"keypoint order check failed: {order_checks}\n{kp}")
    log(f"  face score {face['score']:.4f}, box px {np.round(box_px, 1).tolist()}")

    # --- Real face: mesh on a crop around the detection -----------------------------------
    mesh_rgb, crop_rect = face_crop(img, box_px, MESH_SIZE)
    mesh_x = (mesh_rgb.astype(np.float32) / 255.0)[None]  # [0, 1]
    mesh_ref = check(mesh, "face_crop", mesh_x)
    # tf2onnx keeps the TFLite tensor names (conv2d_21 / conv2d_31); pick them by size so a
    # renaming upstream cannot silently swap landmarks and presence.
    mesh_outs = {o["name"]: o for o in mesh["io"]["outputs"]}
    lm_name = next(n for n, o in mesh_outs.items() if o["shape"][-1] == 468 * 3)
    flag_name = next(n for n in mesh_outs if n != lm_name)
    lms = mesh_ref[lm_name].reshape(468, 3).astype(np.float64)
    presence_logit = float(mesh_ref[flag_name].reshape(()))
    presence = 1.0 / (1.0 + np.exp(-presence_logit))
    if presence < 0.5:
        sys.exit(f"mesh does not see a face in the crop (presence {presence:.3f})")
    # Cross-check both models' semantics: mesh eye centres (mean of the canonical-mesh eye
    # corners 33/133 and 263/362) and nose tip (1) must land on the detector's keypoints.
    crop_scale = (crop_rect[2] - crop_rect[0]) / MESH_SIZE
    lm_px = lms[:, :2] * crop_scale + crop_rect[:2]
    face_w = box_px[2] - box_px[0]
    agreement = {
        "right_eye": float(np.linalg.norm(lm_px[[33, 133]].mean(0) - kp["right_eye"]) / face_w),
        "left_eye": float(np.linalg.norm(lm_px[[263, 362]].mean(0) - kp["left_eye"]) / face_w),
        "nose_tip": float(np.linalg.norm(lm_px[1] - kp["nose_tip"]) / face_w),
    }
    if max(agreement.values()) > 0.1:
        sys.exit(f"mesh and detector disagree: {agreement}")

    # --- Random inputs over each model's whole input range --------------------------------
    rng = np.random.default_rng(RANDOM_SEED)
    for i in range(N_RANDOM):
        check(det, f"random_{i}", rng.uniform(-1, 1, (1, DET_SIZE, DET_SIZE, 3)).astype(np.float32))
        check(mesh, f"random_{i}", rng.uniform(0, 1, (1, MESH_SIZE, MESH_SIZE, 3)).astype(np.float32))

    # --- Reference tensors for the Rust test ----------------------------------------------
    det_x.astype("<f4").tofile(out / "ref_det_input.f32")
    mesh_x.astype("<f4").tofile(out / "ref_mesh_input.f32")
    raw_scores = det_ref["classificators"].reshape(896)
    top = np.argsort(-raw_scores, kind="stable")[:6]
    regs = det_ref["regressors"].reshape(896, 16)

    photo_desc = f"{photo.name} (sha256 {sha256_file(photo)}, {img.size[0]}x{img.size[1]})"
    reference = {
        "about": "Expected outputs of the MediaPipe TFLite models (tf.lite.Interpreter, default "
                 "CPU/XNNPACK path) on the raw input tensors next to this file. Feed the same "
                 "bytes to the ONNX models and compare within tolerance_abs.",
        "tolerance_abs": TOLERANCE,
        "generated_by": "models/face/convert_face_models.py",
        "tensor_file_format": "raw little-endian float32, C order, NHWC [1,H,W,3] RGB, no header",
        "detector": {
            "model": det["onnx"].name,
            "input_file": "ref_det_input.f32",
            "input_file_sha256": sha256_file(out / "ref_det_input.f32"),
            "input_name": det["io"]["inputs"][0]["name"],
            "input_shape": [1, DET_SIZE, DET_SIZE, 3],
            "input_built_from": f"{photo_desc}, letterboxed to 128x128 (PIL bilinear, black "
                                "padding - none needed for a square photo), x/127.5-1",
            "top5_note": "Compare at these anchor indices (do not re-sort): the ranking of "
                         "near-equal scores is not part of the contract. score_sigmoid is "
                         "informational. 6th_raw_score is the next-best anchor.",
            "top5": [{"anchor_index": int(i), "raw_score": f32(raw_scores[i]),
                      "score_sigmoid": round(float(1 / (1 + np.exp(-raw_scores[i]))), 6),
                      "regressors": [f32(v) for v in regs[i]]} for i in top[:5]],
            "6th_raw_score": f32(raw_scores[top[5]]),
            "decoded_face_in_input_frame": {
                "score": round(face["score"], 6),
                "box_xyxy_norm": [round(float(v), 5) for v in face["box"]],
                "keypoints_xy_norm": {k: [round(float(v), 5) for v in p]
                                      for k, p in zip(KEYPOINT_NAMES, face["keypoints"])},
            },
        },
        "mesh": {
            "model": mesh["onnx"].name,
            "input_file": "ref_mesh_input.f32",
            "input_file_sha256": sha256_file(out / "ref_mesh_input.f32"),
            "input_name": mesh["io"]["inputs"][0]["name"],
            "input_shape": [1, MESH_SIZE, MESH_SIZE, 3],
            "input_built_from": f"{photo_desc}: square crop {crop_rect} (x0,y0,x1,y1 px; 1.5x "
                                "the detected face box, centred, no rotation), resized to "
                                "192x192 (PIL bilinear), x/255",
            "landmarks_output": lm_name,
            "landmarks_shape": mesh_outs[lm_name]["shape"],
            "landmarks_xyz": [f32(v) for v in mesh_ref[lm_name].reshape(-1)],
            "presence_output": flag_name,
            "presence_logit": f32(presence_logit),
        },
    }
    (out / "reference_outputs.json").write_text(json.dumps(reference, indent=1) + "\n")

    # --- Manifest ---------------------------------------------------------------------------
    def model_entry(m, extra):
        return {
            "onnx_file": m["onnx"].name,
            "onnx_sha256": sha256_file(m["onnx"]),
            "onnx_graph_digest": graph_digest(m["onnx"]),
            "onnx_bytes": m["onnx"].stat().st_size,
            "source_tflite": m["member"],
            "source_tflite_sha256": sha256_file(m["tflite"]),
            "source_tflite_bytes": m["tflite"].stat().st_size,
            "source_weights": "float16 constants + DEQUANTIZE ops; tf2onnx folds them into "
                              "float32 initializers (exact), hence ~2x the TFLite size",
            "convert_seconds": m["convert_seconds"],
            **m["io"],
            **extra,
            "verification": {
                "against": "tf.lite.Interpreter (default CPU/XNNPACK) vs onnxruntime CPU",
                "tolerance_abs": TOLERANCE,
                "max_abs_diff": {label: {k: float(f"{v:.3g}") for k, v in d.items()}
                                 for label, d in m["diffs"].items()},
                "max_abs_diff_overall": float(
                    f"{max(v for d in m['diffs'].values() for v in d.values()):.3g}"),
            },
        }

    det_out_names = [o["name"] for o in det["io"]["outputs"]]
    assert det_out_names == ["regressors", "classificators"], det_out_names
    manifest = {
        "about": "MediaPipe face detector (short range) and 468-point face mesh, converted "
                 "TFLite -> ONNX by convert_face_models.py. ONNX bytes differ between runs "
                 "(tf2onnx naming); onnx_graph_digest ignores names, and verification is by "
                 "outputs.",
        "source": {
            "package": "mediapipe", "version": MEDIAPIPE_VERSION, "license": "Apache-2.0",
            "copyright": "Google LLC (The MediaPipe Authors)",
            "wheel": WHEEL_NAME, "wheel_sha256": WHEEL_SHA256,
            "fetched_with": "pip " + " ".join(PIP_DOWNLOAD_ARGS),
        },
        "toolchain": {
            "python": sys.version.split()[0], "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__,
            "command": f"python -m tf2onnx.convert --tflite IN --output OUT --opset {OPSET}",
            "opset": OPSET,
        },
        "verification_inputs": {
            "face_photo / face_crop": f"{photo_desc}; same tensors as ref_det_input.f32 / "
                                      "ref_mesh_input.f32",
            "random_N": f"numpy default_rng({RANDOM_SEED}); per i: detector uniform[-1,1) "
                        "then mesh uniform[0,1)",
        },
        "models": {
            "face_detector": model_entry(det, {
                "layout": "NHWC",
                "input_semantics": "RGB, 128x128, float32 in [-1,1] = pixel/127.5 - 1; "
                                   "letterbox (keep aspect, zero padding) the full image",
                "outputs_semantics": {
                    det_out_names[0]: "[1,896,16] per anchor: dx, dy, w, h, then 6 keypoints "
                                      "(x, y); input-pixel units (divide by 128), dx/dy and "
                                      "keypoints relative to the anchor centre",
                    det_out_names[1]: "[1,896,1] raw logit; score = sigmoid(clip(logit,"
                                      "-100,100))",
                },
                "anchors": {
                    "calculator": "SsdAnchors, fixed_anchor_size (w = h = 1, only centres)",
                    "input_size": [DET_SIZE, DET_SIZE], "strides": ANCHOR_STRIDES,
                    "offset": ANCHOR_OFFSET, "min_scale": 0.1484375, "max_scale": 0.75,
                    "layout": "stride 8: 16x16 grid, 2 anchors/cell (512); stride 16: 8x8 "
                              "grid, 6 anchors/cell (384); total 896; order grid row-major "
                              "(y outer, x inner), anchors of one cell consecutive; centre = "
                              "((x+0.5)/grid, (y+0.5)/grid)",
                    "count": 896,
                },
                "decode": {
                    "x_center": "dx/128 + anchor_x", "y_center": "dy/128 + anchor_y",
                    "width": "w/128", "height": "h/128",
                    "keypoint_k": "(kx/128 + anchor_x, ky/128 + anchor_y), k = 0..5",
                    "coordinates": "normalised to the 128x128 letterboxed input; undo the "
                                   "letterbox to get image coordinates",
                },
                "score_threshold": DET_SCORE_THRESHOLD, "score_activation": "sigmoid",
                "score_clip": DET_SCORE_CLIP,
                "nms": {"algorithm": "weighted", "iou_threshold": NMS_IOU},
                "keypoint_order": KEYPOINT_NAMES,
                "keypoint_order_note": "subject's right/left: in an unmirrored photo keypoint "
                                       "0 (right eye) is on the image's LEFT",
                "keypoint_order_verified_on": {
                    "photo": photo.name,
                    "score": round(face["score"], 4),
                    "box_xyxy_px": [round(float(v), 1) for v in box_px],
                    "keypoints_px": {k: [round(float(c), 1) for c in v] for k, v in kp.items()},
                    "checks": {k: bool(v) for k, v in order_checks.items()},
                    "mesh_agreement_dist_over_box_width": {k: round(v, 4)
                                                           for k, v in agreement.items()},
                },
            }),
            "face_mesh": model_entry(mesh, {
                "layout": "NHWC",
                "input_semantics": "RGB, 192x192, float32 in [0,1] = pixel/255; square crop "
                                   "around the face (MediaPipe: detector box scaled 1.5x, "
                                   "rotated so the eye line is horizontal)",
                "outputs_semantics": {
                    lm_name: "[1,1,1,1404] = 468 x (x, y, z) flattened point-major; x, y in "
                             "192-px input units; z relative depth on the same scale as x "
                             "(smaller = closer to camera)",
                    flag_name: "[1,1,1,1] face-presence logit; sigmoid > 0.5 = face present",
                },
                "landmark_count": 468,
                "presence_logit_on_reference_crop": round(presence_logit, 4),
            }),
        },
        "total_seconds": None,
    }
    manifest["total_seconds"] = round(time.monotonic() - t_start, 1)
    (out / "face_models.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_notice(out, manifest, photo.name)
    log(f"done in {manifest['total_seconds']} s; outputs in {out}")


def write_notice(out, manifest, photo_name):
    src, tc = manifest["source"], manifest["toolchain"]
    d, m = manifest["models"]["face_detector"], manifest["models"]["face_mesh"]
    (out / "NOTICE.md").write_text(f"""\
# Notice: face models

`face_detection_short_range.onnx` and `face_landmark.onnx` are derived from MediaPipe,
Copyright Google LLC (The MediaPipe Authors), licensed under the Apache License, Version 2.0
(full text: `LICENSE-APACHE-2.0.txt`).

Modification: each file is the MediaPipe TFLite model converted to ONNX (opset {tc['opset']})
with tf2onnx {tc['tf2onnx']} (TensorFlow {tc['tensorflow']}). The architecture is unchanged;
the float16 weights are stored as float32 (an exact widening). The conversion is reproduced by `convert_face_models.py`, which verifies the ONNX
outputs against the original TFLite models (max abs diff <= 1e-3); details in `face_models.json`.

Provenance:

| file | source in `{src['wheel']}` (sha256 `{src['wheel_sha256']}`) | source sha256 |
|---|---|---|
| `{d['onnx_file']}` | `{d['source_tflite']}` | `{d['source_tflite_sha256']}` |
| `{m['onnx_file']}` | `{m['source_tflite']}` | `{m['source_tflite_sha256']}` |

The test tensors `ref_det_input.f32` and `ref_mesh_input.f32` (and the outputs recorded in
`reference_outputs.json`) are derived from `{photo_name}` of the Face Research Lab London Set:
DeBruine, L., & Jones, B. (2017). *Face Research Lab London Set* (Version 5). figshare.
doi:10.6084/m9.figshare.5047666.v5. License: CC BY 4.0. Modification: resized / cropped and
converted to float tensors.
""")


if __name__ == "__main__":
    main()
