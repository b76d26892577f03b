"""Anchor embedding formats: each written here in exactly the anchor's layout, then read back."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.knowledge.formats import FORMATS, guess_format, read_embeddings, write_embeddings

SYMBOLS = ["KLF1", "GATA1", "TP53", "INS"]


@pytest.fixture
def vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {s: rng.normal(size=6).astype(np.float32) for s in SYMBOLS}


def _check(emb: GeneEmbeddings, vectors: dict[str, np.ndarray]) -> None:
    assert emb.symbols.tolist() == SYMBOLS
    assert emb.dim == 6
    for s, v in vectors.items():
        np.testing.assert_allclose(emb.lookup([s])[0][0], v, rtol=1e-6)


def test_saturn_uce_torch_dict(tmp_path, vectors):
    path = tmp_path / "human_embedding.pt"   # SATURN/UCE: torch.save({symbol: tensor})
    torch.save({s: torch.tensor(v) for s, v in vectors.items()}, path)
    emb = read_embeddings(path, species="human", source="esm2")
    _check(emb, vectors)
    assert emb.source == "esm2" and emb.provenance["file"] == str(path)


def test_genept_pickle(tmp_path, vectors):
    path = tmp_path / "GenePT_gene_embedding_ada_text.pickle"   # GenePT: {symbol: list[float]}
    with open(path, "wb") as fh:
        pickle.dump({s: [float(x) for x in v] for s, v in vectors.items()}, fh)
    emb = read_embeddings(path, species="human")
    _check(emb, vectors)
    assert emb.source == "GenePT_gene_embedding_ada_text"


def test_genept_pickle_with_numpy_arrays(tmp_path, vectors):
    path = tmp_path / "emb.pkl"
    with open(path, "wb") as fh:
        pickle.dump(dict(vectors), fh)
    _check(read_embeddings(path, species="human"), vectors)


def test_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pickle"
    with open(path, "wb") as fh:
        pickle.dump({"KLF1": Evil()}, fh)
    with pytest.raises(ScpriorInputError, match="builtins.print.*never loads"):
        read_embeddings(path, species="human")


def test_scilama_parquet(tmp_path, vectors):
    path = tmp_path / "gene_text.parquet"   # sciLaMA: gene_id, embedding (vector per row)
    pd.DataFrame({"gene_id": list(vectors), "embedding": [v.tolist() for v in vectors.values()]}).to_parquet(path)
    _check(read_embeddings(path, species="human"), vectors)
    pd.DataFrame({"gene": SYMBOLS, "vec": [0] * 4}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ScpriorInputError, match="'gene_id' and 'embedding'"):
        read_embeddings(tmp_path / "bad.parquet", species="human")


@pytest.mark.parametrize("sep,ext", [(",", "csv"), ("\t", "tsv")])
def test_plain_tables(tmp_path, vectors, sep, ext):
    path = tmp_path / f"emb.{ext}"
    lines = ["gene" + sep + sep.join(f"d{j}" for j in range(6))]
    lines += [s + sep + sep.join(repr(float(x)) for x in v) for s, v in vectors.items()]
    path.write_text("\n".join(lines) + "\n")
    _check(read_embeddings(path, species="human"), vectors)


@pytest.mark.parametrize("ext", ["pt", "pickle", "parquet", "csv", "tsv"])
def test_write_read_round_trip(tmp_path, vectors, ext):
    mouse = [s.capitalize() for s in SYMBOLS]
    emb = GeneEmbeddings(np.array(mouse), np.vstack(list(vectors.values())), "mouse", "text_minilm")
    path = write_embeddings(emb, tmp_path / f"out.{ext}")
    back = read_embeddings(path, species="mouse", source="text_minilm")
    assert back.symbols.tolist() == mouse and back.species == "mouse"
    np.testing.assert_allclose(back.matrix, emb.matrix, rtol=1e-6)


def test_written_files_are_what_the_anchors_read(tmp_path, vectors):
    emb = GeneEmbeddings(np.array(SYMBOLS), np.vstack(list(vectors.values())), "human", "x")
    obj = torch.load(write_embeddings(emb, tmp_path / "a.pt"), weights_only=True)
    assert set(obj) == set(SYMBOLS) and isinstance(obj["KLF1"], torch.Tensor) and obj["KLF1"].shape == (6,)
    with open(write_embeddings(emb, tmp_path / "a.pickle"), "rb") as fh:
        obj = pickle.load(fh)
    assert isinstance(obj["KLF1"], list) and isinstance(obj["KLF1"][0], float)
    frame = pd.read_parquet(write_embeddings(emb, tmp_path / "a.parquet"))
    assert list(frame.columns) == ["gene_id", "embedding"] and len(frame["embedding"][0]) == 6


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(ScpriorInputError, match="Cannot tell the embedding format"):
        guess_format(tmp_path / "emb.h5")
    assert guess_format("x.csv.gz") == "csv" and set(FORMATS) >= {"torch", "pickle", "parquet"}
    with pytest.raises(ScpriorInputError, match="not found"):
        read_embeddings(tmp_path / "none.pt", species="human")
    torch.save({"A": torch.zeros(3), "B": torch.zeros(4)}, tmp_path / "ragged.pt")
    with pytest.raises(ScpriorInputError, match="different lengths"):
        read_embeddings(tmp_path / "ragged.pt", species="human")
    torch.save({"A": torch.zeros(3), "a": torch.ones(3)}, tmp_path / "dup.pt")
    with pytest.raises(ScpriorInputError, match="duplicated"):
        read_embeddings(tmp_path / "dup.pt", species="human")
    torch.save({"A": torch.full((3,), float("nan"))}, tmp_path / "nan.pt")
    with pytest.raises(ScpriorInputError, match="NaN"):
        read_embeddings(tmp_path / "nan.pt", species="human")
    (tmp_path / "text.csv").write_text("gene,d0\nA,hello\n")
    with pytest.raises(ScpriorInputError, match="non-numeric"):
        read_embeddings(tmp_path / "text.csv", species="human")
    torch.save({"YAL001C": torch.ones(3)}, tmp_path / "yeast.pt")  # any species: nothing assumed about it
    assert read_embeddings(tmp_path / "yeast.pt", species="yeast").species == "yeast"
