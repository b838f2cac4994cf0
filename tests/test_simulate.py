import numpy as np

from cellutils import simulate as sim


def _site(seed=0, effect=None, line="HUVEC", size=128):
    return sim.render_site(sim.key_rng(seed, "t"), sim.cell_line(line), effect, size, 0.35)


def test_masks_and_table_agree():
    s = _site()
    labels = set(np.unique(s.cells)) - {0}
    assert labels == set(s.cell_table.label)
    assert len(labels) > 5
    inside = s.nuclei > 0
    assert np.array_equal(s.nuclei[inside], s.cells[inside])  # nucleus i lies in cell i
    assert set(s.stains) == set(sim.STAINS)
    for img in s.stains.values():
        assert img.shape == (128, 128) and img.dtype == np.float32 and np.isfinite(img).all()
    # stains sit where they belong: DNA in nuclei, ER in the cytoplasm
    assert s.stains["DNA"][~inside].max() == 0
    assert s.stains["ER"][inside].max() == 0 and s.stains["ER"].max() > 0


def test_same_seed_same_site_and_keys_are_stable():
    a, b = _site(1), _site(1)
    assert np.array_equal(a.cells, b.cells) and np.array_equal(a.stains["MITO"], b.stains["MITO"])
    assert not np.array_equal(_site(2).cells, a.cells)
    assert sim.key_rng(0, "x", 1).random() == sim.key_rng(0, "x", 1).random()


def test_perturbation_changes_morphology():
    bigger = np.zeros(len(sim.LATENT))
    bigger[sim.L["log_cell_size"]] = 0.5
    bigger[sim.L["int_MITO"]] = 1.0
    area0 = np.mean([np.bincount(_site(k).cells.ravel())[1:].mean() for k in range(4)])
    area1 = np.mean([np.bincount(_site(k, bigger).cells.ravel())[1:].mean() for k in range(4)])
    assert area1 > 1.5 * area0
    m0 = np.mean([_site(k).stains["MITO"].sum() / (_site(k).cells > 0).sum() for k in range(2)])
    m1 = np.mean(
        [
            _site(k, bigger).stains["MITO"].sum() / (_site(k, bigger).cells > 0).sum()
            for k in range(2)
        ]
    )
    assert m1 > 2 * m0


def test_toxicity_lowers_cell_count():
    toxic = np.zeros(len(sim.LATENT))
    toxic[sim.L["log_density"]] = -1.5
    n0 = np.mean([len(_site(k).cell_table) for k in range(4)])
    n1 = np.mean([len(_site(k, toxic).cell_table) for k in range(4)])
    assert n1 < 0.5 * n0


def test_library_structure():
    p = sim.make_perturbations(120, seed=1, frac_inactive=0.25, n_positive=2)
    trt = np.array([k == "trt" for k in p.kind])
    inactive = trt & ~p.active
    assert 0.1 < inactive[trt].mean() < 0.4
    assert np.all(p.effects[inactive] == 0)
    assert p.names[-3] == "DMSO" and np.all(p.effects[-3] == 0)
    # perturbations sharing a target are closer than those with different targets
    eff = p.effects[trt & p.active]
    tg = np.array(p.targets)[trt & p.active]
    unit = eff / np.linalg.norm(eff, axis=1, keepdims=True)
    cos = unit @ unit.T
    same = (tg[:, None] == tg[None]) & ~np.eye(len(tg), dtype=bool)
    assert cos[same].mean() > 0.8 > abs(cos[~same & ~np.eye(len(tg), dtype=bool)].mean()) + 0.5


def test_cell_lines_differ_and_nuisance_is_keyed():
    a, b = sim.cell_line("HeLa"), sim.cell_line("RT4")
    assert not np.allclose(a.mean, b.mean) and a.radius != b.radius
    g1 = sim.channel_gain(0, 6, "HUVEC-01", "1", "C03")
    assert np.array_equal(g1, sim.channel_gain(0, 6, "HUVEC-01", "1", "C03"))
    assert not np.allclose(g1, sim.channel_gain(0, 6, "HUVEC-02", "1", "C03"))
    assert sim.is_edge_well("A05") and sim.is_edge_well("P24") and not sim.is_edge_well("B02")
