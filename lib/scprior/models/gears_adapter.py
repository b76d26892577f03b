"""GEARS itself (PyPI ``cell-gears``, snap-stanford/GEARS) on our splits, offline.

GEARS's ``PertData`` downloads ``gene2go_all.pkl`` (gene symbol -> set of GO ids) and, for its
default graph, an essential-gene list and a precomputed GO graph from Harvard Dataverse. Here we
build what it would download from the knowledge layer's GO annotations instead:

- ``gene2go_all.pkl``: written by us from ``go_annotations`` for the dataset's genes (its
  spelling of each symbol, matched case-insensitively), in a private temporary folder; GEARS reads
  this pickle, which we wrote ourselves from our own tables (no user pickle is ever loaded);
- the perturbation gene set (GEARS's ``gene_set_path``): the measured genes and every perturbed
  gene of the dataset (test ones included, so they can be queried), those with GO terms;
- the GO graph: GEARS's ``get_GO_edge_list`` rule (Jaccard of GO sets > 0.1, the top
  ``num_similar_genes_go_graph + 1`` sources per target), computed here as a sparse product and
  handed to ``model_initialize(G_go=..., G_go_weight=...)`` so GEARS writes nothing into the
  working directory;
- the split: our split as GEARS's ``custom`` split (``{'train', 'val', 'test'}`` pickle).

GEARS then trains as published (its loss with the direction term, Adam + StepLR, best epoch on
validation top-20-DE MSE; its test pass is skipped, we score with our metrics). Perturbations of
genes outside GEARS's gene graph cannot be predicted (GEARS raises); :meth:`GearsModel.can_predict`
says which. To fit the CPU budget ``max_cells_per_condition`` caps the training cells per condition
(seeded); the setting is recorded in :attr:`GearsModel.notes`.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.gears import DE_KEY, NON_DROPOUT_KEY, NON_ZERO_KEY, condition_name
from scprior.data.perturbation_data import PerturbationData, symbol_key
from scprior.data.perturbation_splits import PerturbationSplit
from scprior.data.perturbations import (
    CONTROL,
    canonical_condition,
    parse_condition,
    perturbed_genes,
)
from scprior.errors import ScpriorInputError
from scprior.runtime import pick_device
from scprior.safe_io import save_torch_atomic


class _SeriesIndexCsr(sp.csr_matrix):
    """CSR matrix that accepts a pandas boolean Series as row index: cell-gears 0.1.2 indexes
    ``adata.X`` with ``adata.obs.condition == 'ctrl'``, which current SciPy rejects."""

    def __getitem__(self, key):
        if isinstance(key, pd.Series):
            key = key.to_numpy()
        return super().__getitem__(key)


@dataclass
class GearsConfig:
    """GEARS settings (its defaults, except epochs and the cell cap, sized for a CPU)."""

    hidden_size: int = 64
    num_similar_genes_go_graph: int = 20
    num_similar_genes_co_express_graph: int = 20
    coexpress_threshold: float = 0.4
    direction_lambda: float = 0.1
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 5e-4
    batch_size: int = 32
    max_cells_per_condition: int | None = 40
    max_control_cells: int | None = 400
    n_ctrl_predict: int = 32  # control cells averaged per predicted perturbation (GEARS.predict: 300)
    device: str = "auto"
    verbose: bool = False


def gears_version() -> str:
    """The installed ``cell-gears`` version."""
    from importlib.metadata import version

    return version("cell-gears")


def go_graph_edges(gene2go: dict[str, set[str]], genes: Sequence[str], k: int) -> pd.DataFrame:
    """GEARS's GO graph over ``genes`` (``source``, ``target``, ``importance``): Jaccard of GO sets > 0.1,
    per target the ``k + 1`` strongest sources (itself included, as GEARS)."""
    terms = sorted({t for g in genes for t in gene2go[g]})
    col = {t: i for i, t in enumerate(terms)}
    rows = [i for i, g in enumerate(genes) for _ in gene2go[g]]
    cols = [col[t] for g in genes for t in gene2go[g]]
    A = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(genes), len(terms)))
    inter = (A @ A.T).toarray()
    size = np.asarray(A.sum(1)).ravel()
    jac = inter / (size[:, None] + size[None, :] - inter)
    src, tgt = np.nonzero(jac > 0.1)
    edges = pd.DataFrame({"source": np.asarray(genes, dtype=object)[src], "target": np.asarray(genes, dtype=object)[tgt],
                          "importance": jac[src, tgt]})
    edges = edges.sort_values(["target", "importance"], ascending=[True, False], kind="stable")
    return edges.groupby("target", sort=False).head(k + 1).reset_index(drop=True)


class GearsModel:
    """GEARS on one :class:`PerturbationData`, fitted on a :class:`PerturbationSplit`, called like GEARS."""

    def __init__(self, task: PerturbationData, go_annotations: pd.DataFrame, *, config: GearsConfig | None = None,
                 seed: int = 0):
        self.task, self.config, self.seed = task, config or GearsConfig(), seed
        ann = go_annotations[["symbol", "go_id"]].dropna().astype(str)
        by_key = {k: set(v) for k, v in ann.groupby(ann["symbol"].map(symbol_key))["go_id"]}
        genes = list(dict.fromkeys(list(task.genes) + perturbed_genes(task.conditions)))
        self.gene2go = {g: by_key[symbol_key(g)] for g in genes if symbol_key(g) in by_key}
        self.pert_names = sorted(self.gene2go)  # GEARS: np.unique of the genes with GO terms
        self._keys = {symbol_key(g): g for g in self.pert_names}
        self.gears = None
        self.notes: dict = {}

    def can_predict(self, condition: str) -> bool:
        """True when every perturbed gene of ``condition`` is in GEARS's gene graph."""
        return all(symbol_key(g) in self._keys for g in parse_condition(condition))

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of the perturbed genes of ``conditions`` in GEARS's gene graph."""
        genes = [g for c in conditions for g in parse_condition(c)]
        return float(np.mean([symbol_key(g) in self._keys for g in genes])) if genes else 0.0

    def _gears_label(self, condition: str) -> str:
        genes = [self._keys[symbol_key(g)] for g in parse_condition(condition)]
        return f"{genes[0]}+{CONTROL}" if len(genes) == 1 else "+".join(genes)

    def _training_adata(self, split: PerturbationSplit, rng: np.random.Generator):
        task, cfg = self.task, self.config
        use = {c: s for c, s in split.assignment.items() if s in ("train", "val")}
        keep = [c for c in use if c == CONTROL or self.can_predict(c)]
        self.notes["train_val_conditions_outside_graph"] = len(use) - len(keep)
        cells = []
        for c in keep:
            idx = np.flatnonzero(task.labels == c)
            cap = cfg.max_control_cells if c == CONTROL else cfg.max_cells_per_condition
            if cap is not None and len(idx) > cap:
                idx = np.sort(rng.choice(idx, cap, replace=False))
            cells.append(idx)
        adata = task.adata[np.sort(np.concatenate(cells))].copy()
        adata.X = sp.csr_matrix(adata.X)
        labels = adata.obs["condition"].astype(str)
        adata.obs = adata.obs[["cell_type"]].astype(str).assign(
            condition=[c if c == CONTROL else self._gears_label(c) for c in labels])
        # GEARS recomputes condition_name from its labels: key the DE tables by those names
        old_names = dict(zip(task.adata.obs["condition"].astype(str), task.adata.obs["condition_name"].astype(str)))
        cts = dict(zip(task.adata.obs["condition"].astype(str), task.adata.obs["cell_type"].astype(str)))
        uns = {}
        for key in (DE_KEY, NON_DROPOUT_KEY, NON_ZERO_KEY, "non_dropout_gene_idx", "non_zeros_gene_idx"):
            if key not in task.adata.uns:
                continue
            table = {}
            for raw in pd.unique(labels):
                if raw == CONTROL or old_names[raw] not in task.adata.uns[key]:
                    continue
                table.setdefault(condition_name(cts[raw], self._gears_label(raw)), task.adata.uns[key][old_names[raw]])
            uns[key] = table
        adata.uns = uns
        adata.var = pd.DataFrame({"gene_name": task.genes}, index=task.adata.var_names)
        sets = {"train": set(), "val": set()}
        for raw, gl in zip(labels, adata.obs["condition"]):
            sets[split.assignment[raw]].add(gl)
        return adata, {k: sorted(v) for k, v in sets.items()}

    def fit(self, split: PerturbationSplit, *, weights: str | Path | None = None) -> GearsModel:
        """Train GEARS on the split's train conditions, best epoch on its val conditions.

        ``weights``: a ``.pt`` path for the best model's state dict (weights only, with version and
        settings); GEARS's own files (gene2go pickle, cell graphs) live in a temporary folder
        removed afterwards.
        """
        import torch
        from gears import GEARS, PertData
        from gears.utils import GeneSimNetwork

        cfg = self.config
        if not split.conditions("val"):
            raise ScpriorInputError("GEARS chooses its best epoch on validation conditions; the split has none.")
        random.seed(self.seed)
        np.random.seed(self.seed)  # noqa: NPY002 - GEARS pairs cells with the global NumPy state
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        adata, sets = self._training_adata(split, rng)
        start = time.perf_counter()
        quiet = contextlib.nullcontext() if cfg.verbose else contextlib.redirect_stdout(io.StringIO())
        with tempfile.TemporaryDirectory(prefix="scprior_gears_") as tmp, quiet:
            tmp = Path(tmp)
            with open(tmp / "gene2go_all.pkl", "wb") as fh:  # our own table, for GEARS to read
                pickle.dump(self.gene2go, fh)
            with open(tmp / "pert_genes.pkl", "wb") as fh:  # every gene a query may perturb, test ones included
                pickle.dump(list(self.pert_names), fh)
            pdata = PertData(str(tmp), gene_set_path=str(tmp / "pert_genes.pkl"), default_pert_graph=False)
            pdata.new_data_process(dataset_name="scprior", adata=adata, skip_calc_de=True)
            with open(tmp / "split.pkl", "wb") as fh:
                pickle.dump({**sets, "test": sets["val"][:1]}, fh)
            pdata.prepare_split(split="custom", split_dict_path=str(tmp / "split.pkl"))
            pdata.get_dataloader(batch_size=cfg.batch_size, test_batch_size=cfg.batch_size)
            pdata.dataloader.pop("test_loader", None)  # we score with our own metrics
            device = pick_device(cfg.device)
            pdata.adata.X = _SeriesIndexCsr(pdata.adata.X)
            model = GEARS(pdata, device=device)
            pert_list = list(pdata.pert_names)
            edges = go_graph_edges(self.gene2go, pert_list, cfg.num_similar_genes_go_graph)
            net = GeneSimNetwork(edges, pert_list, node_map=pdata.node_map_pert)
            model.model_initialize(hidden_size=cfg.hidden_size, num_similar_genes_go_graph=cfg.num_similar_genes_go_graph,
                                   num_similar_genes_co_express_graph=cfg.num_similar_genes_co_express_graph,
                                   coexpress_threshold=cfg.coexpress_threshold, direction_lambda=cfg.direction_lambda,
                                   G_go=net.edge_index, G_go_weight=net.edge_weight)
            model.train(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay)
            model.adata = model.adata.copy()  # detach from the temporary h5ad before the folder goes
            model.ctrl_adata = model.adata[model.adata.obs["condition"] == CONTROL].copy()
        self.gears = model
        self.notes.update(gears_version=gears_version(), fit_seconds=time.perf_counter() - start,
                          go_graph_edges=int(len(edges)), pert_graph_genes=len(pert_list),
                          train_cells=int((adata.obs["condition"].isin(sets["train"])).sum()),
                          settings=str({k: v for k, v in asdict(cfg).items() if k != "verbose"}))
        if weights is not None:
            path = Path(weights)
            save_torch_atomic({"state_dict": {k: v.detach().cpu() for k, v in model.best_model.state_dict().items()},
                               "gears_version": gears_version(), "settings": asdict(cfg), "seed": self.seed,
                               "pert_list": pert_list, "genes": list(self.task.genes)}, path)
            self.notes["weights"] = path.name
        return self

    def predict(self, perturbations: Sequence[str] | Sequence[Sequence[str]]) -> pd.DataFrame:
        """Mean predicted profile (rows: canonical names, columns: symbols) of each perturbation
        (condition names or gene lists), as GEARS's ``predict`` computes it but over
        ``n_ctrl_predict`` random control cells (GEARS: 300)."""
        if self.gears is None:
            raise ScpriorInputError("GearsModel.predict before fit.")
        conditions = [canonical_condition(p) if isinstance(p, str) else
                      canonical_condition("+".join(list(p) if len(p) == 2 else [p[0], CONTROL])) for p in perturbations]
        bad = [c for c in conditions if not self.can_predict(c)]
        if bad:
            raise ScpriorInputError(f"GEARS cannot predict {bad[:3]}: their genes have no GO terms (not in its graph).")
        import torch
        from gears.utils import create_cell_graph_dataset_for_prediction
        from torch_geometric.loader import DataLoader

        np.random.seed(self.seed + 1)  # noqa: NPY002 - GEARS draws its control cells from the global state
        model = self.gears.best_model.to(self.gears.device).eval()
        rows = []
        for c in conditions:  # GEARS.predict's steps, with n_ctrl_predict control cells instead of 300
            query = [self._keys[symbol_key(g)] for g in parse_condition(c)]
            graphs = create_cell_graph_dataset_for_prediction(query, self.gears.ctrl_adata, self.gears.pert_list,
                                                              self.gears.device, num_samples=self.config.n_ctrl_predict)
            batch = next(iter(DataLoader(graphs, len(graphs), shuffle=False))).to(self.gears.device)
            with torch.no_grad():
                rows.append(model(batch).detach().cpu().numpy().mean(0).astype(np.float64))
        return pd.DataFrame(rows, index=conditions, columns=self.task.genes)

    def __call__(self, perturbations):
        """GEARS-style: ``model([["KLF1"], ["KLF1", "GATA1"]])``."""
        return self.predict(perturbations)
