"""SIMULATED Perturb-seq in GEARS's exact file layout, with known ground truth.

No full Perturb-seq data set can be had offline, so the full-size perturbation demo runs on this
simulator. Everything it writes is labelled simulated: ``uns['scprior']['real'] = False``, a
dataset id starting with ``simulated_`` and a title saying so.

The causal model, on real human gene symbols and real TF -> target edges (the Pathway Commons
regulon of the knowledge layer):

1. Perturbed genes are regulators with at least ``min_targets`` targets. Each is CRISPRa-like
   (its log expression rises by U(``activation_effect``)) or CRISPRi-like (falls by
   U(``interference_effect``)). ``n_singles`` genes are perturbed alone; ``n_doubles`` pairs of them
   together.
2. The measured genes are the perturbed genes, the genes they regulate (most regulated first) and
   other regulon genes up to ``n_genes``. Regulon edges among measured genes get a sign (activating
   with probability ``p_activating``) and a weight U(``edge_weight``) / sqrt(in-degree).
3. A perturbation clamps its genes' log-expression shift ``s`` and propagates
   ``delta <- s + W^T tanh(delta)`` for ``propagation_steps`` steps (tanh: saturating, so doubles
   are mildly non-additive by themselves).
4. A fraction ``frac_interacting`` of doubles gets an explicit genetic interaction on the
   downstream genes: ``synergy`` (x U(1.6, 2.4)), ``suppression`` (x U(0.1, 0.45)), ``epistasis``
   (only the first gene's downstream effect) or ``neomorphic`` (a new effect on 15-30 genes).
   The rest are ``additive`` (no explicit interaction).
5. Cells: log rate = baseline + efficiency_c * delta + two shared cell-state programs; library
   factors log-normal; counts negative binomial (gamma-Poisson, gene dispersions ``theta``).
   ``X = log1p(normalize_total(counts, 1e4))`` as in GEARS's files; counts in ``layers['counts']``.

Ground truth in ``uns['simulation']``: the clamped shifts, the noise-free ``delta`` per condition
(canonical names), the GI type and strength of every double, the gene modalities and the edges.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.anndata_conventions import log_normalise
from scprior.data.gears import complete_gears
from scprior.data.perturbations import CONTROL
from scprior.errors import ScpriorInputError

GI_TYPES = ("synergy", "suppression", "epistasis", "neomorphic")
_SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9-]*[A-Z0-9]$")


@dataclass
class PerturbSimConfig:
    """Settings of :func:`simulate_perturb_seq` (defaults: the full-size demo)."""

    n_singles: int = 100
    n_doubles: int = 100
    n_genes: int = 1000
    cells_per_condition: int = 80
    n_control_cells: int = 2000
    min_targets: int = 8
    frac_interacting: float = 0.4
    frac_activation: float = 0.7
    activation_effect: tuple[float, float] = (1.5, 3.0)
    interference_effect: tuple[float, float] = (1.0, 2.3)
    p_activating: float = 0.65
    edge_weight: tuple[float, float] = (0.7, 1.6)
    propagation_steps: int = 2
    baseline_log_mean: tuple[float, float] = (0.0, 1.2)  # normal (mean, sd) of log mean counts
    theta: tuple[float, float] = (2.0, 12.0)  # NB inverse dispersion range (log-uniform)
    library_sd: float = 0.35
    efficiency: tuple[float, float] = (6.0, 2.0)  # Beta(a, b) per-cell perturbation efficiency
    n_programs: int = 2
    program_sd: float = 0.25
    frac_ctrl_first: float = 0.1  # singles whose cells are labelled both 'A+ctrl' and 'ctrl+A'
    cell_type: str = "K562"
    seed: int = 0


def _clean_regulon(regulon: pd.DataFrame) -> pd.DataFrame:
    for col in ("tf", "target"):
        if col not in regulon:
            raise ScpriorInputError(
                f"The regulon needs columns 'tf' and 'target' (has {list(regulon.columns)}); "
                "pass scprior.knowledge.store.load_regulon(knowledge_dir)."
            )
    reg = regulon[["tf", "target"]].astype(str).drop_duplicates()
    ok = reg["tf"].str.match(_SYMBOL_RE) & reg["target"].str.match(_SYMBOL_RE) & (reg["tf"] != reg["target"])
    reg = reg[ok].reset_index(drop=True)
    if reg.empty:
        raise ScpriorInputError("The regulon has no TF -> target edges between human gene symbols.")
    return reg


def _choose_genes(reg: pd.DataFrame, cfg: PerturbSimConfig, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(perturbed genes, measured genes)."""
    out_deg = reg.groupby("tf").size()
    candidates = sorted(out_deg[out_deg >= cfg.min_targets].index)
    if len(candidates) < cfg.n_singles:
        raise ScpriorInputError(
            f"Only {len(candidates)} regulators have >= {cfg.min_targets} targets; the simulator needs "
            f"n_singles={cfg.n_singles}. Lower n_singles or min_targets."
        )
    perturbed = sorted(rng.choice(candidates, cfg.n_singles, replace=False).tolist())
    if cfg.n_genes < len(perturbed) + 10:
        raise ScpriorInputError(f"n_genes={cfg.n_genes} is too small for {len(perturbed)} perturbed genes.")
    targets = reg[reg["tf"].isin(perturbed)].groupby("target").size()
    targets = targets.drop(labels=[g for g in perturbed if g in targets.index])
    # most-regulated targets first, ties broken at random
    jitter = rng.random(len(targets))
    order = targets.index[np.lexsort((jitter, -targets.to_numpy()))]
    budget = cfg.n_genes - len(perturbed)
    n_targets = min(len(order), int(budget * 0.8))
    measured = list(perturbed) + order[:n_targets].tolist()
    others = sorted(set(reg["tf"]).union(reg["target"]) - set(measured))
    fill = cfg.n_genes - len(measured)
    if fill > len(others):
        raise ScpriorInputError(f"The regulon names only {len(measured) + len(others)} genes; lower n_genes.")
    measured += rng.choice(others, fill, replace=False).tolist() if fill else []
    return perturbed, sorted(measured)


def _weights(reg: pd.DataFrame, genes: list[str], cfg: PerturbSimConfig, rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    pos = {g: i for i, g in enumerate(genes)}
    edges = reg[reg["tf"].isin(pos) & reg["target"].isin(pos)].reset_index(drop=True)
    sign = np.where(rng.random(len(edges)) < cfg.p_activating, 1.0, -1.0)
    mag = rng.uniform(*cfg.edge_weight, size=len(edges))
    indeg = edges.groupby("target")["tf"].transform("size").to_numpy()
    w = sign * mag / np.sqrt(indeg)
    W = np.zeros((len(genes), len(genes)))
    W[edges["tf"].map(pos).to_numpy(), edges["target"].map(pos).to_numpy()] = w
    return W, edges.assign(weight=w)


def _propagate(shift: np.ndarray, W: np.ndarray, steps: int) -> np.ndarray:
    clamp = shift != 0
    delta = shift.copy()
    for _ in range(steps):
        delta = shift + np.tanh(delta) @ W
        delta[clamp] = shift[clamp]
    return delta


def simulate_perturb_seq(regulon: pd.DataFrame, config: PerturbSimConfig | None = None) -> ad.AnnData:
    """Simulate a CRISPRa/i Perturb-seq screen; return it in GEARS's layout (SIMULATED data).

    ``regulon``: a table with columns ``tf``, ``target`` (human gene symbols). Returns cells x
    ``n_genes`` with ``layers['counts']`` (negative-binomial integers), log-normalised ``X``,
    ``obs['condition']`` (``ctrl``, ``A+ctrl``/``ctrl+A``, ``A+B``), ``obs['cell_type']``, GEARS's
    obs columns and DE tables, ``var['gene_name']``, ground truth in ``uns['simulation']`` and
    provenance (``real=False``) in ``uns['scprior']``.
    """
    cfg = config or PerturbSimConfig()
    rng = np.random.default_rng(cfg.seed)
    reg = _clean_regulon(regulon)
    perturbed, genes = _choose_genes(reg, cfg, rng)
    pos = {g: i for i, g in enumerate(genes)}
    n_genes = len(genes)
    W, edges = _weights(reg, genes, cfg, rng)

    # perturbation modality and clamped shift per perturbed gene
    modality = {g: ("CRISPRa" if rng.random() < cfg.frac_activation else "CRISPRi") for g in perturbed}
    shift_of = {g: (rng.uniform(*cfg.activation_effect) if modality[g] == "CRISPRa"
                    else -rng.uniform(*cfg.interference_effect)) for g in perturbed}

    # doubles: distinct unordered pairs of perturbed genes
    pairs: set[tuple[str, str]] = set()
    max_pairs = len(perturbed) * (len(perturbed) - 1) // 2
    n_doubles = min(cfg.n_doubles, max_pairs)
    while len(pairs) < n_doubles:
        a, b = rng.choice(perturbed, 2, replace=False)
        pairs.add(tuple(sorted((str(a), str(b)))))
    doubles = sorted(pairs)

    def shift_vec(gs) -> np.ndarray:
        s = np.zeros(n_genes)
        for g in gs:
            s[pos[g]] = shift_of[g]
        return s

    delta: dict[str, np.ndarray] = {CONTROL: np.zeros(n_genes)}
    for g in perturbed:
        delta[f"{g}+{CONTROL}"] = _propagate(shift_vec([g]), W, cfg.propagation_steps)
    gi_type, gi_strength = {}, {}
    interacting = rng.random(len(doubles)) < cfg.frac_interacting
    for (a, b), inter in zip(doubles, interacting):
        name = f"{a}+{b}"
        s = shift_vec([a, b])
        d = _propagate(s, W, cfg.propagation_steps)
        kind, strength = "additive", 1.0
        if inter:
            kind = str(rng.choice(GI_TYPES))
            down = s == 0
            if kind == "synergy":
                strength = rng.uniform(1.6, 2.4)
                d[down] *= strength
            elif kind == "suppression":
                strength = rng.uniform(0.1, 0.45)
                d[down] *= strength
            elif kind == "epistasis":
                d_a = _propagate(shift_vec([a]), W, cfg.propagation_steps)
                d = np.where(down, d_a, s)
                strength = 0.0
            else:  # neomorphic
                k = int(rng.integers(15, 31))
                idx = rng.choice(np.flatnonzero(down), k, replace=False)
                d[idx] += rng.normal(0.0, 1.0, size=k)
                strength = float(k)
        delta[name] = d
        gi_type[name] = kind
        gi_strength[name] = float(strength)

    # cells
    singles = [f"{g}+{CONTROL}" for g in perturbed]
    conditions = [CONTROL] + singles + [f"{a}+{b}" for a, b in doubles]
    counts_per = {c: cfg.cells_per_condition for c in conditions}
    counts_per[CONTROL] = cfg.n_control_cells
    cond_of_cell = np.repeat(conditions, [counts_per[c] for c in conditions])
    n_cells = len(cond_of_cell)
    baseline = rng.normal(*cfg.baseline_log_mean, size=n_genes)
    theta = np.exp(rng.uniform(np.log(cfg.theta[0]), np.log(cfg.theta[1]), size=n_genes))
    loadings = rng.normal(0.0, cfg.program_sd, size=(cfg.n_programs, n_genes))
    programs = rng.normal(size=(n_cells, cfg.n_programs))
    library = np.exp(rng.normal(0.0, cfg.library_sd, size=n_cells))
    efficiency = np.where(cond_of_cell == CONTROL, 0.0, rng.beta(*cfg.efficiency, size=n_cells))
    D = np.stack([delta[c] for c in cond_of_cell])
    log_rate = baseline[None, :] + efficiency[:, None] * D + programs @ loadings
    mean = np.exp(log_rate) * library[:, None]
    lam = rng.gamma(shape=theta[None, :], scale=mean / theta[None, :])
    counts = rng.poisson(lam).astype(np.float32)

    # labels: a few singles carry both GEARS spellings, as in GEARS's Norman file
    labels = cond_of_cell.astype(object)
    n_twin = int(round(cfg.frac_ctrl_first * len(perturbed)))
    twins = rng.choice(perturbed, n_twin, replace=False).tolist() if n_twin else []
    for g in twins:
        idx = np.flatnonzero(cond_of_cell == f"{g}+{CONTROL}")
        labels[idx[len(idx) // 2:]] = f"{CONTROL}+{g}"

    order = rng.permutation(n_cells)
    obs = pd.DataFrame({"condition": labels[order].astype(str), "cell_type": cfg.cell_type,
                        "efficiency": efficiency[order].astype(np.float32)},
                       index=[f"simcell{i:06d}" for i in range(n_cells)])
    var = pd.DataFrame({"gene_name": genes}, index=pd.Index(genes))
    adata = ad.AnnData(X=sp.csr_matrix(counts[order]), obs=obs, var=var)
    adata.layers["counts"] = adata.X.copy()
    log_normalise(adata, target_sum=1e4)
    dataset_id = f"simulated_gears_{cfg.cell_type.lower()}"
    adata.uns["scprior"] = {
        "dataset_id": dataset_id, "real": False, "species": "human", "has_counts": True,
        "title": f"SIMULATED CRISPRa/i Perturb-seq ({cfg.cell_type}-like), GEARS layout",
        "simulator": "scprior.data.perturb_sim.simulate_perturb_seq",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "normalisation": "log1p(normalize_total(target_sum=10000))",
    }
    canon = list(delta)
    adata.uns["simulation"] = {
        "conditions": np.asarray(canon, dtype=object),
        "delta": np.stack([delta[c] for c in canon]).astype(np.float32),
        "perturbed_genes": np.asarray(perturbed, dtype=object),
        "modality": np.asarray([modality[g] for g in perturbed], dtype=object),
        "shift": np.asarray([shift_of[g] for g in perturbed], dtype=np.float32),
        "doubles": np.asarray([f"{a}+{b}" for a, b in doubles], dtype=object),
        "gi_type": np.asarray([gi_type[f"{a}+{b}"] for a, b in doubles], dtype=object),
        "gi_strength": np.asarray([gi_strength[f"{a}+{b}"] for a, b in doubles], dtype=np.float32),
        "edges_tf": edges["tf"].to_numpy(dtype=object),
        "edges_target": edges["target"].to_numpy(dtype=object),
        "edges_weight": edges["weight"].to_numpy(dtype=np.float32),
        "twin_labelled_genes": np.asarray(twins, dtype=object),
    }
    complete_gears(adata)
    return adata


def simulation_truth(adata: ad.AnnData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(noise-free delta per canonical condition x gene, table of doubles with GI type/strength)."""
    sim = adata.uns.get("simulation")
    if sim is None:
        raise ScpriorInputError("This AnnData has no uns['simulation']: it was not made by simulate_perturb_seq.")
    delta = pd.DataFrame(np.asarray(sim["delta"]), index=list(sim["conditions"]), columns=adata.var_names)
    gi = pd.DataFrame({"condition": list(sim["doubles"]), "gi_type": list(sim["gi_type"]),
                       "gi_strength": np.asarray(sim["gi_strength"], dtype=float)})
    return delta, gi
