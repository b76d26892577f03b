"""UCE-style encoder: cell sentences, seeded per-cell embeddings, pretraining, the released-weights loader."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from integration_helpers import one_torch_thread, random_embeddings, random_gene_tables, two_species  # noqa: F401
from torch import nn
from torch.nn import functional as F

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.uce import (
    CHROM_END,
    CLS,
    PAD,
    UCEConfig,
    UCEModel,
    build_vocabulary,
    cell_sentence,
    embed_cells,
    load_uce,
    load_uce_state_dict,
    train_uce,
    uce_config_from_state_dict,
)

TINY = dict(d_model=16, nhead=2, d_hid=32, nlayers=2, output_dim=8, head_hidden=16, decoder_hidden=(16, 8),
            sample_size=24, n_positive=4, n_negative=4, batch_size=16, progress=False, device="cpu")


@pytest.fixture(scope="module")
def setup():
    adatas = two_species(n_human=40, n_mouse=36, n_genes=30)
    protein = random_embeddings(adatas, dim=10, source="protein_kmer", drop=3)
    tables = random_gene_tables(adatas)
    return adatas, protein, tables


def test_vocabulary_keeps_placed_genes_with_embeddings_in_genomic_order(setup):
    adatas, protein, tables = setup
    vocab = build_vocabulary(protein, tables)
    human = vocab.genes[vocab.genes["species"] == "human"]
    # 30 genes - 3 without embedding - 2 unplaced
    assert len(human) == 25 and vocab.species == ["human", "mouse"]
    key = list(zip(human["chrom"], human["start"]))
    assert key == sorted(key)
    assert vocab.tokens.shape[0] == 3 + sum(len(v) for v in vocab.chrom_tokens.values()) + len(vocab.genes)
    first = human.iloc[0]
    np.testing.assert_allclose(vocab.tokens[first["token"]], protein["human"].lookup([first["symbol"]])[0][0])


def test_cell_sentence_layout_and_seeding():
    gene_tokens = np.arange(100, 110)
    gene_chrom = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # genomic order = index order
    chrom_tokens = np.array([10, 11, 12, 13])
    local = np.array([0, 2, 3, 5, 8, 9])
    counts = np.array([5.0, 1.0, 3.0, 2.0, 7.0, 1.0])
    length = 1 + 20 + 2 * 4
    toks, n = cell_sentence(local, counts, gene_tokens, gene_chrom, chrom_tokens, sample_size=20, length=length,
                            rng=np.random.default_rng(0))
    assert toks[0] == CLS and len(toks) == length
    real = toks[:n]
    assert (toks[n:] == PAD).all()
    # groups: [CHR] genes... [CHR_END]; genes of a group share a chromosome, in genomic order
    i, seen = 1, set()
    while i < n:
        assert real[i] in chrom_tokens
        c = int(np.flatnonzero(chrom_tokens == real[i])[0])
        seen.add(c)
        j = i + 1
        while real[j] != CHROM_END:
            j += 1
        genes = real[i + 1:j] - 100
        assert len(genes) and (gene_chrom[genes] == c).all() and (np.diff(genes) >= 0).all()
        assert set(genes) <= set(local)
        i = j + 1
    assert n == 1 + 20 + 2 * len(seen)
    again, _ = cell_sentence(local, counts, gene_tokens, gene_chrom, chrom_tokens, sample_size=20, length=length,
                             rng=np.random.default_rng(0))
    other, _ = cell_sentence(local, counts, gene_tokens, gene_chrom, chrom_tokens, sample_size=20, length=length,
                             rng=np.random.default_rng(1))
    assert np.array_equal(toks, again) and not np.array_equal(toks, other)


def test_train_uce_shapes_determinism_and_checkpoint(setup, tmp_path):
    adatas, protein, tables = setup
    cfg = UCEConfig(**TINY, epochs=2)
    res = train_uce(adatas, protein, tables, config=cfg, checkpoint=tmp_path / "uce.pt")
    z = res.adata.obsm["X_uce"]
    assert z.shape == (76, 8)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    assert {"train_accuracy", "val_loss"} <= set(res.train.history[0])
    again = train_uce(adatas, protein, tables, config=cfg).adata.obsm["X_uce"]
    np.testing.assert_allclose(z, again, atol=1e-6)
    model, vocab = load_uce(tmp_path / "uce.pt", res.vocab.tokens)
    np.testing.assert_allclose(embed_cells(model, vocab, adatas, seed=cfg.seed), z, atol=1e-5)


def test_a_cells_embedding_does_not_depend_on_the_other_cells(setup):
    adatas, protein, tables = setup
    cfg = UCEConfig(**TINY, epochs=0)
    res = train_uce(adatas, protein, tables, config=cfg)
    full = embed_cells(res.model, res.vocab, {"mouse": adatas["mouse"]}, seed=0, batch_size=7)
    alone = embed_cells(res.model, res.vocab, {"mouse": adatas["mouse"][[4]]}, seed=0, batch_size=1)
    order = np.random.default_rng(0).permutation(adatas["mouse"].n_obs)
    shuffled = embed_cells(res.model, res.vocab, {"mouse": adatas["mouse"][order]}, seed=0, batch_size=5)
    np.testing.assert_allclose(alone[0], full[4], atol=1e-5)
    np.testing.assert_allclose(shuffled, full[order], atol=1e-5)
    other_seed = embed_cells(res.model, res.vocab, {"mouse": adatas["mouse"][[4]]}, seed=1)
    assert not np.allclose(other_seed[0], full[4], atol=1e-4)


def _uce_layout_state_dict(*, token_dim=10, d=8, d_hid=12, nlayers=2, out=6, head=7, dec=(9, 5), n_tokens=30,
                           seed=0) -> dict[str, torch.Tensor]:
    """A tiny random state dict in the key layout of the released UCE model.py."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.3

    sd = {"pos_encoder.pe": _released_positions(64, d), "encoder.0.weight": r(d, token_dim), "encoder.0.bias": r(d),
          "encoder.2.weight": 1 + r(d), "encoder.2.bias": r(d)}
    for i in range(nlayers):
        p = f"transformer_encoder.layers.{i}."
        sd.update({p + "self_attn.in_proj_weight": r(3 * d, d), p + "self_attn.in_proj_bias": r(3 * d),
                   p + "self_attn.out_proj.weight": r(d, d), p + "self_attn.out_proj.bias": r(d),
                   p + "linear1.weight": r(d_hid, d), p + "linear1.bias": r(d_hid),
                   p + "linear2.weight": r(d, d_hid), p + "linear2.bias": r(d),
                   p + "norm1.weight": 1 + r(d), p + "norm1.bias": r(d),
                   p + "norm2.weight": 1 + r(d), p + "norm2.bias": r(d)})
    for j, (a, b) in enumerate([(d, head), (head, out), (out, out)]):
        sd.update({f"decoder.{j}.0.weight": r(b, a), f"decoder.{j}.0.bias": r(b),
                   f"decoder.{j}.1.weight": 1 + r(b), f"decoder.{j}.1.bias": r(b)})
    sd.update({"decoder.3.weight": r(out, out), "decoder.3.bias": r(out)})
    dims = [out + d, *dec]
    for j, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        sd.update({f"binary_decoder.{j}.0.weight": r(b, a), f"binary_decoder.{j}.0.bias": r(b),
                   f"binary_decoder.{j}.1.weight": 1 + r(b), f"binary_decoder.{j}.1.bias": r(b)})
    sd.update({f"binary_decoder.{len(dec)}.weight": r(1, dec[-1]), f"binary_decoder.{len(dec)}.bias": r(1)})
    sd.update({"gene_embedding_layer.0.weight": r(d, token_dim), "gene_embedding_layer.0.bias": r(d),
               "gene_embedding_layer.2.weight": 1 + r(d), "gene_embedding_layer.2.bias": r(d)})
    sd["pe_embedding.weight"] = r(n_tokens, token_dim)
    return sd


def _released_positions(max_len: int, d: int) -> torch.Tensor:
    """UCE model.py's PositionalEncoding buffer, as documented there: (max_len, 1, d_model),
    sin on even and cos on odd channels of position * exp(-ln(10000) * 2i / d_model)."""
    pe = torch.zeros(max_len, 1, d)
    position = torch.arange(max_len).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe[:, 0, 0::2] = torch.sin(position * div)
    pe[:, 0, 1::2] = torch.cos(position * div)
    return pe


def _reference_cls(sd, tokens, nhead):
    """UCE's forward written out from the released model.py (sequence-first; no padding):
    normalised tokens -> encoder x sqrt(d) -> + pos_encoder.pe[:L] -> transformer -> decoder at CLS."""
    d = sd["encoder.0.weight"].shape[0]
    x = F.normalize(sd["pe_embedding.weight"][tokens], dim=-1).transpose(0, 1)  # (L, B, token_dim)
    h = F.layer_norm(F.gelu(F.linear(x, sd["encoder.0.weight"], sd["encoder.0.bias"])), (d,),
                     sd["encoder.2.weight"], sd["encoder.2.bias"]) * math.sqrt(d)
    h = h + _released_positions(64, d)[: h.shape[0]]  # src = self.pos_encoder(src) (dropout off in eval)
    n_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer_encoder.layers.")})
    for i in range(n_layers):
        layer = nn.TransformerEncoderLayer(d, nhead, sd[f"transformer_encoder.layers.{i}.linear1.weight"].shape[0],
                                           dropout=0.0)
        prefix = f"transformer_encoder.layers.{i}."
        layer.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        h = layer.eval()(h)
    c = h[0]
    for j in range(3):
        w = sd[f"decoder.{j}.0.weight"]
        c = F.gelu(F.layer_norm(F.linear(c, w, sd[f"decoder.{j}.0.bias"]), (w.shape[0],),
                                sd[f"decoder.{j}.1.weight"], sd[f"decoder.{j}.1.bias"]))
    c = F.linear(c, sd["decoder.3.weight"], sd["decoder.3.bias"])
    return F.normalize(c, dim=1)


def test_loader_maps_the_released_uce_key_layout():
    sd = _uce_layout_state_dict()
    cfg = uce_config_from_state_dict(sd, nhead=2)
    assert (cfg.nlayers, cfg.d_model, cfg.d_hid, cfg.output_dim, cfg.head_hidden) == (2, 8, 12, 6, 7)
    assert cfg.decoder_hidden == (9, 5) and cfg.positional_encoding is True and cfg.max_len == 64
    model = load_uce_state_dict(sd, config=cfg)
    own = model.state_dict()
    torch.testing.assert_close(own["transformer.layers.1.linear2.weight"], sd["transformer_encoder.layers.1.linear2.weight"])
    torch.testing.assert_close(own["cell_head.2.1.bias"], sd["decoder.2.1.bias"])
    torch.testing.assert_close(own["expression_decoder.2.weight"], sd["binary_decoder.2.weight"])
    torch.testing.assert_close(own["token_table"], sd["pe_embedding.weight"])
    tokens = torch.randint(3, 30, (4, 11))
    tokens[:, 0] = CLS
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), _reference_cls(sd, tokens, nhead=2), atol=1e-5, rtol=1e-4)
        # the positions matter: a model without them gives another embedding
        off = load_uce_state_dict(sd, config=uce_config_from_state_dict(sd, nhead=2, positional_encoding=False))
        assert not torch.allclose(off(tokens), model(tokens), atol=1e-3)
        logits = model.expression_logits(model(tokens), torch.randint(3, 30, (4, 5)))
    assert logits.shape == (4, 5)
    # our token table picked from the released one by row
    picked = load_uce_state_dict(sd, config=cfg, token_rows=np.array([0, 1, 2, 7, 9]))
    torch.testing.assert_close(picked.token_table[3], sd["pe_embedding.weight"][7])


def test_loader_rejects_a_wrong_layout():
    sd = _uce_layout_state_dict()
    cfg = uce_config_from_state_dict(sd, nhead=2)
    bad = {k: v for k, v in sd.items() if not k.startswith("transformer_encoder.layers.1.")}
    with pytest.raises(ScpriorInputError, match="missing"):
        load_uce_state_dict(bad, config=cfg)
    with pytest.raises(ScpriorInputError, match="Not a UCE state dict"):
        uce_config_from_state_dict({"foo": torch.zeros(1)})
    odd = dict(sd, **{"extra_head.weight": torch.zeros(2)})
    with pytest.raises(ScpriorInputError, match="does not know"):
        load_uce_state_dict(odd, config=cfg)


def test_model_masks_padding_exactly():
    torch.manual_seed(0)
    model = UCEModel(torch.randn(20, 6), UCEConfig(**{**TINY, "dropout": 0.0})).eval()
    short = torch.tensor([[CLS, 5, 6, 7, CHROM_END]])
    padded = torch.cat([short, torch.full((1, 6), PAD)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(short), model(padded), atol=1e-5, rtol=1e-5)


def _block_types(n_cells: int = 120, n_genes: int = 60, n_types: int = 3, seed: int = 0):
    """One species whose cell types express disjoint gene blocks (plus sparse background): every
    gene is expressed in about 1/n_types of the cells, so only the cell tells which genes it has."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    block = np.arange(n_genes) % n_types
    rate = np.where(block[None, :] == types[:, None], 4.0, 0.05)
    counts = rng.poisson(rate).astype(np.float32)
    names = [f"GENE{i}" for i in range(n_genes)]
    a = ad.AnnData(X=sp.csr_matrix(counts), obs=pd.DataFrame({"cell_type": [f"t{t}" for t in types]},
                                                             index=[f"c{i}" for i in range(n_cells)]),
                   var=pd.DataFrame(index=names))
    a.layers["counts"] = a.X.copy()
    emb = GeneEmbeddings(np.asarray(names), rng.normal(size=(n_genes, 12)), "human", "protein_kmer")
    table = pd.DataFrame({"symbol": names, "chromosome": rng.choice(["1", "2", "3"], n_genes),
                          "start": rng.integers(0, 10_000, n_genes)})
    return {"human": a}, {"human": emb}, {"human": table}


def test_matched_negatives_share_the_positives_frequency_bins():
    from scprior.models.uce import detection_frequency, matched_negatives

    rng = np.random.default_rng(0)
    import scipy.sparse as sp

    csr = sp.csr_matrix(rng.poisson(rng.uniform(0.01, 3.0, 200)[None, :], size=(300, 200)).astype(np.float32))
    local = np.arange(200)
    freq, bins = detection_frequency(csr, local, 200, n_bins=20)
    assert np.allclose(freq, (csr.toarray() > 0).mean(0)) and bins.min() == 0 and bins.max() == 19
    expressed = np.flatnonzero(csr[0].toarray()[0] > 0)
    pos = rng.choice(expressed, 500)
    neg = matched_negatives(pos, local, expressed, bins, rng)
    assert not np.isin(neg, expressed).any()
    # the frequency-bin distribution of negatives follows the positives' (within one bin)
    assert np.abs(bins[neg] - bins[pos]).max() <= 3 and np.abs(bins[neg] - bins[pos]).mean() < 1.0


def test_uce_embedding_is_not_collapsed_and_the_decoder_reads_the_cell():
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    adatas, protein, tables = _block_types()
    cfg = UCEConfig(**{**TINY, "sample_size": 24, "n_positive": 8, "n_negative": 8, "batch_size": 16},
                    epochs=60, patience=5, lr=1e-3, dropout=0.0)
    res = train_uce(adatas, protein, tables, config=cfg, diagnostics=120)
    z = res.adata.obsm["X_uce"]
    labels = adatas["human"].obs["cell_type"].to_numpy()
    knn = cross_val_score(KNeighborsClassifier(5), z, labels, cv=5).mean()
    d = res.diagnostics
    assert knn > 0.8, (knn, d)  # chance: ~1/3
    assert d["train"]["decoder_gap"] > 0.1, d
    assert abs(d["train"]["cell_blind_auroc"] - 0.5) < 0.1, d
    assert d["mean_pairwise_cosine"] < 0.9, d
    # UCE's uniform negatives: the frequency alone separates them here too
    uniform = UCEConfig(**{**TINY, "negatives": "uniform"}, epochs=0)
    assert train_uce(adatas, protein, tables, config=uniform, diagnostics=120).diagnostics["train"][
        "cell_blind_auroc"] > 0.5


def test_count_weighted_sentences_follow_the_counts():
    """``weights="counts"`` draws a gene in proportion to its count (a downsampling of the reads);
    UCE's log1p weights flatten a 1,000-count marker to ~7 one-count genes."""
    gene_tokens = np.arange(100, 120)
    gene_chrom = np.zeros(20, dtype=np.int64)
    local = np.arange(20)
    counts = np.r_[1000.0, np.ones(19)]
    share = {}
    for w in ("log1p", "counts"):
        toks, _ = cell_sentence(local, counts, gene_tokens, gene_chrom, np.array([10]), sample_size=2000,
                                length=2003, rng=np.random.default_rng(0), weights=w)
        share[w] = float(np.mean(toks[2:2002] == 100))
    assert abs(share["counts"] - 1000 / 1019) < 0.02
    assert abs(share["log1p"] - np.log1p(1000) / (np.log1p(1000) + 19 * np.log1p(1))) < 0.03
    with pytest.raises(ScpriorInputError, match="sample_weights"):
        UCEConfig(**TINY, sample_weights="sqrt")


def test_decoder_cell_scale_and_released_defaults():
    sd = _uce_layout_state_dict()
    cfg = uce_config_from_state_dict(sd, nhead=2)
    # the released forward and predict: log1p sentences, unscaled cell vector at the decoder
    assert cfg.sample_weights == "log1p" and cfg.decoder_cell_scale is False
    plain = load_uce_state_dict(sd, config=cfg)
    scaled = load_uce_state_dict(sd, config=uce_config_from_state_dict(sd, nhead=2, decoder_cell_scale=True))
    tokens = torch.randint(3, 30, (4, 11))
    tokens[:, 0] = CLS
    genes = torch.randint(3, 30, (4, 5))
    with torch.no_grad():
        cell = plain(tokens)
        torch.testing.assert_close(scaled(tokens), cell)
        torch.testing.assert_close(scaled.expression_logits(cell, genes),
                                   plain.expression_logits(cell * math.sqrt(cell.shape[1]), genes))


def test_batch_negatives_are_other_cells_positives_the_cell_lacks():
    from scprior.models.uce import SentenceData

    adatas, protein, tables = _block_types(n_cells=40, n_genes=30)
    vocab = build_vocabulary(protein, tables)
    cfg = UCEConfig(**{**TINY, "negatives": "batch", "positive_weights": "counts"})
    data = SentenceData(vocab, adatas, cfg, mode="fixed", seed=0)
    tokens, q_tok, q_y, q_w = data.collate(list(range(40)))
    n_pos = cfg.n_positive
    positives = set(q_tok[:, :n_pos][q_w[:, :n_pos] > 0].tolist())
    counts = adatas["human"].layers["counts"].toarray()
    token_of = dict(zip(vocab.genes["symbol"], vocab.genes["token"]))
    for c in range(40):
        expressed = {token_of[g] for g, v in zip(adatas["human"].var_names, counts[c]) if v > 0 and g in token_of}
        neg = q_tok[c, n_pos:][q_w[c, n_pos:] > 0].tolist()
        assert neg and not set(neg) & expressed and set(neg) <= positives
        assert set(q_tok[c, :n_pos].tolist()) <= expressed and (q_y[c, :n_pos] == 1).all()
    again = data.collate(list(range(40)))
    assert all(torch.equal(a, b) for a, b in zip((tokens, q_tok, q_y, q_w), again))
    with pytest.raises(ScpriorInputError, match="positive_weights"):
        UCEConfig(**TINY, positive_weights="log")
    with pytest.raises(ScpriorInputError, match="pooling"):
        UCEConfig(**TINY, pooling="max")


def test_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    model = UCEModel(torch.randn(20, 6), UCEConfig(**{**TINY, "dropout": 0.0, "pooling": "mean"})).eval()
    short = torch.tensor([[CLS, 5, 6, 7, CHROM_END]])
    padded = torch.cat([short, torch.full((1, 6), PAD)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(short), model(padded), atol=1e-5, rtol=1e-5)


def _chance_genes(n_cells: int = 150, n_noise: int = 120, seed: int = 1):
    """Baron's failure in small: 3 cell types with 10 marker genes each (high counts) among many
    genes detected by chance (one read at random in ~30% of the cells, any type). The markers are
    the variable genes; over all genes most queried positives are chance detections."""
    import anndata as ad

    adatas, protein, tables = _block_types(n_cells=n_cells, n_genes=30, seed=seed)
    a = adatas["human"]
    rng = np.random.default_rng(seed)
    noise = (rng.random((n_cells, n_noise)) < 0.3).astype(np.float32)
    names = [f"NOISE{i}" for i in range(n_noise)]
    x = sp.hstack([sp.csr_matrix(a.layers["counts"].toarray() * 3), sp.csr_matrix(noise)]).tocsr()
    out = ad.AnnData(X=x, obs=a.obs.copy(), var=pd.DataFrame(index=list(a.var_names) + names))
    out.layers["counts"] = x.copy()
    emb = GeneEmbeddings(np.asarray(out.var_names), rng.normal(size=(out.n_vars, 12)), "human", "protein_kmer")
    table = pd.DataFrame({"symbol": list(out.var_names), "chromosome": rng.choice(["1", "2", "3"], out.n_vars),
                          "start": rng.integers(0, 10_000, out.n_vars)})
    return {"human": out}, {"human": emb}, {"human": table}, list(a.var_names)


def test_hvg_queries_make_the_decoder_read_the_cell(tmp_path):
    """The Baron fix: queries over all genes are mostly chance detections (a cell-blind task);
    on the variable genes with count-weighted sentences and positives, the decoder must read the
    cell. The HVG vocabulary is stored with the model."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    adatas, protein, tables, markers = _chance_genes()
    labels = adatas["human"].obs["cell_type"].to_numpy()
    base = {**TINY, "sample_size": 24, "n_positive": 8, "n_negative": 8, "batch_size": 16, "epochs": 40,
            "patience": 5, "lr": 1e-3, "dropout": 0.0}
    fixed = UCEConfig(**base, gene_set="hvg", sample_weights="counts", positive_weights="counts",
                      decoder_cell_scale=True, pooling="mean", decoder="dot", warmup_steps=20)
    with pytest.raises(ScpriorInputError, match="genes="):
        train_uce(adatas, protein, tables, config=fixed)
    res = train_uce(adatas, protein, tables, config=fixed, genes={"human": markers}, diagnostics=150,
                    checkpoint=tmp_path / "uce.pt")
    assert set(res.vocab.genes["symbol"]) <= set(markers)
    d = res.diagnostics
    knn = cross_val_score(KNeighborsClassifier(5), res.adata.obsm["X_uce"], labels, cv=5).mean()
    assert knn > 0.8, (knn, d)
    assert d["val"]["decoder_gap"] > 0.1, d
    assert abs(d["train"]["cell_blind_auroc"] - 0.5) < 0.1, d
    model, vocab = load_uce(tmp_path / "uce.pt", res.vocab.tokens)
    assert model.config.decoder == "dot" and list(vocab.genes["symbol"]) == list(res.vocab.genes["symbol"])
    np.testing.assert_allclose(embed_cells(model, vocab, adatas, seed=0), res.adata.obsm["X_uce"], atol=1e-5)
    # the same budget over all genes with UCE's sentences and queries: the objective barely needs the cell
    plain = train_uce(adatas, protein, tables, config=UCEConfig(**base), diagnostics=150).diagnostics
    assert plain["val"]["decoder_gap"] < d["val"]["decoder_gap"] - 0.05, (plain, d)


def test_dot_decoder_is_bilinear_in_cell_and_gene():
    vocab_tokens = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    model = UCEModel(vocab_tokens, UCEConfig(**{**TINY, "decoder": "dot"})).eval()
    cell = F.normalize(torch.randn(3, 8), dim=1)
    genes = torch.randint(3, 20, (3, 4))
    with torch.no_grad():
        lg = model.expression_logits(cell, genes)
        bias = model.gene_bias(model.gene_proj(model.token_table[genes])).squeeze(-1)
        torch.testing.assert_close(model.expression_logits(2 * cell, genes) - bias, 2 * (lg - bias))
    assert lg.shape == (3, 4)
    with pytest.raises(ScpriorInputError, match="decoder"):
        UCEConfig(**TINY, decoder="attention")
    with pytest.raises(ScpriorInputError, match="gene_set"):
        UCEConfig(**TINY, gene_set="some")


def test_averaged_sentences_are_seeded_per_cell_and_steadier_than_one(setup):
    """``embed_sentences`` K: the mean of K seeded sentences per cell (K=1 is the single-sentence
    embedding); still independent of the other cells, unit rows; a cell moves less between two
    independent draws of K sentences than between two single sentences."""
    from scprior.models.uce import sentence_seeds, sentence_stability

    adatas, protein, tables = setup
    res = train_uce(adatas, protein, tables, config=UCEConfig(**TINY, epochs=0), diagnostics=0)
    one = embed_cells(res.model, res.vocab, adatas, seed=0)
    np.testing.assert_allclose(embed_cells(res.model, res.vocab, adatas, seed=0, sentences=1), one)
    four = embed_cells(res.model, res.vocab, adatas, seed=0, sentences=4)
    np.testing.assert_allclose(np.linalg.norm(four, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(four, one, atol=1e-4)
    by_seed = [embed_cells(res.model, res.vocab, adatas, seed=s) for s in sentence_seeds(0, 4)]
    mean = np.sum(by_seed, axis=0)
    np.testing.assert_allclose(four, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)
    alone = embed_cells(res.model, res.vocab, {"mouse": adatas["mouse"][[3]]}, seed=0, sentences=4)
    np.testing.assert_allclose(alone[0], four[adatas["human"].n_obs + 3], atol=1e-5)
    s1 = sentence_stability(res.model, res.vocab, adatas, seed=0, sentences=1)
    s4 = sentence_stability(res.model, res.vocab, adatas, seed=0, sentences=4)
    assert s1 < s4 <= 1.0 + 1e-6, (s1, s4)
    with pytest.raises(ScpriorInputError, match="embed_sentences"):
        UCEConfig(**TINY, embed_sentences=0)


def test_training_reports_sentence_stability_and_embeds_with_k_sentences(setup):
    adatas, protein, tables = setup
    cfg = UCEConfig(**TINY, epochs=1, embed_sentences=3)
    res = train_uce(adatas, protein, tables, config=cfg, diagnostics=40)
    stab = res.diagnostics["sentence_stability"]
    assert set(stab) == {"1", "3"} and stab["1"] < stab["3"]
    np.testing.assert_allclose(res.adata.obsm["X_uce"], embed_cells(res.model, res.vocab, adatas, seed=0),
                               atol=1e-5)
    assert not np.allclose(res.adata.obsm["X_uce"], embed_cells(res.model, res.vocab, adatas, seed=0, sentences=1),
                           atol=1e-4)


def test_diagnostic_cells_set_how_many_cells_the_diagnostics_read(setup):
    """``UCEConfig.diagnostic_cells`` is ``train_uce``'s default: 0 skips the diagnostics, N runs
    the objective diagnostics on N training cells; ``diagnostics=`` overrides it."""
    adatas, protein, tables = setup
    none = train_uce(adatas, protein, tables, config=UCEConfig(**TINY, epochs=0, diagnostic_cells=0))
    assert set(none.diagnostics) == {"mean_pairwise_cosine"}
    some = train_uce(adatas, protein, tables, config=UCEConfig(**TINY, epochs=0, diagnostic_cells=40))
    assert {"train", "val", "sentence_stability"} <= set(some.diagnostics)
    assert set(train_uce(adatas, protein, tables, config=UCEConfig(**TINY, epochs=0, diagnostic_cells=40),
                         diagnostics=0).diagnostics) == {"mean_pairwise_cosine"}
    with pytest.raises(ScpriorInputError, match="diagnostic_cells"):
        UCEConfig(**TINY, diagnostic_cells=-1)


def test_inference_takes_the_plain_transformer_path_with_the_same_result(setup):
    """In eval mode the forward turns PyTorch's fused inference path off (slower here, see
    benchmarks/uce_inference_path.py) and back on; the embeddings equal the fused path's."""
    from scprior.models.uce import _mha_fastpath

    adatas, protein, tables = setup
    model = UCEModel(build_vocabulary(protein, tables).tokens, UCEConfig(**TINY)).eval()
    tokens = torch.randint(3, model.token_table.shape[0], (6, 20))
    tokens[:3, 15:] = PAD
    seen = []  # the switch as the transformer sees it, per call
    hook = model.transformer.register_forward_pre_hook(lambda *_: seen.append(torch.backends.mha.get_fastpath_enabled()))
    assert torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad():
        plain = model(tokens)
        assert torch.backends.mha.get_fastpath_enabled()
        model.train()
        model(tokens)
        model.eval()
    hook.remove()
    assert seen == [False, True]  # off for inference only, and restored after it
    with torch.no_grad():
        x = model.tokens_in(tokens)
        with _mha_fastpath(True):
            fused = model.transformer(x, src_key_padding_mask=tokens == PAD)
        with _mha_fastpath(False):
            unfused = model.transformer(x, src_key_padding_mask=tokens == PAD)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)
    keep = (tokens != PAD).unsqueeze(-1).float()
    pooled = (unfused * keep).sum(1) / keep.sum(1) if model.config.pooling == "mean" else unfused[:, 0]
    torch.testing.assert_close(plain, F.normalize(model.cell_head(pooled), dim=1))
