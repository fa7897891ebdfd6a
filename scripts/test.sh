#!/usr/bin/env bash
# The whole test suite from a fresh clone: setup, formatting, lints, Rust tests, model checks.
# This is the command README.md documents and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# The library's documentation builds without warnings (no links to private items, no broken ones).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
# The Python check runs the committed ONNX model against its NumPy reference (ORT vs NumPy,
# tiling, exposure/white-balance invariance, chromophore separation).
.venv-build/bin/python models/check_skin_model.py --skip-timing
cargo test --all-targets --locked
