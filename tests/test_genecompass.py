"""GeneCompass model: rank encoding, vocabulary, priors, token construction, masking, loss,
prior warm-up, save/load, in-silico deletion and the released-checkpoint loader."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_counts_adata
from scprior.errors import ScpriorInputError
from scprior.models.genecompass import (
    MASK,
    PAD,
    GeneCompass,
    GeneCompassConfig,
    GeneVocab,
    build_model,
    build_vocab,
    load_released,
    pretrain_genecompass,
    rank_encode,
    remove_tokens,
)
from scprior.models.genecompass.api import PretrainConfig
from scprior.models.genecompass.encoding import nonzero_medians, random_mask_np
from scprior.models.genecompass.model import masked_gene_loss, random_mask
from scprior.models.genecompass.priors import annotation_prior, coexp_prior, grn_prior


# ------------------------------------------------------------------------------ encoding
def test_rank_encoding_matches_hand_computed_example():
    # 2 cells x 4 genes; medians 2, 1, 4, 1 -> values log2(1 + count / median)
    counts = np.array([[4, 1, 0, 3], [0, 0, 8, 0]], dtype=float)
    tokens = np.array([5, 6, 7, -1])  # gene 3 is not in the vocabulary
    medians = np.array([2.0, 1.0, 4.0, np.nan])
    enc = rank_encode(counts, tokens, medians, "mouse", top_k=3)
    # cell 0: gene0 log2(1+2)=1.585, gene1 log2(1+1)=1, gene2 absent, gene3 dropped
    np.testing.assert_array_equal(enc.input_ids, [[5, 6, PAD], [7, PAD, PAD]])
    np.testing.assert_allclose(enc.values, [[np.log2(3), 1.0, 0.0], [np.log2(3), 0.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(enc.species, [1, 1])
    np.testing.assert_array_equal(enc.lengths, [2, 1])


def test_rank_encoding_top_k_and_ties_by_token():
    counts = np.array([[2, 2, 5, 1]], dtype=float)
    enc = rank_encode(counts, np.array([9, 4, 3, 8]), np.ones(4), "human", top_k=2)
    np.testing.assert_array_equal(enc.input_ids, [[3, 4]])  # 5 first, then the tie 2/2 broken by token 4 < 9


def test_nonzero_medians_ignore_zeros():
    x = np.array([[0, 1], [4, 0], [2, 0], [6, 0]], dtype=float)
    np.testing.assert_allclose(nonzero_medians(x), [4.0, 1.0])
    assert np.isnan(nonzero_medians(np.zeros((3, 1))))[0]


def test_remove_tokens_shifts_later_genes_up():
    counts = np.array([[5, 4, 3, 2]], dtype=float)
    enc = rank_encode(counts, np.array([2, 3, 4, 5]), np.ones(4), "human", top_k=4)
    out = remove_tokens(enc, [3])
    np.testing.assert_array_equal(out.input_ids, [[2, 4, 5, PAD]])
    np.testing.assert_allclose(out.values[0, :3], enc.values[0, [0, 2, 3]])
    assert out.values[0, 3] == 0


# ---------------------------------------------------------------------------- vocabulary
def _corpus():
    h = make_counts_adata(50, 30, species="human", seed=1)
    m = make_counts_adata(40, 25, species="mouse", seed=2)
    for a in (h, m):
        a.layers["counts"] = a.X.copy()
    return [("human", h), ("mouse", m)]


def test_build_vocab_medians_and_homologs():
    corpus = _corpus()
    vocab = build_vocab(corpus, orthologs={"Gene0": "GENE0", "Gene1": "GENE1"})
    assert len(vocab) == 2 + 30 + 25
    assert vocab.prior_keys()[vocab.token("mouse", "Gene0")] == "GENE0"
    assert vocab.prior_keys()[vocab.token("mouse", "Gene5")] == ""  # no ortholog: no prior
    assert vocab.prior_keys()[vocab.token("human", "GENE5")] == "GENE5"
    h = corpus[0][1]
    col = h.layers["counts"][:, list(h.var_names).index("GENE3")].toarray().ravel()
    assert vocab.token_medians()[vocab.token("human", "GENE3")] == pytest.approx(np.median(col[col > 0]))
    small = build_vocab(corpus, max_genes_per_species=10)
    assert len(small) == 2 + 20
    assert GeneVocab.from_dict(vocab.to_dict()).symbols == vocab.symbols


# --------------------------------------------------------------------------------- priors
def test_annotation_and_graph_priors_are_keyed_by_symbol():
    ann = pd.DataFrame({"symbol": ["A", "A", "B", "C", "C"], "go_id": ["t1", "t2", "t1", "t3", "t2"]})
    p = annotation_prior(ann, "symbol", "go_id", ["", "A", "B", "Z"], dim=2)
    assert p.shape == (4, 2) and not p[0].any() and not p[3].any() and p[1].any()
    reg = pd.DataFrame({"tf": ["A", "A", "B"], "target": ["B", "C", "C"]})
    g = grn_prior(reg, ["A", "C", "Q"], dim=4)
    assert g.shape[0] == 3 and g[0].any() and g[1].any() and not g[2].any()


def test_coexp_prior_uses_only_the_cells_given():
    rng = np.random.default_rng(0)
    x = rng.random((30, 4))
    x[:, 1] = x[:, 0] * 2 + 0.01 * rng.random(30)  # A and B co-expressed
    p = coexp_prior([(x, ["A", "B", "C", "D"])], ["A", "B", "C"], dim=3)
    assert p[0] @ p[1] > 0.95
    p2 = coexp_prior([(x[:15], ["A", "B", "C", "D"])], ["A", "B", "C"], dim=3)
    assert not np.allclose(np.abs(p), np.abs(p2))  # other cells -> another prior


# ------------------------------------------------------------------------ model / tokens
def _model(priors=("text", "grn"), warmup=0, seed=0):
    vocab = build_vocab(_corpus(), max_genes_per_species=20)
    rng = np.random.default_rng(0)
    tables = {"text": rng.normal(size=(len(vocab), 6)).astype(np.float32),
              "grn": rng.normal(size=(len(vocab), 4)).astype(np.float32)}
    cfg = GeneCompassConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, top_k=12,
                            priors=priors, prior_warmup_steps=warmup, dropout=0.0)
    return build_model(vocab, tables, cfg, seed=seed), tables


def _batch(gc):
    enc = gc.encode(_corpus()[0][1], "human")
    return (torch.as_tensor(enc.input_ids[:4]), torch.as_tensor(enc.values[:4]), torch.as_tensor(enc.species[:4])), enc


@pytest.mark.parametrize("priors", [(), ("text",), ("grn",), ("text", "grn")])
def test_token_construction_with_and_without_each_prior(priors):
    gc, tables = _model(priors)
    emb = gc.model.embeddings
    d = gc.config.hidden_size
    assert emb.concat.cat_fc.in_features == d * (1 + len(priors)) + 1
    (ids, vals, _), _ = _batch(gc)
    gc.model.eval()
    before = emb(ids, vals).detach().clone()
    # changing a prior table changes the tokens exactly when that prior is switched on
    for name in ("text", "grn"):
        if name in priors:
            buf = getattr(emb, f"prior_{name}")
            buf.add_(1.0)
            assert not torch.allclose(emb(ids, vals), before)
            buf.sub_(1.0)
        else:
            assert not hasattr(emb, f"prior_{name}")
    # the value enters the token
    assert not torch.allclose(emb(ids, vals + 1.0), before)


def test_prior_warmup_really_ramps():
    gc, _ = _model(("text",), warmup=4)
    emb = gc.model.embeddings
    (ids, vals, _), _ = _batch(gc)
    assert emb.alpha == 0.0
    gc.model.train()
    alphas = []
    for _ in range(6):
        emb(ids, vals)
        alphas.append(emb.alpha)
    assert alphas == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    gc.model.eval()
    emb(ids, vals)
    assert emb.alpha == 1.0 and int(emb.warmup_step) == 6  # evaluation does not advance it


def test_masking_fraction_and_never_padding():
    ids = torch.zeros(200, 50, dtype=torch.long)
    ids[:, :40] = 5
    torch.manual_seed(0)
    m = random_mask(ids, 0.15)
    assert not m[:, 40:].any()
    assert abs(m[:, :40].float().mean().item() - 0.15) < 0.02
    one = torch.zeros(3, 10, dtype=torch.long)
    one[:, 0] = 7
    assert random_mask(one, 0.0).sum(1).tolist() == [1, 1, 1]  # at least one masked token per cell
    a = random_mask_np(ids.numpy(), 0.15, seed=3)
    np.testing.assert_array_equal(a, random_mask_np(ids.numpy(), 0.15, seed=3))


def test_loss_is_weighted_ce_plus_mse_on_masked_tokens_only():
    gc, _ = _model()
    (ids, vals, spc), _ = _batch(gc)
    gc.model.eval()
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 1] = True
    out = masked_gene_loss(gc.model, ids, vals, spc, mask)
    h = gc.model(ids.masked_fill(mask, MASK), vals.masked_fill(mask, 0.0), spc)[:, 1:][mask]
    ce = torch.nn.functional.cross_entropy(gc.model.id_head(h), ids[mask])
    mse = ((gc.model.value_head(h).squeeze(-1) - vals[mask]) ** 2).mean()
    assert out["loss"].item() == pytest.approx((0.2 * ce + 0.8 * mse).item(), rel=1e-5)
    # the masked genes' own values do not leak into the input
    vals2 = vals.clone()
    vals2[mask] += 5.0
    ids2 = ids.clone()
    out2 = masked_gene_loss(gc.model, ids2, vals2, spc, mask)
    assert out2["id_ce"].item() == pytest.approx(out["id_ce"].item(), rel=1e-6)


def test_pretraining_selects_on_held_out_cells_and_save_load_roundtrip(tmp_path):
    gc, _ = _model(("text",), warmup=3)
    enc = gc.encode(_corpus()[0][1], "human")
    res = pretrain_genecompass(gc, enc, PretrainConfig(epochs=3, batch_size=8, lr=1e-3, progress=False, patience=5),
                               checkpoint=tmp_path / "gc.pt")
    assert res.best_epoch == int(np.argmin([h["val_loss"] for h in res.history]))
    assert gc.info["pretrain_val_cells"] > 0
    back = GeneCompass.load(tmp_path / "gc.pt")
    z1, z2 = gc.embed(enc), back.embed(enc)
    np.testing.assert_allclose(z1, z2, atol=1e-5)
    assert back.vocab.symbols == gc.vocab.symbols
    np.testing.assert_allclose(back.vocab.medians, gc.vocab.medians)
    g = back.gene_embeddings(enc.subset([0, 1]))
    assert g.shape == (2, gc.config.top_k, gc.config.hidden_size)
    assert not g[enc.subset([0, 1]).input_ids == PAD].any()


def test_cell_embedding_does_not_depend_on_batch_mates():
    gc, _ = _model()
    enc = gc.encode(_corpus()[0][1], "human")
    np.testing.assert_allclose(gc.embed(enc.subset([3])), gc.embed(enc)[[3]], atol=1e-5)


def test_delete_genes_changes_other_genes_embeddings():
    gc, _ = _model()
    enc = gc.encode(_corpus()[0][1], "human").subset([0])
    first = gc.vocab.symbols[int(enc.input_ids[0, 0]) - 2]
    out = gc.delete_genes(enc, "human", [first])
    assert first not in [gc.vocab.symbols[t - 2] for t in out.input_ids[0] if t != PAD]
    with pytest.raises(ScpriorInputError):
        gc.delete_genes(enc, "human", ["NOT_A_GENE"])


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"format": "scprior-genecompass-1", "x": pd.DataFrame({"a": [1]})}, path)
    with pytest.raises(ScpriorInputError):
        GeneCompass.load(path)


# ------------------------------------------------------------------ released checkpoint
def _write_released(folder, *, hidden=8, layers=1, heads=2, inter=16, prior_dim=5, evil=False):
    """A tiny checkpoint written in GeneCompass's layout (names from their modeling_bert.py,
    knowledge_embeddings.py and utils.py)."""
    tokens = {"<pad>": 0, "<mask>": 1, "ENSG01": 2, "ENSG02": 3, "ENSMUSG01": 4}
    names = {"ENSG01": "GATA1", "ENSG02": "TP53", "ENSMUSG01": "Gata1"}
    v = len(tokens)
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    sd = {"bert.embeddings.word_embeddings.weight": r(v, hidden),
          "bert.embeddings.position_embeddings.weight": r(16, hidden),
          "bert.embeddings.token_type_embeddings.weight": r(2, hidden),
          "bert.embeddings.LayerNorm.weight": r(hidden), "bert.embeddings.LayerNorm.bias": r(hidden),
          "bert.embeddings.position_ids": torch.arange(16)[None],
          "bert.embeddings.homologous_index": torch.tensor([0, 1, 2, 3, 2]),  # mouse Gata1 -> human GATA1
          "bert.cls_embedding.weight": r(2, hidden),
          "bert.embeddings.concat_embeddings.cat_fc.weight": r(hidden, hidden * 3 + 1),
          "bert.embeddings.concat_embeddings.cat_fc.bias": r(hidden),
          "bert.embeddings.concat_embeddings.cat_ln.weight": r(hidden),
          "bert.embeddings.concat_embeddings.cat_ln.bias": r(hidden),
          "bert.embeddings.concat_embeddings.cat_proj.weight": r(hidden, hidden),
          "bert.embeddings.concat_embeddings.cat_proj.bias": r(hidden),
          "emb_warmup.alpha": torch.tensor(1.0), "emb_warmup.steps": torch.tensor(0),
          "bert.pooler.dense.weight": r(hidden, hidden)}
    for p in ("co_exp", "peca_grn"):
        sd[f"bert.embeddings.{p}_knowledge"] = r(v, prior_dim)
        sd[f"bert.embeddings.{p}_embeddings.linear1.weight"] = r(hidden, prior_dim)
        sd[f"bert.embeddings.{p}_embeddings.linear1.bias"] = r(hidden)
    for i in range(layers):
        b = f"bert.encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            sd[b + n + ".weight"], sd[b + n + ".bias"] = r(hidden, hidden), r(hidden)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[b + n + ".weight"], sd[b + n + ".bias"] = r(hidden), r(hidden)
        sd[b + "intermediate.dense.weight"], sd[b + "intermediate.dense.bias"] = r(inter, hidden), r(inter)
        sd[b + "output.dense.weight"], sd[b + "output.dense.bias"] = r(hidden, inter), r(hidden)
    for head, n_out in (("cls", v), ("cls4value", 1)):
        p = f"{head}.predictions."
        sd[p + "transform.dense.weight"], sd[p + "transform.dense.bias"] = r(hidden, hidden), r(hidden)
        sd[p + "transform.LayerNorm.weight"], sd[p + "transform.LayerNorm.bias"] = r(hidden), r(hidden)
        sd[p + "decoder.weight"], sd[p + "bias"] = r(n_out, hidden), r(n_out)
    cfg = {"architectures": ["BertForMaskedLM"], "hidden_size": hidden, "num_hidden_layers": layers,
           "num_attention_heads": heads, "intermediate_size": inter, "max_position_embeddings": 16,
           "vocab_size": v, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0,
           "use_values": True, "use_promoter": False, "use_co_exp": True, "use_gene_family": False,
           "use_peca_grn": True, "use_cls_token": True, "type_vocab_size": 2}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save(sd, folder / "pytorch_model.bin")
    prior = folder / "prior_knowledge"
    (prior / "gene_list").mkdir(parents=True)
    with (prior / "human_mouse_tokens.pickle").open("wb") as fh:
        pickle.dump(tokens if not evil else pd.DataFrame(), fh)
    with (prior / "gene_list" / "Gene_id_name_dict_human_mouse.pickle").open("wb") as fh:
        pickle.dump(names, fh)
    with (prior / "human_gene_median_after_filter.pickle").open("wb") as fh:
        pickle.dump({"ENSG01": np.float64(1.5), "ENSG02": 2.0}, fh)
    return sd


def test_released_layout_loader_maps_and_reports(tmp_path):
    sd = _write_released(tmp_path / "gc")
    gc, report = load_released(tmp_path / "gc")
    m = gc.model.state_dict()
    q, k, v = (sd[f"bert.encoder.layer.0.attention.self.{n}.weight"] for n in ("query", "key", "value"))
    torch.testing.assert_close(m["encoder.layers.0.self_attn.in_proj_weight"], torch.cat([q, k, v]))
    torch.testing.assert_close(m["encoder.layers.0.linear2.weight"], sd["bert.encoder.layer.0.output.dense.weight"])
    torch.testing.assert_close(m["embeddings.position_embeddings.weight"],
                               sd["bert.embeddings.position_embeddings.weight"]
                               + sd["bert.embeddings.token_type_embeddings.weight"][0])
    # mouse token 4 carries its human homolog's (token 2) priors
    torch.testing.assert_close(m["embeddings.prior_grn"][4], sd["bert.embeddings.peca_grn_knowledge"][2])
    torch.testing.assert_close(m["id_head.decoder.bias"], sd["cls.predictions.bias"])
    assert gc.config.priors == ("coexp", "grn") and gc.config.hidden_size == 8
    assert gc.vocab.symbols == ["GATA1", "TP53", "Gata1"] and gc.vocab.prior_keys()[4] == "GATA1"
    assert gc.vocab.medians[0] == 1.5 and np.isnan(gc.vocab.medians[2])
    assert "bert.pooler.dense.weight" in report.skipped and "emb_warmup.alpha" in report.skipped
    assert report.not_loaded == [] and "mouse_gene_median_after_filter.pickle" in report.files_missing
    # the loaded model runs
    ids = torch.tensor([[2, 3, 0]])
    out = gc.model.eval()(ids, torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([0]))
    assert out.shape == (1, 4, 8) and torch.isfinite(out).all()


def test_released_loader_never_unpickles_code(tmp_path):
    _write_released(tmp_path / "gc", evil=True)
    with pytest.raises(ScpriorInputError, match="refuses to unpickle"):
        load_released(tmp_path / "gc")


def test_released_loader_fails_clearly_on_a_wrong_folder(tmp_path):
    with pytest.raises(ScpriorInputError, match="config.json"):
        load_released(tmp_path)
