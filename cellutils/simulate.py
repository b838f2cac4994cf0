"""A small simulator of Cell Painting images: stained cells with ground truth, not noise.

Each cell has latent morphology (cell and nucleus size, elongation, irregularity, per-stain
intensity and texture). A *cell line* sets the population's latent mean; a *perturbation* shifts
it (a share of perturbations is inactive, perturbations with a shared target shift it alike);
the *site's context* (experiment, plate, well) adds nuisance: per-channel gain, edge-well
effects, illumination falloff, shot and read noise. Every site is rendered from its own seed,
derived from the dataset seed and the site's key, so the same seed gives the same bytes
whatever order (or process) sites are drawn in.

The renderer returns float stains in [0, ~1] for the canonical compartments in ``STAINS`` plus
instance masks (cells, nuclei) and a per-cell truth table; ``cellutils.synthetic`` maps stains to
each real dataset's channels and file layout.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

STAINS = ("DNA", "ER", "RNA", "ACTIN", "GOLGI", "MITO", "TUBULIN")
"""Canonical compartments: Hoechst, ConA, SYTO14, phalloidin, WGA, MitoTracker, tubulin (HPA)."""

LATENT = (
    "log_cell_size",  # log of cell radius relative to the line's radius
    "log_nuc_ratio",  # log of nucleus radius / cell radius
    "elongation",  # log aspect ratio of the cell
    "irregularity",  # amplitude of the outline's angular harmonics
    *(f"int_{s}" for s in STAINS),  # log intensity per compartment
    *(f"tex_{s}" for s in STAINS),  # log texture strength per compartment
    "log_density",  # log of cells per site (toxicity lowers it)
)
L = {name: i for i, name in enumerate(LATENT)}

# Cell-to-cell spread of each latent dimension around the population mean.
CELL_SD = np.array([0.12, 0.08, 0.12, 0.03] + [0.20] * len(STAINS) + [0.15] * len(STAINS) + [0.0])
# Scale of a perturbation's effect per latent dimension (before ``strength``).
EFFECT_SD = np.array(
    [0.18, 0.12, 0.20, 0.05] + [0.35] * len(STAINS) + [0.35] * len(STAINS) + [0.35]
)


def key_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key`` (stable across processes)."""
    words = [zlib.crc32(str(k).encode()) for k in key]
    return np.random.default_rng([int(seed) % 2**32, *words])


# --------------------------------------------------------------------------------------------
# Populations: cell lines and perturbations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellLine:
    """A population: its radius in pixels at the reference scale, cells per site, latent mean."""

    name: str
    radius: float
    density: float
    mean: np.ndarray = field(repr=False)


# Hand-set morphology for named lines (radius px at 512-px scale / cells per 512-px site /
# latent tweaks); the rest of each line's latent mean is drawn from its name.
_LINE_TRAITS: dict[str, tuple[float, float, dict[str, float]]] = {
    "HUVEC": (30, 70, {"elongation": 0.45, "irregularity": 0.06}),
    "HEPG2": (24, 110, {"log_nuc_ratio": 0.10, "elongation": 0.10}),
    "RPE": (34, 55, {"elongation": 0.30, "int_ACTIN": 0.3}),
    "U2OS": (38, 45, {"irregularity": 0.10, "int_MITO": 0.2}),
    "A549": (30, 65, {"elongation": 0.15, "int_ER": 0.2}),
    "U-251 MG": (40, 35, {"irregularity": 0.12, "elongation": 0.35, "int_TUBULIN": 0.3}),
    "HeLa": (32, 55, {"elongation": 0.20, "int_DNA": 0.2}),
    "PC-3": (30, 60, {"irregularity": 0.09, "int_ER": -0.2}),
    "MCF7": (28, 80, {"log_nuc_ratio": 0.15, "elongation": 0.05}),
    "U-2 OS": (38, 45, {"irregularity": 0.10, "int_TUBULIN": -0.2}),
    "HEK 293": (22, 110, {"log_nuc_ratio": 0.20, "elongation": 0.05}),
    "CACO-2": (26, 95, {"elongation": 0.0, "int_ACTIN": 0.4, "irregularity": 0.02}),
    "RT4": (27, 100, {"elongation": 0.05, "int_GOLGI": 0.3}),
}
HPA_LINES = ("U-251 MG", "HeLa", "PC-3", "A549", "MCF7", "U-2 OS", "HEK 293", "CACO-2", "RT4")
RXRX1_LINES = ("HUVEC", "HEPG2", "RPE", "U2OS")


def cell_line(name: str, distinctness: float = 1.0) -> CellLine:
    """The simulated cell line ``name`` (any string works; the known ones have set traits).

    ``distinctness`` scales how far the drawn part of the latent mean sits from the common one.
    """
    radius, density, tweaks = _LINE_TRAITS.get(name, (30, 60, {}))
    rng = key_rng(0, "cell-line", name)
    mean = np.zeros(len(LATENT))
    mean[L["log_nuc_ratio"]] = np.log(0.45)
    mean[L["elongation"]] = 0.2
    mean[L["irregularity"]] = 0.05
    drawn = rng.normal(0, 0.12 * distinctness, len(LATENT))
    drawn[: L["irregularity"] + 1] *= 0.5
    mean += drawn
    mean[L["log_density"]] = 0.0
    for k, v in tweaks.items():
        mean[L[k]] = v + (np.log(0.45) if k == "log_nuc_ratio" else 0.0)
    return CellLine(name, float(radius), float(density), mean)


@dataclass
class Perturbations:
    """A library of perturbations: names, targets, activity and latent effects (n x LATENT)."""

    names: list[str]
    targets: list[str]
    active: np.ndarray
    effects: np.ndarray
    kind: list[str]  # "trt", "negcon" or "poscon"

    def index(self, name: str) -> int:
        return self.names.index(name)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "perturbation": self.names,
                "target": self.targets,
                "active": self.active,
                "kind": self.kind,
                "effect_norm": np.linalg.norm(self.effects, axis=1),
            }
        )


def make_perturbations(
    n: int,
    seed: int = 0,
    prefix: str = "pert",
    frac_inactive: float = 0.25,
    per_target: tuple[int, int] = (1, 3),
    strength: float = 1.0,
    n_dims: tuple[int, int] = (3, 7),
    negative_control: str | None = "DMSO",
    n_positive: int = 0,
    names: list[str] | None = None,
) -> Perturbations:
    """Draw ``n`` treatment perturbations (+ controls).

    Targets are shared by 1-3 perturbations (``per_target``); those sharing a target get the
    target's effect plus a small own part, so they look alike. A share ``frac_inactive`` has no
    effect at all, as in real screens. A negative control (no effect) and ``n_positive``
    strong positive controls are appended when asked for.
    """
    rng = key_rng(seed, "perturbations", prefix, n)
    effects, targets, target_names = [], [], []
    t = 0
    while len(effects) < n:
        k = int(rng.integers(per_target[0], per_target[1] + 1))
        dims = rng.choice(
            len(LATENT), size=int(rng.integers(n_dims[0], n_dims[1] + 1)), replace=False
        )
        base = np.zeros(len(LATENT))
        base[dims] = rng.normal(0, 1, len(dims)) * EFFECT_SD[dims]
        tname = f"GENE{t + 1:03d}"
        target_names.append(tname)
        for _ in range(min(k, n - len(effects))):
            own = rng.normal(0, 0.25, len(LATENT)) * EFFECT_SD
            effects.append(strength * (base + own * (base != 0)))
            targets.append(tname)
        t += 1
    effects = np.array(effects).reshape(-1, len(LATENT))
    active = rng.random(n) >= frac_inactive
    effects[~active] = 0.0
    pert_names = list(names) if names is not None else [f"{prefix}-{i + 1:04d}" for i in range(n)]
    if len(pert_names) != n:
        raise ValueError(f"names has {len(pert_names)} entries, n is {n}")
    kind = ["trt"] * n
    targets = list(targets)
    if negative_control:
        pert_names.append(negative_control)
        targets.append("")
        effects = np.vstack([effects, np.zeros(len(LATENT))])
        active = np.append(active, False)
        kind.append("negcon")
    for j in range(n_positive):
        eff = rng.normal(0, 1, len(LATENT)) * EFFECT_SD * 2.5 * strength
        pert_names.append(f"{prefix}-poscon-{j + 1}")
        targets.append(f"POSCON{j + 1}")
        effects = np.vstack([effects, eff])
        active = np.append(active, True)
        kind.append("poscon")
    return Perturbations(pert_names, targets, np.asarray(active, bool), effects, kind)


# --------------------------------------------------------------------------------------------
# Nuisance: experiment, plate and well effects
# --------------------------------------------------------------------------------------------


def is_edge_well(well: str, n_rows: int = 16, n_cols: int = 24) -> bool:
    """Outer ring of the plate (rows A / last, columns 1 / last)."""
    row = ord(well[0].upper()) - ord("A")
    col = int(well[1:])
    return row in (0, n_rows - 1) or col in (1, n_cols)


def channel_gain(
    seed: int, n: int, experiment: str, plate: str, well: str, batch_strength: float = 1.0
) -> np.ndarray:
    """Multiplicative per-channel gain of a site: experiment x plate x well x edge effect."""
    g = np.exp(key_rng(seed, "exp", experiment).normal(0, 0.15 * batch_strength, n))
    g *= np.exp(key_rng(seed, "plate", experiment, plate).normal(0, 0.08 * batch_strength, n))
    g *= np.exp(key_rng(seed, "well", experiment, plate, well).normal(0, 0.04 * batch_strength, n))
    if is_edge_well(well):
        g *= 1.0 + 0.12 * batch_strength  # evaporation at the plate's edge: brighter wells
    return g


def context_shift(
    seed: int,
    experiment: str,
    plate: str,
    well: str,
    experiment_sd: float = 0.0,
    plate_sd: float = 0.0,
    well_sd: float = 0.0,
    position_sd: float = 0.0,
) -> np.ndarray:
    """Shift of the cells' latent morphology by where they grew, in units of ``EFFECT_SD``.

    Real screens show it: cells of one experiment (a batch of cells, a day's staining) differ
    from another's, and a well's position and handling change density, size and staining.
    ``well_sd`` is drawn per (experiment, plate, well): one well's own handling. ``position_sd``
    is keyed by the well's *position* only, so the same well on every plate (and in every
    experiment) shares it: CPJUMP1's well-position effect, where DMSO wells at one position
    retrieve each other across plates (53.1% percent replicating; 17.2% after sphering).
    These shifts are what a split that shares wells or experiments lets a model memorise,
    and what makes replicates of one plate map find each other. ``docs/simulator.md`` lists
    the magnitudes each layout uses and the real figures they stand in for.
    """
    shift = np.zeros(len(LATENT))
    for sd, key in (
        (experiment_sd, ("ctx-exp", experiment)),
        (plate_sd, ("ctx-plate", experiment, plate)),
        (well_sd, ("ctx-well", experiment, plate, well)),
        (position_sd, ("ctx-position", well)),
    ):
        if sd:
            shift += key_rng(seed, *key).normal(0, sd, len(LATENT)) * EFFECT_SD
    return shift


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass
class Site:
    """One rendered field of view."""

    stains: dict[str, np.ndarray]  # float32 (H, W) per compartment, before imaging noise
    cells: np.ndarray  # uint16 instance labels
    nuclei: np.ndarray  # uint16 instance labels, nucleus i belongs to cell i
    cell_table: pd.DataFrame  # one row per cell: label, centroid, latent values


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth Gaussian noise, zero mean, unit standard deviation."""
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (f - f.mean()) / (f.std() + 1e-8)


def _place_centres(rng, n, size, radii, overlap=0.75, tries=40):
    """Random centres, rejecting ones that overlap earlier cells by more than allowed."""
    pts = np.empty((n, 2))
    kept = np.empty(n, dtype=int)
    k = 0
    for i in range(n):
        for _ in range(tries):
            p = rng.uniform(-0.3 * radii[i], size + 0.3 * radii[i], 2)
            # the same test as one check per placed cell, in one vectorised step
            if np.all(np.hypot(*(pts[:k] - p).T) > overlap * (radii[i] + radii[kept[:k]])):
                pts[k], kept[k] = p, i
                k += 1
                break
    return pts[:k], kept[:k]


def render_site(
    rng: np.random.Generator,
    line: CellLine,
    effect: np.ndarray | None = None,
    size: int = 256,
    scale: float = 0.5,
    density_factor: float = 1.0,
) -> Site:
    """Render one site of ``line`` under a perturbation ``effect`` (latent shift).

    ``scale`` is pixels per pixel of a 512-px reference site (0.5 renders cells half as large),
    so a 256-px site at scale 0.5 holds as many cells as the real 512-px site.
    """
    mean = line.mean + (0 if effect is None else effect)
    area_ratio = (size / (512 * scale)) ** 2
    lam = line.density * area_ratio * np.exp(mean[L["log_density"]]) * density_factor
    n_cells = int(rng.poisson(max(lam, 0.5)))
    lat = mean + rng.normal(0, 1, (n_cells, len(LATENT))) * CELL_SD
    radii = line.radius * scale * np.exp(lat[:, L["log_cell_size"]])
    centres, kept = _place_centres(rng, n_cells, size, radii)
    lat, radii = lat[kept], radii[kept]
    n = len(kept)

    H = W = size
    label = np.zeros((H, W), np.uint16)
    nuclei = np.zeros((H, W), np.uint16)
    best = np.full((H, W), np.inf, np.float32)
    theta_img = np.zeros((H, W), np.float32)
    dnuc_img = np.ones((H, W), np.float32)
    spots = np.zeros((H, W), np.float32)
    golgi = np.zeros((H, W), np.float32)
    rows = []
    for i in range(n):
        cy, cx = centres[i]
        r = radii[i]
        elong = np.exp(abs(lat[i, L["elongation"]]))
        orient = rng.uniform(0, np.pi)
        irr = max(lat[i, L["irregularity"]], 0.0)
        harm = rng.normal(0, irr, 4)
        phase = rng.uniform(0, 2 * np.pi, 4)
        nuc_r = r * np.exp(lat[i, L["log_nuc_ratio"]])
        nuc_elong = 1 + 0.3 * (elong - 1) + abs(rng.normal(0, 0.08))
        off = rng.normal(0, 0.12 * r, 2)
        ext = int(np.ceil(r * elong * 1.6)) + 2
        y0, y1 = max(int(cy) - ext, 0), min(int(cy) + ext + 1, H)
        x0, x1 = max(int(cx) - ext, 0), min(int(cx) + ext + 1, W)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        c, s = np.cos(orient), np.sin(orient)
        u, v = dx * c + dy * s, -dx * s + dy * c
        ang = np.arctan2(v, u)
        outline = 1 + sum(harm[k] * np.cos((k + 2) * ang + phase[k]) for k in range(4))
        d = np.sqrt((u / np.sqrt(elong)) ** 2 + (v * np.sqrt(elong)) ** 2) / (r * outline)
        win_best = best[y0:y1, x0:x1]
        take = (d < 1) & (d < win_best)
        win_best[take] = d[take]
        label[y0:y1, x0:x1][take] = i + 1
        theta_img[y0:y1, x0:x1][take] = np.arctan2(dy, dx)[take]
        # nucleus: a smaller, rounder ellipse near the centre
        nu, nv = (dx - off[1]) * c + (dy - off[0]) * s, -(dx - off[1]) * s + (dy - off[0]) * c
        dn = np.sqrt((nu / np.sqrt(nuc_elong)) ** 2 + (nv * np.sqrt(nuc_elong)) ** 2) / nuc_r
        dn = dn * (1 + 0.04 * np.cos(3 * ang + phase[0]))
        win_nuc = nuclei[y0:y1, x0:x1]
        win_nuc[take] = 0  # pixels this cell takes from a neighbour lose its nucleus too
        win_nuc[take & (dn < 1)] = i + 1
        dnuc_img[y0:y1, x0:x1][take] = np.minimum(dn[take], 3)
        # nucleoli (1-4 spots inside the nucleus) and a Golgi ribbon beside it
        for _ in range(int(rng.integers(1, 5))):
            a, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.55) * nuc_r
            py, px = cy + off[0] + rad * np.sin(a), cx + off[1] + rad * np.cos(a)
            if 0 <= py < H and 0 <= px < W:
                spots[int(py), int(px)] += 1.0
        a = rng.uniform(0, 2 * np.pi)
        gy, gx = cy + off[0] + 1.15 * nuc_r * np.sin(a), cx + off[1] + 1.15 * nuc_r * np.cos(a)
        g = np.exp(-((yy - gy) ** 2 + (xx - gx) ** 2) / (2 * (0.35 * nuc_r) ** 2))
        golgi[y0:y1, x0:x1] += g * take
        rows.append((i + 1, cy, cx, r, nuc_r, *lat[i]))

    # keep only labels that survived (a later cell can claim all of an earlier one's pixels)
    present = np.unique(label)
    present = present[present > 0]
    nuclei[(nuclei != label) | ~np.isin(nuclei, present)] = 0
    cell_table = pd.DataFrame(
        rows, columns=["label", "centroid_y", "centroid_x", "radius", "nucleus_radius", *LATENT]
    )
    cell_table = cell_table[cell_table.label.isin(present)].reset_index(drop=True)

    # per-pixel lookup of each cell's intensity / texture multipliers (index 0 = background)
    per_cell = np.zeros((n + 1, len(LATENT)), np.float32)
    per_cell[1:] = lat
    inten = np.exp(per_cell[:, L["int_DNA"] : L["int_DNA"] + len(STAINS)])
    inten[0] = 0
    tex = np.exp(per_cell[:, L["tex_DNA"] : L["tex_DNA"] + len(STAINS)])
    cell = label > 0
    nuc = nuclei > 0
    cyto = cell & ~nuc
    s_i = {s: inten[label, k] for k, s in enumerate(STAINS)}
    s_t = {s: tex[label, k] for k, s in enumerate(STAINS)}
    r_px = max(line.radius * scale, 4.0)
    boundary = (ndi.grey_dilation(label, size=3) != ndi.grey_erosion(label, size=3)) & cell
    edge_dist = ndi.distance_transform_edt(~boundary).astype(np.float32)
    fine = _noise(rng, (H, W), 0.8)
    mid = _noise(rng, (H, W), 0.12 * r_px)
    reticular = _noise(rng, (H, W), 1.0) - 0.6 * _noise(rng, (H, W), 3.0)
    fibres = ndi.gaussian_filter(rng.standard_normal((H, W)).astype(np.float32), (0.7, 0.25 * r_px))
    fibres = (fibres - fibres.mean()) / (fibres.std() + 1e-8)

    stains: dict[str, np.ndarray] = {}
    dome = np.clip(1 - dnuc_img**2, 0, 1)
    stains["DNA"] = nuc * s_i["DNA"] * (0.55 + 0.45 * dome) * (1 + 0.25 * s_t["DNA"] * fine)
    nucleoli = ndi.gaussian_filter(spots, max(0.1 * r_px, 0.8)) * (2 * np.pi * (0.1 * r_px) ** 2)
    perinuc = np.exp(-np.clip(dnuc_img - 1, 0, None) * 1.5)
    stains["RNA"] = s_i["RNA"] * (
        0.25 * cyto * perinuc * (1 + 0.3 * s_t["RNA"] * mid)
        + 0.3 * nuc
        + 1.2 * nuc * np.clip(nucleoli, 0, 1.5)
    )
    stains["ER"] = (
        s_i["ER"] * cyto * (0.2 + 0.8 * perinuc) * np.clip(1 + 0.5 * s_t["ER"] * reticular, 0, None)
    )
    mito = np.clip(_noise(rng, (H, W), 0.9) + 0.4 * mid - 0.3 + 0.3 * s_t["MITO"], 0, None)
    stains["MITO"] = s_i["MITO"] * cyto * (0.3 + 0.7 * perinuc) * mito
    cortex = np.exp(-edge_dist / max(0.06 * r_px, 1.0))
    stains["ACTIN"] = (
        s_i["ACTIN"] * cell * (0.25 + 0.9 * cortex + 0.35 * s_t["ACTIN"] * np.clip(fibres, 0, None))
    )
    membrane = ndi.gaussian_filter(boundary.astype(np.float32), 0.8) * 2
    stains["GOLGI"] = s_i["GOLGI"] * (
        0.5 * membrane * cell
        + 0.1 * cell
        + 1.2 * cyto * np.clip(golgi, 0, 1) * (1 + 0.3 * s_t["GOLGI"] * fine)
    )
    n_fib = 14
    radial = 0.5 + 0.5 * np.cos(n_fib * theta_img + 2.5 * mid)
    stains["TUBULIN"] = (
        s_i["TUBULIN"]
        * cell
        * (0.3 + 0.7 * radial ** (1 + s_t["TUBULIN"]))
        * (0.4 + 0.6 * np.exp(-np.clip(dnuc_img - 1, 0, None) * 0.6))
    )
    stains = {k: np.asarray(v, np.float32) for k, v in stains.items()}
    return Site(stains, label, nuclei, cell_table)


def brightfield(site: Site, rng: np.random.Generator, focus: float = 0.0) -> np.ndarray:
    """A phase-like brightfield plane from the masks; ``focus`` (px) blurs it (out of focus)."""
    cell = (site.cells > 0).astype(np.float32)
    edges = ndi.gaussian_gradient_magnitude(cell, 1.2 + abs(focus))
    body = ndi.gaussian_filter(cell, 2.0 + abs(focus))
    img = (
        0.55 - 0.08 * body + 0.5 * edges * np.sign(focus + 0.5) + 0.03 * _noise(rng, cell.shape, 4)
    )
    return np.clip(img, 0, 1).astype(np.float32)


def illumination(size: int, rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    """Multiplicative vignetting: 1 at a slightly off-centre optical axis, falling to the
    corners."""
    c = size / 2 + rng.normal(0, 0.05 * size, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rr = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (0.5 * size * np.sqrt(2)) ** 2
    return (1 - strength * rr).astype(np.float32)


def acquire(
    image: np.ndarray,
    rng: np.random.Generator,
    gain: np.ndarray | float = 1.0,
    illum: np.ndarray | None = None,
    background: float = 0.03,
    photons: float = 300.0,
    read_noise: float = 0.006,
) -> np.ndarray:
    """Camera model for (C, H, W) stains: gain x illumination, background, shot and read noise.

    Returns float32 in about [0, 1]; writers quantise to the layout's dtype.
    """
    gain = np.asarray(gain, np.float32).reshape(-1, 1, 1)
    x = (image + background) * gain
    if illum is not None:
        x = x * illum
    x = rng.poisson(np.clip(x, 0, None) * photons).astype(np.float32) / photons
    x += rng.normal(0, read_noise, x.shape).astype(np.float32)
    return np.clip(x, 0, None)
