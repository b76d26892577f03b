"""UCE's released files -> ``obsm['X_uce']`` in one call, on tiny files written in exactly the
layouts UCE's evaluate.py reads (state dict, all_tokens.torch, species offsets pickle, species
chromosome CSV, per-species protein-embedding dict)."""

from __future__ import annotations

import pickle

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from integration_helpers import one_torch_thread  # noqa: F401
from test_models_uce import _uce_layout_state_dict

from scprior.errors import ScpriorInputError
from scprior.models.uce_release import (
    PROTEIN_FILES,
    RELEASED_CLS,
    RELEASED_N_CHROM,
    embed_with_released_uce,
    read_all_tokens,
    read_species_offsets,
)

TOKEN_DIM = 10


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Tiny released-layout files for human (12 genes) and mouse (8 genes), and a human AnnData."""
    root = tmp_path_factory.mktemp("uce_files")
    rng = np.random.default_rng(0)
    human = [f"GENE{i}" for i in range(12)]
    mouse = [f"Gene{i}" for i in range(8)]
    offsets = {"human": 4, "mouse": 4 + len(human)}
    n_rows = 4 + len(human) + len(mouse)
    torch.save(torch.randn(n_rows, TOKEN_DIM, generator=torch.Generator().manual_seed(1)), root / "all_tokens.torch")
    with open(root / "species_offsets.pkl", "wb") as f:
        pickle.dump(offsets, f)
    (root / "protein_embeddings").mkdir()
    for species, genes in (("human", human), ("mouse", mouse)):
        torch.save({g: torch.randn(TOKEN_DIM) for g in genes}, root / "protein_embeddings" / PROTEIN_FILES[species])
    chrom = pd.DataFrame({
        "species": ["human"] * len(human) + ["mouse"] * len(mouse),
        "gene_symbol": human + mouse,
        "chromosome": list(rng.choice(["1", "2", "X"], len(human))) + list(rng.choice(["1", "3"], len(mouse))),
        "start": rng.integers(0, 10_000, len(human) + len(mouse))})
    chrom.to_csv(root / "species_chrom.csv", index=False)
    sd = _uce_layout_state_dict(token_dim=TOKEN_DIM, n_tokens=n_rows + RELEASED_N_CHROM)
    sd.pop("pe_embedding.weight")  # as saved before pe_embedding is attached; the token file supplies it
    torch.save(sd, root / "4layer_model.torch")
    counts = rng.poisson(2.0, size=(9, len(human) + 2)).astype(np.float32)  # 2 genes UCE does not know
    adata = ad.AnnData(X=sp.csr_matrix(counts), var=pd.DataFrame(index=human + ["NOVEL1", "NOVEL2"]),
                       obs=pd.DataFrame(index=[f"c{i}" for i in range(9)]))
    adata.layers["counts"] = adata.X.copy()
    files = {"model_file": root / "4layer_model.torch", "token_file": root / "all_tokens.torch",
             "offsets_file": root / "species_offsets.pkl", "chrom_csv": root / "species_chrom.csv",
             "protein_embeddings": root / "protein_embeddings"}
    return files, adata, offsets, chrom


def test_one_call_gives_X_uce_per_cell_seeded(released):
    files, adata, _, _ = released
    before = adata.copy()
    out = embed_with_released_uce(adata, "human", **files, sample_size=16, nhead=2, progress=False, device="cpu")
    z = out.obsm["X_uce"]
    assert z.shape == (9, 6) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert "X_uce" not in adata.obsm and (adata.X != before.X).nnz == 0  # input untouched
    alone = embed_with_released_uce(adata[[3]].copy(), "human", **files, sample_size=16, nhead=2, progress=False,
                                    device="cpu")
    np.testing.assert_allclose(alone.obsm["X_uce"][0], z[3], atol=1e-5)
    other = embed_with_released_uce(adata, "human", **files, sample_size=16, nhead=2, seed=1, progress=False,
                                    device="cpu")
    assert not np.allclose(other.obsm["X_uce"], z, atol=1e-4)


def test_tokens_are_the_released_rows(released):
    """CLS is row 3, a gene's row is its species' offset + its place in the protein file, and a
    chromosome token is UCE's seed-23 N(0,1) row at 'species_chromosome''s sorted code."""
    from scprior.models.uce_release import (
        read_chrom_csv,
        read_protein_embeddings,
        released_vocabulary,
    )

    files, _, offsets, chrom = released
    table, chrom_offset = read_all_tokens(files["token_file"])
    raw = torch.load(files["token_file"], weights_only=True)
    assert chrom_offset == raw.shape[0] and table.shape[0] == raw.shape[0] + RELEASED_N_CHROM
    torch.manual_seed(23)
    np.testing.assert_allclose(table[chrom_offset:].numpy(), torch.normal(0, 1, size=(RELEASED_N_CHROM, TOKEN_DIM)).numpy())
    symbols = read_protein_embeddings(files["protein_embeddings"], "mouse")
    vocab, rows = released_vocabulary("mouse", symbols, read_chrom_csv(files["chrom_csv"]), offsets["mouse"], chrom_offset)
    assert rows[1] == RELEASED_CLS
    g = vocab.genes.iloc[0]
    assert rows[g["token"]] == offsets["mouse"] + symbols.index(g["symbol"])
    names = sorted(set(chrom["species"] + "_" + chrom["chromosome"].astype(str)))
    mouse_chroms = sorted({names.index(f"mouse_{c}") for c in chrom.loc[chrom["species"] == "mouse", "chromosome"]})
    assert list(rows[vocab.chrom_tokens["mouse"]]) == [chrom_offset + c for c in mouse_chroms]


def test_offsets_pickle_that_names_code_is_refused_without_running_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"human": Evil()}, f)
    with pytest.raises(ScpriorInputError, match="builtins.print"):
        read_species_offsets(tmp_path / "evil.pkl")
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ScpriorInputError, match="dict"):
        read_species_offsets(tmp_path / "list.pkl")
    with open(tmp_path / "ok.pkl", "wb") as f:
        pickle.dump({"human": 4, "mouse": 90}, f)
    assert read_species_offsets(tmp_path / "ok.pkl") == {"human": 4, "mouse": 90}


def test_unknown_species_and_mismatched_files_fail_clearly(released):
    files, adata, _, _ = released
    with pytest.raises(ScpriorInputError, match="offsets file knows"):
        embed_with_released_uce(adata, "frog", **files, progress=False)
