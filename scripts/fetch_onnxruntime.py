#!/usr/bin/env python3
"""Fetch the ONNX Runtime shared library that dermatrack loads at run time.

Why this exists: `ort`'s default build downloads ONNX Runtime from a CDN, which offline and
locked-down clinical machines cannot reach. PyPI's `onnxruntime` wheel ships the same C library
(`onnxruntime/capi/libonnxruntime.so.1.31.1`), so we fetch that wheel with pip, check its sha256
against the pin below, and extract just the library with `zipfile` (`unzip` may be absent).

The wheel is requested for an explicit platform/ABI so that the same file (and so the same
sha256) is fetched whatever Python version runs this script.

Usage: python3 scripts/fetch_onnxruntime.py [DEST_DIR]   (default: .ort/ in the repository)
Idempotent: does nothing when the library is already in place with the expected sha256.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

VERSION = "1.31.1"
WHEEL = f"onnxruntime-{VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
MEMBER = f"onnxruntime/capi/libonnxruntime.so.{VERSION}"
LIB_NAME = f"libonnxruntime.so.{VERSION}"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dest_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo, ".ort")
    os.makedirs(dest_dir, exist_ok=True)
    lib_path = os.path.join(dest_dir, LIB_NAME)
    stamp = lib_path + ".sha256"
    if os.path.exists(lib_path) and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read().strip() == sha256(lib_path):
                print(f"onnxruntime {VERSION}: already at {lib_path}")
                return 0

    if os.uname().sysname != "Linux" or os.uname().machine != "x86_64":
        sys.exit("fetch_onnxruntime.py: only linux x86_64 is pinned; set ORT_DYLIB_PATH to an "
                 "ONNX Runtime >= 1.31 library for this platform instead")

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
               "--implementation", "cp", "--abi", "cp311",
               f"onnxruntime=={VERSION}", "-d", tmp, "--quiet"]
        print("fetching", WHEEL, "from PyPI ...")
        subprocess.run(cmd, check=True)
        wheel = os.path.join(tmp, WHEEL)
        if not os.path.exists(wheel):
            sys.exit(f"pip did not produce {WHEEL}; got {os.listdir(tmp)}")
        got = sha256(wheel)
        if got != WHEEL_SHA256:
            sys.exit(f"sha256 mismatch for {WHEEL}: expected {WHEEL_SHA256}, got {got}")
        with zipfile.ZipFile(wheel) as z:
            tmp_lib = lib_path + ".part"
            with z.open(MEMBER) as src, open(tmp_lib, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp_lib, lib_path)
    with open(stamp, "w") as f:
        f.write(sha256(lib_path) + "\n")
    print(f"onnxruntime {VERSION}: extracted to {lib_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
