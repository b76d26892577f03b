from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings


@pytest.fixture
def emb() -> GeneEmbeddings:
    rng = np.random.default_rng(0)
    return GeneEmbeddings(np.array(["KLF1", "GATA1", "TP53"]), rng.normal(size=(3, 4)), "human", "toy", {"note": "x"})


def test_case_insensitive_match_reports_missing(emb):
    rep = emb.match(["klf1", "Gata1", "NOPE"])
    assert rep.matched == {"klf1": "KLF1", "Gata1": "GATA1"}
    assert rep.missing == ["NOPE"]
    assert rep.coverage == pytest.approx(2 / 3)
    assert "NOPE" in str(rep)


def test_lookup_modes(emb):
    with pytest.raises(ScpriorInputError, match="1 without an embedding"):
        emb.lookup(["KLF1", "NOPE"])
    rows, _ = emb.lookup(["NOPE", "tp53"], missing="zero")
    assert np.all(rows[0] == 0)
    np.testing.assert_array_equal(rows[1], emb.matrix[2])
    rows, rep = emb.lookup(["NOPE", "tp53"], missing="drop")
    assert rows.shape == (1, 4) and rep.missing == ["NOPE"]


def test_subset_and_normalized(emb):
    sub = emb.subset(["tp53", "klf1"])
    assert list(sub.symbols) == ["TP53", "KLF1"]
    norms = np.linalg.norm(sub.normalized().matrix, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_validation_errors():
    with pytest.raises(ScpriorInputError, match="NaN"):
        GeneEmbeddings(np.array(["A", "B"]), np.array([[0.0, np.nan], [1, 2]]), "human", "bad")
    with pytest.raises(ScpriorInputError, match="duplicated"):
        GeneEmbeddings(np.array(["Klf1", "KLF1"]), np.zeros((2, 3)), "mouse", "bad")
    with pytest.raises(ScpriorInputError, match="match one to one"):
        GeneEmbeddings(np.array(["A"]), np.zeros((2, 3)), "human", "bad")
    # any species name is allowed (nothing assumed about it); names are canonicalised
    assert GeneEmbeddings(np.array(["A"]), np.zeros((1, 3)), "Frog ", "ok").species == "frog"


def test_frame_roundtrip(emb):
    frame = emb.to_frame()
    back = GeneEmbeddings.from_frame(frame, species="human", source="toy")
    np.testing.assert_array_equal(back.matrix, emb.matrix)
    assert isinstance(frame, pd.DataFrame) and frame.index.name == "symbol"
