#!/usr/bin/env bash
# Do two dermatrack binaries measure the same? For changes that must not move any number
# (speed-ups, refactors): every region's metrics of both binaries are compared, exactly.
#
#   scripts/same_results.sh OLD_BIN NEW_BIN [WORKDIR]
#
# Images: the bundled portrait (face regions), the shared portraits in ../shared/photos when
# present, the demo study's phantoms, and phantoms rendered here by NEW_BIN (every tone, clean
# and with each capture nuisance, at 10 and at 5 px/mm; whole frame at their true scale).
# Prints one line per differing image and a summary; exits 1 when any image differs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,10p "$0"; exit 2; }
old=$1 new=$2 work=${3:-target/same-results}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/libonnxruntime.so.1.31.1}
mkdir -p "$work"
for ppmm in 10 5; do
  [ -d "$work/phantoms-$ppmm" ] ||
    "$new" phantom --out "$work/phantoms-$ppmm" --seed 7 --px-per-mm "$ppmm" >/dev/null
done

same=0 differ=0
compare() { # IMAGE ARGS...: analyse with both binaries and compare the regions
  local image=$1; shift
  "$old" analyze "$image" "$@" --models models -o "$work/old.json" 2>/dev/null || true
  "$new" analyze "$image" "$@" --models models -o "$work/new.json" 2>/dev/null || true
  if python3 - "$work/old.json" "$work/new.json" <<'EOF'
import json, sys
old, new = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(0 if old.get("regions") == new.get("regions") and old["status"] == new["status"] else 1)
EOF
  then same=$((same + 1)); else differ=$((differ + 1)); echo "differs: $image $*"; fi
}

compare fixtures/faces/london_038_neutral.jpg --regions face --threads 1
for photo in ../shared/photos/*.jpg; do
  [ -f "$photo" ] && compare "$photo" --threads 1
done
for photo in fixtures/demo-study/*/*/*.png fixtures/demo/*.png; do
  compare "$photo" --px-per-mm 10 --regions whole --threads 1
done
for ppmm in 10 5; do
  for photo in "$work/phantoms-$ppmm"/*.png "$work/phantoms-$ppmm"/*.jpg; do
    case $photo in *.mask-*) continue ;; esac
    compare "$photo" --px-per-mm "$ppmm" --regions whole --threads 1
  done
done
echo "same: $same images, differ: $differ"
[ "$differ" -eq 0 ]
