"""The ESM runner, on a tiny randomly initialised ESM-2 built here (no weights downloaded)."""

from __future__ import annotations

import argparse

import esm
import numpy as np
import pandas as pd
import pytest
import torch

from scprior.errors import ScpriorInputError
from scprior.knowledge.esm import embed_proteins, load_esm_model


@pytest.fixture(scope="module")
def tiny_esm():
    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(num_layers=2, embed_dim=16, attention_heads=2, alphabet=alphabet).eval()
    return model, alphabet


def test_embed_proteins_shapes_means_and_windows(tiny_esm):
    model, alphabet = tiny_esm
    seqs = pd.DataFrame({"symbol": ["KLF1", "INS", "TINY"], "sequence": ["MATAETALPSISTLTALGPFPDTQDDFLKWWRSEEAQDMGPGPPDPTEPPLHVKSEDQPGEEEDDERGADATWDLDLLLTNFSGPEPGGAPQTCALAPSEASGAQYPPPPETLGAYAGGPGLVAGLLGSEDHSGWVRPALRARAPDAFVGPALAPAPAPEPKALALQPVYPGPGAGSSGGYFPRTGLSVPAASGAPYGLLSGYPAMYPAPQYQGHFQLFRGLQGPAPGPATSPSFLSCLGPGTVGTGLGGTAEDPGVIAETAPSKRGRRSWARKRQAAHTCAHPGCGKSYTKSSHLKAHLRTHTGEKPYACTWEGCGWRFARSDELTRHYRKHTGQRPFRCQLCPRAFSRSDHLALHMKRHL", "MALWMRLLPLLALLALWGPDPAAAFVNQHLCGSHLVEALYLVCGERGFFYTPKTRREAEDLQVGQVELGGGPGAGSLQPLALEGSLQKRGIVEQCCTSICSLYQLENYCN", "MK"],
                         "borrowed": [False, False, True]})
    emb = embed_proteins(seqs, model=model, alphabet=alphabet, source="esm2_tiny", max_length=1022, progress=False)
    assert emb.matrix.shape == (3, 16) and emb.source == "esm2_tiny"
    assert emb.provenance["borrowed_sequences"] == 1 and emb.provenance["layer"] == 2
    # the INS vector is the mean of its residue representations (BOS/EOS excluded)
    _, _, tokens = alphabet.get_batch_converter()([("INS", seqs.sequence[1])])
    with torch.no_grad():
        rep = model(tokens, repr_layers=[2])["representations"][2][0, 1:len(seqs.sequence[1]) + 1].mean(0)
    np.testing.assert_allclose(emb.lookup(["INS"])[0][0], rep.numpy(), rtol=1e-4, atol=1e-5)
    # windowed embedding of a long sequence = length-weighted mean of its windows
    win = embed_proteins({"KLF1": seqs.sequence[0]}, model=model, alphabet=alphabet, max_length=100, progress=False)
    parts = [embed_proteins({"p": seqs.sequence[0][s:s + 100]}, model=model, alphabet=alphabet, progress=False).matrix[0]
             for s in range(0, len(seqs.sequence[0]), 100)]
    lens = [len(seqs.sequence[0][s:s + 100]) for s in range(0, len(seqs.sequence[0]), 100)]
    np.testing.assert_allclose(win.matrix[0], np.average(parts, axis=0, weights=lens), rtol=1e-4, atol=1e-5)
    # batching does not change the result
    one = embed_proteins(seqs, model=model, alphabet=alphabet, batch_size=1, progress=False)
    np.testing.assert_allclose(one.matrix, emb.matrix, rtol=1e-4, atol=1e-5)


def test_load_esm_model_from_a_local_checkpoint(tmp_path, tiny_esm):
    model, _ = tiny_esm
    # the layout of fair-esm's ESM-2 checkpoints: prefixed state dict + argparse config
    ckpt = {"model": {f"encoder.sentence_encoder.{k}": v for k, v in model.state_dict().items()},
            "cfg": {"model": argparse.Namespace(encoder_layers=2, encoder_embed_dim=16,
                                                encoder_attention_heads=2, token_dropout=True)}}
    path = tmp_path / "esm2_t2_tiny.pt"
    torch.save(ckpt, path)
    loaded, alphabet = load_esm_model(path)
    assert loaded.num_layers == 2 and loaded.embed_dim == 16 and not loaded.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(ScpriorInputError, match="never downloads"):
        load_esm_model(tmp_path / "missing.pt")


def test_bad_input(tiny_esm):
    model, alphabet = tiny_esm
    with pytest.raises(ScpriorInputError, match="No protein sequences"):
        embed_proteins({}, model=model, alphabet=alphabet)
    with pytest.raises(ScpriorInputError, match="'symbol' and 'sequence'"):
        embed_proteins(pd.DataFrame({"gene": ["A"]}), model=model, alphabet=alphabet)
