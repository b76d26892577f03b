"""Why does the UCE-style encoder not read the cell on Baron? Diagnostics on a small real subset.

Prints, for ``--cells`` Baron human cells (1 thread):

* token statistics: mean pairwise cosine of the protein tokens (after the L2 normalisation the
  encoder applies) and the norms at the decoder input (cell vector vs projected gene token);
* sentence coverage: expressed genes per cell and the distinct genes a sentence of
  ``sample_size`` draws carries;
* at initialisation: mean pairwise cosine of the CLS embeddings (do cells differ at all?) and the
  gradient norm that reaches the encoder vs the decoder;
* after short trainings (one per variant): held-out loss, decoder gap (real vs shuffled cell
  vectors) and 5-fold kNN balanced accuracy of the embedding beside PCA's on the same cells.

Usage: ``PYTHONPATH=lib .venv/bin/python benchmarks/uce_diagnose.py --cells 600 --epochs 10``.
``--task --cells 0 --epochs 15 --patience 3 --variants hvg_pos_scaled_mean_dot`` trains on both
species as notebook 01 reads them (all cells, the task's HVGs) and scores kNN beside the pipeline's
ortholog PCA: the run behind ``params.yaml`` ``uce:`` (issue #10). Add
``--sentences 1,4,8`` for the embedding averaged over K sentences per cell (``embed_sentences``)
and ``..._wu_td0`` for the same settings without dropout inside the transformer (2x faster steps).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from scprior.models.uce import (
    SentenceData,
    UCEConfig,
    UCEModel,
    build_vocabulary,
    masked_expression_loss,
    mean_pairwise_cosine,
    train_uce,
)
from scprior.runtime import set_threads
from scprior.tasks.integration import baselines
from scprior.tasks.integration.data import load_baron, load_knowledge
from scprior.tasks.integration.metrics import within_species_knn

BASE = dict(d_model=32, nhead=2, d_hid=64, nlayers=2, output_dim=32, head_hidden=64, decoder_hidden=(64, 32),
            sample_size=64, n_positive=16, n_negative=16, batch_size=64, val_fraction=0.1, patience=2,
            device="cpu", progress=False)


def static_checks(adatas, know, cfg: UCEConfig) -> dict:
    vocab = build_vocabulary(know.embeddings["protein"], know.gene_tables, seed=cfg.token_seed)
    tok = vocab.tokens[3 + sum(len(v) for v in vocab.chrom_tokens.values()):]
    rng = np.random.default_rng(0)
    sub = tok[rng.choice(len(tok), size=min(2000, len(tok)), replace=False)]
    out = {"token_dim": int(tok.shape[1]), "token_norm_mean": float(np.linalg.norm(tok, axis=1).mean()),
           "token_mean_pairwise_cosine": mean_pairwise_cosine(sub)}
    data = SentenceData(vocab, adatas, cfg, mode="fixed", seed=0, queries=True)
    n_expr, n_distinct = [], []
    for i in range(min(200, len(data))):
        _, local, _ = data._cell(i)
        n_expr.append(len(local))
    toks = data.collate(list(range(min(200, len(data)))))[0].numpy()
    gene_tok = toks >= 3 + sum(len(v) for v in vocab.chrom_tokens.values())
    n_distinct = [len(np.unique(t[g])) for t, g in zip(toks, gene_tok)]
    out.update({"expressed_genes_per_cell_median": float(np.median(n_expr)),
                "distinct_genes_per_sentence_median": float(np.median(n_distinct)),
                "sentence_length": int(toks.shape[1])})
    torch.manual_seed(0)
    model = UCEModel(vocab.tokens, cfg)
    batch = data.collate(list(range(64)))
    model.train()
    cell = model(batch[0])
    g = model.gene_proj(model.token_table[batch[1]])
    out["cell_norm_at_decoder"] = float(cell.norm(dim=1).mean())
    out["gene_norm_at_decoder"] = float(g.norm(dim=-1).mean())
    model.eval()
    with torch.no_grad():
        z = torch.cat([model(data.collate(list(range(a, min(a + 64, len(data)))))[0])
                       for a in range(0, min(len(data), 320), 64)]).numpy()
    out["init_cls_mean_pairwise_cosine"] = mean_pairwise_cosine(z)
    model.train()
    loss = masked_expression_loss(model, batch, 0)["loss"]
    loss.backward()

    def gnorm(mod):
        return float(torch.sqrt(sum((p.grad ** 2).sum() for p in mod.parameters() if p.grad is not None)))

    out.update({"grad_norm_transformer": gnorm(model.transformer), "grad_norm_cell_head": gnorm(model.cell_head),
                "grad_norm_decoder": gnorm(model.expression_decoder), "grad_norm_gene_proj": gnorm(model.gene_proj)})
    return out


def sentence_content(adata, know, labels, species, *, sizes=(64, 128, 256, 1024)) -> dict:
    """How much cell type a sentence carries at all: 5-fold kNN balanced accuracy on a 50-d SVD of
    each cell's bag of sampled genes (log1p multiplicities), per sample size and weighting."""
    import scipy.sparse as sp
    from sklearn.decomposition import TruncatedSVD

    vocab = build_vocabulary(know.embeddings["protein"], know.gene_tables)
    first_gene = 3 + sum(len(v) for v in vocab.chrom_tokens.values())
    out = {}
    for weights in ("log1p", "counts"):
        for size in sizes:
            cfg = UCEConfig(**{**BASE, "sample_size": size, "sample_weights": weights})
            data = SentenceData(vocab, {"human": adata}, cfg, mode="fixed", queries=False)
            toks = np.concatenate([data.collate(list(range(i, min(i + 100, adata.n_obs))))[0].numpy()
                                   for i in range(0, adata.n_obs, 100)])
            keep = toks >= first_gene
            rows = np.repeat(np.arange(len(toks)), toks.shape[1])[keep.ravel()]
            bag = sp.csr_matrix((np.ones(len(rows)), (rows, toks.ravel()[keep.ravel()])),
                                shape=(len(toks), len(vocab.tokens)))
            bag.data = np.log1p(bag.data)
            z = TruncatedSVD(50, random_state=0).fit_transform(bag)
            out[f"{weights}/{size}"] = round(within_species_knn(z, labels, species)["human"], 3)
    return out


def oracle_decoder(adata, know, cfg: UCEConfig, *, epochs: int = 15, n_pcs: int = 32) -> dict:
    """Can the objective be solved from a cell vector that surely carries the cell type? The
    decoder alone (gene projection + expression decoder) trained on the training queries with each
    cell's PCA coordinates (unit norm, like the encoder's output) as its cell vector; held-out
    decoder accuracy with the real vs shuffled PCA vectors. A gap near 0 here means the queries,
    not the encoder, carry too little cell signal."""
    from sklearn.decomposition import PCA

    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    pcs = PCA(n_pcs, random_state=0).fit_transform(x)
    cell_vec = torch.as_tensor(pcs / np.linalg.norm(pcs, axis=1, keepdims=True), dtype=torch.float32)
    vocab = build_vocabulary(know.embeddings["protein"], know.gene_tables, seed=cfg.token_seed)
    cfg = UCEConfig(**{**vars(cfg), "output_dim": n_pcs})
    model = UCEModel(vocab.tokens, cfg)
    data = SentenceData(vocab, {"human": adata}, cfg, mode="train", seed=0)
    rng = np.random.default_rng(0)
    order = rng.permutation(adata.n_obs)
    tr, va = order[: int(0.8 * len(order))], order[int(0.8 * len(order)):]
    params = list(model.gene_proj.parameters()) + list(model.expression_decoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    torch.manual_seed(0)
    for _ in range(epochs):
        for b in np.array_split(rng.permutation(tr), max(1, len(tr) // cfg.batch_size)):
            _, q_tok, q_y, q_w = data.collate(list(b))
            logits = model.expression_logits(cell_vec[b], q_tok)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, q_y, weight=q_w)
            opt.zero_grad()
            loss.backward()
            opt.step()
    data.mode = "fixed"
    _, q_tok, q_y, q_w = data.collate(list(va))
    with torch.no_grad():
        real = model.expression_logits(cell_vec[va], q_tok)
        shuf = model.expression_logits(torch.roll(cell_vec[va], 1, dims=0), q_tok)
    w = q_w > 0

    def acc(lg):
        return float(((lg > 0).float() == q_y)[w].float().mean())

    return {"oracle_acc": round(acc(real), 4), "oracle_acc_shuffled": round(acc(shuf), 4),
            "oracle_gap": round(acc(real) - acc(shuf), 4)}


def trained(adatas, know, cfg: UCEConfig, labels, species, genes=None, sentences=()) -> dict:
    """Train one variant; kNN of its embedding, and per K in ``sentences`` the embedding averaged
    over K sentences per cell: kNN, label-free sentence stability and embedding seconds."""
    t, cpu = time.perf_counter(), time.process_time()
    res = train_uce(adatas, know.embeddings["protein"], know.gene_tables, config=cfg, diagnostics=600,
                    genes=genes if cfg.gene_set == "hvg" else None)
    z = res.adata.obsm["X_uce"]
    hist = res.train.history if res.train else []
    return {"seconds": round(time.perf_counter() - t, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "epochs": len(hist),
            "best_epoch": res.train.best_epoch if res.train else -1,
            "val_loss": [round(h["val_loss"], 4) for h in hist],
            "gap_train": round(res.diagnostics["train"]["decoder_gap"], 4),
            "gap_val": round(res.diagnostics["val"]["decoder_gap"], 4),
            "auroc_val": round(res.diagnostics["val"]["decoder_auroc"], 4),
            "blind_auroc": round(res.diagnostics["train"]["cell_blind_auroc"], 4),
            "cosine": round(res.diagnostics["mean_pairwise_cosine"], 4),
            "knn": within_species_knn(z, labels, species),
            **{f"sentences_{k}": _sentences(res, adatas, labels, species, k) for k in sentences}}


def _sentences(res, adatas, labels, species, k: int) -> dict:
    from scprior.models.uce import embed_cells, sentence_stability

    t = time.perf_counter()
    z = embed_cells(res.model, res.vocab, adatas, seed=res.model.config.seed, sentences=k)
    sec = time.perf_counter() - t
    return {"embed_seconds": round(sec, 1), "knn": within_species_knn(z, labels, species),
            "stability": round(sentence_stability(res.model, res.vocab, adatas, seed=res.model.config.seed,
                                                  sentences=k), 4)}


def task_run(args) -> None:
    """Both species as notebook 01 reads them (``prepare_task``; all cells unless ``--cells``),
    the task's HVGs passed to variants with ``gene_set: hvg``; PCA = the pipeline's ortholog PCA."""
    from scprior.tasks.integration.methods import fixed_threads, prepare_task

    task = prepare_task("data/processed", "data/processed/knowledge", n_hvg=1000, n_hvg_orthologs=2000,
                        max_cells=args.cells or None, seed=0)
    labels = task.obs["cell_type"].astype(str).to_numpy()
    species = task.obs["species"].astype(str).to_numpy()
    pca = baselines.pca_embedding(task.orthologs, n_comps=50, seed=0)
    print("pca", json.dumps(within_species_knn(pca, labels, species)), flush=True)
    genes = {s: list(a.var_names) for s, a in task.hvg.items()}
    fixed_threads(1)  # scanpy/sklearn above can leave MKL's OpenMP pool at 2+ threads: barrier waits
    print("threads", torch.get_num_threads(), flush=True)
    variants = variants_of()
    for name in filter(None, args.variants.split(",")):
        cfg = UCEConfig(**{**BASE, **variants.get(name, {}), "epochs": args.epochs,
                           "patience": args.patience})
        out = trained(task.adatas, task.knowledge, cfg, labels, species, genes=genes, sentences=args.sentences)
        print(name, json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cells", type=int, default=600)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--species", default="human")
    p.add_argument("--variants", default="base")
    p.add_argument("--static", action="store_true")
    p.add_argument("--oracle", action="store_true", help="decoder alone on PCA cell vectors")
    p.add_argument("--oracle-epochs", type=int, default=15)
    p.add_argument("--hvg", type=int, default=0, help="keep only this many HVGs (sentences and queries)")
    p.add_argument("--content", action="store_true", help="bag-of-genes kNN per sample size and weighting")
    p.add_argument("--task", action="store_true", help="both species as notebook 01 (all cells unless --cells)")
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--sentences", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                   help="with --task: also embed with K sentences per cell (e.g. 1,4,8): kNN and stability")
    args = p.parse_args()
    set_threads(1)
    if args.task:
        task_run(args)
        return
    adatas = load_baron("data/processed", max_cells=args.cells, seed=0)
    adatas = {s: a for s, a in adatas.items() if s in args.species.split(",")}
    know = load_knowledge("data/processed/knowledge")
    cfg = UCEConfig(**BASE, epochs=args.epochs)
    if args.static:
        print(json.dumps(static_checks(adatas, know, cfg), indent=1))
    import anndata as ad
    import scanpy as sc

    joint = ad.concat(list(adatas.values()), label="species", keys=list(adatas))
    labels = joint.obs["cell_type"].astype(str).to_numpy()
    species = joint.obs["species"].astype(str).to_numpy()
    for s, a in adatas.items():
        x = a.copy()
        sc.pp.highly_variable_genes(x, n_top_genes=2000, flavor="seurat")
        pca = baselines.pca_embedding(x[:, x.var["highly_variable"]], n_comps=50)
        print("pca", s, within_species_knn(pca, labels[species == s], species[species == s]))
    if args.hvg:
        for s, a in list(adatas.items()):
            x = a.copy()
            sc.pp.highly_variable_genes(x, n_top_genes=args.hvg, flavor="seurat")
            adatas[s] = a[:, x.var["highly_variable"].to_numpy()].copy()
    if args.oracle:
        for name in filter(None, args.variants.split(",")):
            print("oracle", name, args.oracle_epochs, json.dumps(oracle_decoder(adatas["human"], know, UCEConfig(
                **{**BASE, **variants_of().get(name, {}), "epochs": 0}), epochs=args.oracle_epochs)), flush=True)
        return
    if args.content:
        print("sentence bag-of-genes kNN", json.dumps(sentence_content(adatas["human"], know, labels, species)))
    variants = variants_of()
    for name in filter(None, args.variants.split(",")):
        cfg = UCEConfig(**{**BASE, **variants.get(name, {}), "epochs": args.epochs})
        print(name, json.dumps(trained(adatas, know, cfg, labels, species)), flush=True)


HVG = {"gene_set": "hvg", "sample_weights": "counts", "positive_weights": "counts", "decoder_cell_scale": True}


def variants_of() -> dict[str, dict]:
    return {
        "base": {},
        "counts": {"sample_weights": "counts"},
        "counts_scaled": {"sample_weights": "counts", "decoder_cell_scale": True},
        "scaled": {"decoder_cell_scale": True},
        "counts_scaled_lr3e-4": {"sample_weights": "counts", "decoder_cell_scale": True, "lr": 3e-4},
        "counts_scaled_mean": {"sample_weights": "counts", "decoder_cell_scale": True, "pooling": "mean"},
        "counts_mean": {"sample_weights": "counts", "pooling": "mean"},
        "counts_pos": {"sample_weights": "counts", "positive_weights": "counts"},
        "counts_pos_scaled": {"sample_weights": "counts", "positive_weights": "counts", "decoder_cell_scale": True},
        "counts_pos_scaled_mean": {"sample_weights": "counts", "positive_weights": "counts",
                                   "decoder_cell_scale": True, "pooling": "mean"},
        "batchneg": {"sample_weights": "counts", "negatives": "batch"},
        "batchneg_pos": {"sample_weights": "counts", "negatives": "batch", "positive_weights": "counts"},
        "counts_pos_scaled_lr2e-3": {"sample_weights": "counts", "positive_weights": "counts",
                                     "decoder_cell_scale": True, "lr": 2e-3},
        "counts_scaled_b16": {"sample_weights": "counts", "decoder_cell_scale": True, "batch_size": 16},
        "hvg_pos_scaled": HVG,
        "hvg_pos_scaled_mean": {**HVG, "pooling": "mean"},
        "hvg_pos_scaled_dot": {**HVG, "decoder": "dot"},
        "hvg_pos_scaled_mean_dot": {**HVG, "pooling": "mean", "decoder": "dot"},
        "hvg_pos_scaled_mean_dot_b16": {**HVG, "pooling": "mean", "decoder": "dot", "batch_size": 16},
        "hvg_pos_scaled_mean_b16": {**HVG, "pooling": "mean", "batch_size": 16},
        "hvg_pos_scaled_mean_b16_wu": {**HVG, "pooling": "mean", "batch_size": 16, "lr": 2e-3,
                                       "warmup_steps": 200},
        "hvg_pos_scaled_mean_dot_lr2e-3_wu": {**HVG, "pooling": "mean", "decoder": "dot", "lr": 2e-3,
                                              "warmup_steps": 100},
        "hvg_pos_scaled_mean_dot_lr2e-3_wu_td0": {**HVG, "pooling": "mean", "decoder": "dot", "lr": 2e-3,
                                                  "warmup_steps": 100, "transformer_dropout": 0.0},
        "hvg_pos_scaled_mean_dot_lr2e-3": {**HVG, "pooling": "mean", "decoder": "dot", "lr": 2e-3},
        "hvg_pos_scaled_mean_dot_b16_wu": {**HVG, "pooling": "mean", "decoder": "dot", "batch_size": 16,
                                           "lr": 2e-3, "warmup_steps": 200},
        "counts_scaled_b16_lr3e-3": {"sample_weights": "counts", "decoder_cell_scale": True, "batch_size": 16,
                                     "lr": 3e-3},
    }


if __name__ == "__main__":
    main()
