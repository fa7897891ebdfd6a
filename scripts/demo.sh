#!/usr/bin/env bash
# The main job on the bundled demo data, from a fresh clone:
#   set up (ONNX Runtime, reproducible model check), build, score the bundled demo study,
#   analyse the bundled photos and compare a before/after pair, writing reports and overlay
#   pictures to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked --bin dermatrack --example perturb_photo
bin=target/release/dermatrack
out=out/demo
mkdir -p "$out"

status=0
# The main job: a small study (2 subjects × 4 sessions, phantoms with a known story) scored
# incrementally into per-subject progress reports, scores.csv, changes.csv and cohort.json.
"$bin" run fixtures/demo-study --regions whole --out "$out/study" || status=$?
# A real studio portrait (CC BY 4.0, see fixtures/faces/ATTRIBUTION.md): face regions, scale
# estimated from the interpupillary distance.
"$bin" analyze fixtures/faces/london_038_neutral.jpg --regions face \
  -o "$out/portrait.json" --overlay "$out/portrait.overlay.png" || status=$?
# A phantom with known truth (fixtures/demo/phantom-intermediate.truth.json): whole frame at
# its true scale.
"$bin" analyze fixtures/demo/phantom-intermediate.png --regions whole --px-per-mm 10 \
  -o "$out/phantom.json" --overlay "$out/phantom.overlay.png" || status=$?
# Before/after: the portrait re-photographed (shifted 14 px, turned 3°, exposure ×1.2, JPEG
# q90) with a 9 mm macule painted into the left cheek; compare registers, normalises colour and
# reports what changed beyond the noise floor (only the left cheek's pigment should).
target/release/examples/perturb_photo fixtures/faces/london_038_neutral.jpg "$out/after.jpg" \
  --shift 14,-9 --rotate 3 --exposure 1.2 --jpeg 90 --macule 846,732,16,2.0
"$bin" compare fixtures/faces/london_038_neutral.jpg "$out/after.jpg" \
  -o "$out/compare.json" --overlay "$out/compare.overlay.png" || status=$?

echo
echo "reports written to $out/:"
ls -1 "$out" "$out/study" "$out/study/subjects"
exit "$status"
