#!/usr/bin/env python3
"""Score a folder of phantoms (written by `dermatrack phantom`) through the command line, the
way an outside checker would: `dermatrack analyze IMG --px-per-mm F --regions whole -o OUT`
per image, then the skin-model issue's tolerances against each image's `.truth.json`:

  pore count within 10%, pigmented area within 2 percentage points, scar count within 15%,
  ITA within 3 degrees (only where the image's exposure and white balance are untouched: they
  change the photographed colour, and the truth is the skin's own tone).

Prints one line per image and a summary; exits 1 when any image is outside a tolerance.

  python3 scripts/check_phantoms.py DIR [--exe target/release/dermatrack] [--jobs 2]

Standard library only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
from pathlib import Path

POSSIBLE_EXE = ("target/release/dermatrack", "target/debug/dermatrack")


def analyze(exe: str, image: Path) -> tuple[Path, dict, dict | None, str]:
    stem = image.with_suffix("")
    truth = json.loads(Path(f"{stem}.truth.json").read_text(encoding="utf-8"))
    out = Path(f"{stem}.analysis.json")
    run = subprocess.run(
        [exe, "analyze", str(image), "--px-per-mm", str(truth["px_per_mm"]),
         "--regions", "whole", "-o", str(out), "--threads", "1"],
        capture_output=True, text=True, check=False)
    if run.returncode != 0 or not out.exists():
        return image, truth, None, run.stderr.strip()
    regions = json.loads(out.read_text(encoding="utf-8")).get("regions") or [{}]
    return image, truth, regions[0].get("metrics"), ""


def judge(truth: dict, m: dict) -> tuple[str, list[str]]:
    pores, pores_true = m["pores"]["count"], truth["pores"]["count"]
    pig = 100 * m["hyperpigmentation"]["area_fraction"]
    pig_true = 100 * truth["pigment"]["area_fraction"]
    scars, scars_true = m["scarring"]["count"], truth["scars"]["count"]
    ita, ita_true = m["tone"]["ita_deg"], truth["base_tone"]["ita_deg"]
    nz = truth.get("nuisances", {})
    colour_untouched = nz.get("exposure", 1.0) == 1.0 and nz.get("white_balance", [1, 1, 1]) == [1, 1, 1]

    def relative_off(measured, true, tol):
        return measured != 0 if true == 0 else abs(measured - true) / true > tol

    bad = []
    if relative_off(pores, pores_true, 0.10):
        bad.append("pores")
    if abs(pig - pig_true) > 2.0:
        bad.append("pigment")
    if relative_off(scars, scars_true, 0.15):
        bad.append("scars")
    if colour_untouched and abs(ita - ita_true) > 3.0:
        bad.append("ita")
    line = (f"pores {pores:3d}/{pores_true:<3d} pigment {pig:5.2f}/{pig_true:5.2f} % "
            f"scars {scars:2d}/{scars_true:<2d} ITA {ita:6.1f}/{ita_true:6.1f}"
            + ("" if colour_untouched else " (colour changed: ITA not judged)"))
    return line, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--exe", default=next((p for p in POSSIBLE_EXE if Path(p).exists()), "dermatrack"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    images = sorted(p for p in args.folder.iterdir()
                    if p.suffix in (".png", ".jpg") and ".mask-" not in p.name
                    and Path(f"{p.with_suffix('')}.truth.json").exists())
    if not images:
        print(f"no phantom images with .truth.json in {args.folder}", file=sys.stderr)
        return 2
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for image, truth, metrics, error in pool.map(lambda p: analyze(args.exe, p), images):
            if metrics is None:
                failed += 1
                print(f"{image.name:32s} FAILED: {error}")
                continue
            line, bad = judge(truth, metrics)
            failed += bool(bad)
            print(f"{image.name:32s} {line}" + (f"  OUTSIDE: {', '.join(bad)}" if bad else ""))
    print(f"{len(images) - failed} of {len(images)} images within every tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
