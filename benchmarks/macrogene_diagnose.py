"""Why do the macrogene models (SATURN core) not transfer labels across species on Baron? Dev diagnostics.

Seed 0, 1 thread, the notebook's settings (``params.yaml``, ``notebooks.01_cross_species_integration``)
with the overrides given on the command line. Prints one JSON line per embedding:

* geometry: mean L2 norm, fraction of always-zero dimensions (ReLU), the distance between the two
  species' centroids over the mean within-(species, type) spread, and the same for matched types
  (mean over shared types of the cross-species centroid distance / spread);
* label-free species mixing: mean fraction of each cell's 15 nearest neighbours from the other
  species, divided by that species' share of the cells (1 = fully mixed, 0 = apart);
* SATURN-protocol transfer (accuracy) both ways, ``source_test_accuracy`` (held-out 20% of the
  *source* cells) and within-species 5-fold kNN balanced accuracy;
* training: pretraining epochs run / best epoch (held-out ZINB loss), mean mined triplets per batch
  and the share of anchors in a batch that have a cross-species (MNN) positive.

SELECTION RULE (issue #10 section 4): a setting is chosen only on label-free criteria or on the
source species: the pretraining held-out loss, ``source_test_accuracy`` (source cells held out of
the classifier) and the label-free species mixing, seed 0 only. The target-species transfer and
kNN numbers are printed for the report; they never choose anything.

    PYTHONPATH=lib nice -n 10 .venv/bin/python benchmarks/macrogene_diagnose.py --positives all cross_species
    PYTHONPATH=lib .venv/bin/python benchmarks/macrogene_diagnose.py --set hvg_ortholog_partners=false --max-cells 800
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from scprior.models.macrogene_integrator import MacrogeneIntegratorConfig, metric_learn, pretrain
from scprior.models.metric_learning import cross_species_positives, species_prefixed
from scprior.runtime import set_threads
from scprior.tasks.integration.methods import prepare_task, source_labels_only, with_overrides
from scprior.tasks.integration.metrics import saturn_label_transfer, within_species_knn

PAIR = ("human", "mouse")


def geometry(z: np.ndarray, labels: np.ndarray, species: np.ndarray) -> dict:
    """Norms, dead dimensions, species-centroid offset and matched-type offset over within-type spread."""
    out = {"norm": float(np.linalg.norm(z, axis=1).mean()), "dead_dims": float((np.abs(z).max(0) == 0).mean())}
    spread, cents = [], {}
    for s in PAIR:
        for t in np.unique(labels[species == s]):
            m = (species == s) & (labels == t)
            if m.sum() >= 5:
                c = z[m].mean(0)
                cents[(s, t)] = c
                spread.append(np.sqrt(((z[m] - c) ** 2).sum(1).mean()))
    sp_ = float(np.mean(spread))
    off = np.linalg.norm(z[species == PAIR[0]].mean(0) - z[species == PAIR[1]].mean(0))
    shared = [t for (s, t) in cents if s == PAIR[0] and (PAIR[1], t) in cents]
    matched = np.mean([np.linalg.norm(cents[(PAIR[0], t)] - cents[(PAIR[1], t)]) for t in shared])
    out.update({"species_offset/spread": float(off / sp_), "matched_type_dist/spread": float(matched / sp_)})
    return out


def species_mixing(z: np.ndarray, species: np.ndarray, k: int = 15) -> float:
    """Label-free: mean other-species share of each cell's k nearest neighbours / that species' share."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)[:, 1:]
    other = (species[idx] != species[:, None]).mean(1)
    share = np.asarray([(species != s).mean() for s in species])
    return float(np.mean(other / share))


def score(name: str, emb, labels, species, seconds: float, extra: dict | None = None) -> dict:
    """``emb``: one embedding or {"a->b": embedding} (target labels unseen)."""
    row = {"embedding": name, "seconds": round(seconds, 1), **(extra or {})}
    base = emb if isinstance(emb, np.ndarray) else emb[f"{PAIR[0]}->{PAIR[1]}"]
    row.update(geometry(base, labels, species))
    row["species_mixing"] = species_mixing(base, species)
    for s, t in (PAIR, PAIR[::-1]):
        e = emb if isinstance(emb, np.ndarray) else emb[f"{s}->{t}"]
        r = saturn_label_transfer(e, labels, species, source=s, target=t, seed=0)
        row[f"transfer[{s}->{t}]"] = round(r["accuracy"], 3)
        row[f"source_test[{s}]"] = round(r["source_test_accuracy"], 3)
    row.update({f"knn[{k}]": round(v, 3) for k, v in within_species_knn(base, labels, species, seed=0).items()})
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return row


def batch_stats(pre, z: np.ndarray, batch_size: int, seed: int = 0) -> dict:
    """On random batches of the metric-learning size: share of anchors with a cross-species positive."""
    rng = np.random.default_rng(seed)
    weak = species_prefixed(pre.labels, np.asarray(pre.species)[pre.cell_species])
    codes = torch.as_tensor(np.unique(weak, return_inverse=True)[1])
    sp_t = torch.as_tensor(pre.cell_species)
    zt = torch.nn.functional.normalize(torch.as_tensor(z, dtype=torch.float32), dim=1)
    share = []
    for _ in range(10):
        b = torch.as_tensor(rng.choice(len(z), size=batch_size, replace=False))
        pos = cross_species_positives(zt[b], codes[b], sp_t[b])
        cross = pos & (sp_t[b][:, None] != sp_t[b][None, :])
        share.append(cross.any(1).float().mean().item())
    return {"anchors_with_cross_positive": float(np.mean(share))}


def ortholog_agreement(pre, orthologs) -> dict:
    """Do one-to-one orthologs (both on the model's axis) feed the same macrogenes? Per set: share of
    pairs whose top macrogene agrees (chance: sum of squared top-macrogene shares), and the mean
    cosine of their weight rows vs random human-mouse pairs; also the pair count (HVG overlap)."""
    from scprior.tasks.integration.data import one2one_pairs

    axis = pre.axis
    pos = {(s, g): i for i, (s, g) in enumerate(zip(axis["species"], axis["gene"]))}
    hs, ms = [g for s, g in pos if s == "human"], [g for s, g in pos if s == "mouse"]
    pairs = one2one_pairs(orthologs, hs, ms)
    hi = np.asarray([pos[("human", g)] for g in pairs["human"]])
    mi = np.asarray([pos[("mouse", g)] for g in pairs["mouse"]])
    out = {"ortholog_pairs_on_axis": int(len(pairs)), "genes_on_axis": int(len(axis))}
    rng = np.random.default_rng(0)
    for k, layer in pre.model.macrogenes.items():
        w = layer.weights().detach().numpy()
        top = w.argmax(1)
        share = np.bincount(top[np.r_[hi, mi]], minlength=w.shape[1]) / (2 * len(hi))
        wn = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        rh = rng.choice(np.asarray([pos[("human", g)] for g in hs]), len(hi))
        rm = rng.choice(np.asarray([pos[("mouse", g)] for g in ms]), len(hi))
        out[f"{k}_top_agree"] = float((top[hi] == top[mi]).mean())
        out[f"{k}_top_agree_chance"] = float((share ** 2).sum())
        out[f"{k}_cos_orthologs"] = float((wn[hi] * wn[mi]).sum(1).mean())
        out[f"{k}_cos_random"] = float((wn[rh] * wn[rm]).sum(1).mean())
    return out


def scib_totals(task, z: np.ndarray) -> dict:
    """scib-metrics total / bio / batch of ``z`` beside PCA (the notebook's scoring, species as batch)."""
    import anndata as ad

    from scprior.tasks.integration import baselines
    from scprior.tasks.integration.metrics import scib_benchmark, scib_scores

    a = ad.AnnData(obs=task.obs[["cell_type", "species", "batch"]].copy())
    a.obsm["X_pca"] = baselines.pca_embedding(task.orthologs, n_comps=50, seed=0)
    a.obsm["X_model"] = np.asarray(z, dtype=np.float32)
    table, _ = scib_benchmark(a, ["X_pca", "X_model"], label_key="cell_type", batch_key="species", pre_key="X_pca")
    sc = scib_scores(table)
    return {f"scib_{k}[{m}]": round(float(sc.loc[f"X_{m}", c]), 3) for m in ("pca", "model")
            for k, c in (("total", "Total"), ("bio", "Bio conservation"), ("batch", "Batch correction"))}


PRETRAIN_KEYS = ("n_macrogenes", "hidden_dim", "latent_dim", "dropout", "learn_weights", "l1_weight",
                 "similarity_weight", "similarity_pairs", "adversarial_weight", "pretrain_epochs", "pretrain_lr",
                 "batch_size", "val_fraction", "patience", "seed")


def cached_pretrain(task, sets, cfg: MacrogeneIntegratorConfig, method: str, cache: str | None):
    """:func:`pretrain`, or (same method, HVGs and pretraining settings) the cached state dict loaded
    into a 0-epoch pretraining of the same architecture. Dev cache only (our own tensors, weights_only)."""
    import dataclasses
    import hashlib

    from scprior.safe_io import load_torch_tensors, save_torch_atomic

    if cache is None:
        return pretrain(task.hvg, sets, config=cfg, name=method)
    c = dataclasses.asdict(cfg)
    genes = {s: list(a.var_names) for s, a in task.hvg.items()}
    key = hashlib.sha1(json.dumps([method, sorted(sets), {k: c[k] for k in PRETRAIN_KEYS}, genes,
                                   {s: a.n_obs for s, a in task.hvg.items()}]).encode()).hexdigest()[:12]
    path = Path(cache) / f"{method}_{key}.pt"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        pre = pretrain(task.hvg, sets, config=dataclasses.replace(cfg, pretrain_epochs=0), name=method)
        pre.model.load_state_dict(load_torch_tensors(path, what="dev cache"))
        pre.model.eval()
        from scprior.models.batching import predict_batches

        pre.embedding = predict_batches(lambda x, s: pre.model.encode(x, s), pre.counts,
                                        torch.as_tensor(pre.cell_species))
        info = json.loads(meta.read_text())
        pre.history.best_epoch, pre.history.best_val_loss = info["best_epoch"], info["best_val_loss"]
        pre.history.history = [{}] * info["epochs_run"]
        pre.history.stopped_early = info["stopped_early"]
        pre.model.config = dataclasses.replace(cfg)
        return pre
    pre = pretrain(task.hvg, sets, config=cfg, name=method)
    Path(cache).mkdir(parents=True, exist_ok=True)
    save_torch_atomic({k: v.detach().cpu() for k, v in pre.model.state_dict().items()}, path)
    h = pre.history
    meta.write_text(json.dumps({"best_epoch": h.best_epoch, "best_val_loss": float(h.best_val_loss),
                                "epochs_run": h.epochs_run, "stopped_early": h.stopped_early}))
    return pre


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", nargs="*", default=[], help="settings overrides, e.g. macrogenes.latent_dim=256 n_hvg=2000")
    ap.add_argument("--positives", nargs="*", default=["cross_species"], help="metric-learning positives to compare")
    ap.add_argument("--methods", nargs="*", default=["saturn"], help="saturn (protein) and/or unify (protein+text)")
    ap.add_argument("--no-unseen", action="store_true", help="skip the target-labels-unseen setting")
    ap.add_argument("--max-cells", type=int, default=None)
    ap.add_argument("--out", default=None, help="append the JSON rows to this file")
    ap.add_argument("--scib", action="store_true",
                    help="also score scib total (species as batch, PCA as reference) of the both-labels embedding")
    ap.add_argument("--cache", default=None, help="folder for pretrained state dicts (reused when the settings match)")
    args = ap.parse_args()
    set_threads(1)
    nb = yaml.safe_load(Path("params.yaml").read_text())["notebooks"]["01_cross_species_integration"]
    over: dict = {}
    for item in args.set:
        key, val = item.split("=", 1)
        parts = key.split(".")
        d = over
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = yaml.safe_load(val)
    nb = with_overrides(nb, over)
    t = time.perf_counter()
    task = prepare_task(nb["processed_dir"], nb["knowledge_dir"], n_hvg=int(nb["n_hvg"]),
                        n_hvg_orthologs=int(nb["n_hvg_orthologs"]), max_cells=args.max_cells, seed=0,
                        embedding_sources=nb.get("embedding_sources"),
                        hvg_ortholog_partners=bool(nb.get("hvg_ortholog_partners", False)))
    print(json.dumps({"prepare_seconds": round(time.perf_counter() - t, 1), "overrides": over,
                      "hvgs": {s: a.n_vars for s, a in task.hvg.items()}}), flush=True)
    rows = []
    for method in args.methods:
        sets = {"protein": task.knowledge.embeddings["protein"]} if method == "saturn" else task.knowledge.embeddings
        adv = 0.0 if method == "saturn" else float(nb.get("unify_adversarial_weight", 0.0))
        cfg = MacrogeneIntegratorConfig(**{**nb["macrogenes"], "seed": 0, "progress": True, "label_mode": "weak",
                                           "adversarial_weight": adv})
        t = time.perf_counter()
        pre = cached_pretrain(task, sets, cfg, method, args.cache)
        t_pre = time.perf_counter() - t
        hist = pre.history
        labels = np.asarray(pre.labels).astype(str)
        species = np.asarray(pre.species)[pre.cell_species]
        info = {"epochs_run": hist.epochs_run, "best_epoch": hist.best_epoch,
                "best_val_nll": round(float(hist.best_val_loss), 2), "stopped_early": hist.stopped_early}
        rows.append(score(f"{method} pretrained", pre.embedding, labels, species, t_pre,
                          {**info, **batch_stats(pre, pre.embedding, cfg.batch_size),
                           **ortholog_agreement(pre, task.knowledge.orthologs)}))
        for positives in args.positives:
            pre.model.config.positives = positives
            t = time.perf_counter()
            _, mh, z = metric_learn(pre, name=method, normalize=False)
            trip = float(np.mean([h["train_triplets"] for h in mh.history]))
            if args.scib:
                print(json.dumps({"embedding": f"{method} metric both-labels positives={positives}",
                                  **scib_totals(task, z)}), flush=True)
            rows.append(score(f"{method} metric both-labels positives={positives}", z, labels, species,
                              time.perf_counter() - t, {"triplets_per_batch": round(trip, 1),
                                                        "val_triplet_loss_last": round(mh.history[-1]["val_loss"], 4),
                                                        **batch_stats(pre, z, cfg.batch_size)}))
            if not args.no_unseen:
                t = time.perf_counter()
                un = source_labels_only(pre, name=method, pair=pre.species)
                rows.append(score(f"{method} metric target-unseen positives={positives}", un, labels, species,
                                  time.perf_counter() - t))
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps({"overrides": over, **r}) + "\n")


if __name__ == "__main__":
    main()
