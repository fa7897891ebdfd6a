#!/usr/bin/env bash
# Sets up a fresh clone (needs only the Rust toolchain and python3 with pip):
#  1. fetches the pinned ONNX Runtime library from PyPI's onnxruntime wheel into .ort/;
#  2. creates .venv-build/ with the pinned model-build environment (models/requirements-build.txt)
#     and rebuilds models/skin-v1.onnx + skin-v1.json into a temporary folder, refusing to go on
#     unless the bytes equal the committed files (the model is reproducible, not a blob).
# Idempotent: a second run only re-checks.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 scripts/fetch_onnxruntime.py

if [ ! -x .venv-build/bin/python ] || ! .venv-build/bin/python -c "import onnx, numpy" 2>/dev/null; then
  echo "creating .venv-build (pinned onnx/numpy for rebuilding the skin model) ..."
  python3 -m venv .venv-build
  .venv-build/bin/pip install --quiet --disable-pip-version-check -r models/requirements-build.txt
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv-build/bin/python models/build_skin_model.py --out "$tmp" >/dev/null
for f in skin-v1.onnx skin-v1.json; do
  if ! cmp -s "models/$f" "$tmp/$f"; then
    echo "setup: models/$f differs from a fresh build by models/build_skin_model.py;" >&2
    echo "       rebuild it with: .venv-build/bin/python models/build_skin_model.py" >&2
    exit 1
  fi
done
echo "skin-v1: rebuilt from models/build_skin_model.py, identical to the committed files"
