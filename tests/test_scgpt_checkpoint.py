"""Loading a real-format scGPT checkpoint: a tiny one written here in scGPT's exact layout."""

from __future__ import annotations

import json

import pytest
import torch

from scprior.errors import ScpriorInputError
from scprior.models.scgenept import ScGenePT, ScGenePTConfig
from scprior.models.scgpt_checkpoint import build_from_scgpt, load_scgpt_weights, read_scgpt_dir

D, HID, LAYERS = 16, 32, 2
VOCAB = {"GATA1": 0, "OTHER": 1, "MYC": 2, "KLF1": 3, "FOO": 4, "TAL1": 5, "<pad>": 6, "<cls>": 7, "<eoc>": 8}
ARGS = {"embsize": D, "nheads": 2, "d_hid": HID, "nlayers": LAYERS, "dropout": 0.2, "n_layers_cls": 3,
        "pad_token": "<pad>", "input_emb_style": "continuous", "n_bins": 51, "max_seq_len": 1200,
        "fast_transformer": True, "MVC": True}


def _scgpt_state(flash_impl: bool = False) -> dict[str, torch.Tensor]:
    """State dict keys of scGPT's pretrained TransformerModel (FlashAttention layers)."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g)

    attn = "self_attn._impl." if flash_impl else "self_attn."
    state = {"encoder.embedding.weight": t(len(VOCAB), D), "encoder.enc_norm.weight": t(D), "encoder.enc_norm.bias": t(D),
             "value_encoder.linear1.weight": t(D, 1), "value_encoder.linear1.bias": t(D),
             "value_encoder.linear2.weight": t(D, D), "value_encoder.linear2.bias": t(D),
             "value_encoder.norm.weight": t(D), "value_encoder.norm.bias": t(D),
             "flag_encoder.weight": t(2, D)}
    for i in range(LAYERS):
        p = f"transformer_encoder.layers.{i}."
        state.update({p + attn + "Wqkv.weight": t(3 * D, D), p + attn + "Wqkv.bias": t(3 * D),
                      p + attn + "out_proj.weight": t(D, D), p + attn + "out_proj.bias": t(D),
                      p + "linear1.weight": t(HID, D), p + "linear1.bias": t(HID), p + "linear2.weight": t(D, HID),
                      p + "linear2.bias": t(D), p + "norm1.weight": t(D), p + "norm1.bias": t(D),
                      p + "norm2.weight": t(D), p + "norm2.bias": t(D)})
    for j in (0, 2, 4):
        out = 1 if j == 4 else D
        state[f"decoder.fc.{j}.weight"] = t(out, D)
        state[f"decoder.fc.{j}.bias"] = t(out)
    state.update({"cls_decoder._decoder.0.weight": t(D, D), "cls_decoder.out_layer.weight": t(1, D),
                  "mvc_decoder.gene2query.weight": t(D, D), "mvc_decoder.W.weight": t(D, D)})
    return state


def _write(folder, state, args=ARGS, vocab=VOCAB):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "best_model.pt")
    (folder / "args.json").write_text(json.dumps(args))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return folder


@pytest.mark.parametrize("flash_impl", [False, True])
def test_build_from_checkpoint_maps_weights(tmp_path, flash_impl):
    state = _scgpt_state(flash_impl)
    folder = _write(tmp_path / "scGPT_tiny", state)
    symbols = ["KLF1", "GATA1", "NOTINVOCAB"]
    model, report = build_from_scgpt(folder, symbols, n_measured=3)
    cfg = model.config
    assert (cfg.d_model, cfg.nhead, cfg.d_hid, cfg.nlayers) == (D, 2, HID, LAYERS)
    ours = model.state_dict()
    emb = ours["encoder.embedding.weight"]
    assert torch.equal(emb[0], state["encoder.embedding.weight"][VOCAB["KLF1"]])
    assert torch.equal(emb[1], state["encoder.embedding.weight"][VOCAB["GATA1"]])
    assert report.genes_matched == 2 and report.genes_missing == ["NOTINVOCAB"]
    attn = "self_attn._impl." if flash_impl else "self_attn."
    assert torch.equal(ours["transformer_encoder.layers.1.self_attn.in_proj_weight"],
                       state[f"transformer_encoder.layers.1.{attn}Wqkv.weight"])
    assert torch.equal(ours["transformer_encoder.layers.0.self_attn.out_proj.bias"],
                       state[f"transformer_encoder.layers.0.{attn}out_proj.bias"])
    assert torch.equal(ours["value_encoder.linear2.weight"], state["value_encoder.linear2.weight"])
    for key in ("cls_decoder._decoder.0.weight", "mvc_decoder.W.weight", "flag_encoder.weight", "decoder.fc.0.weight"):
        assert key in report.skipped
    assert "pert_encoder.weight" in report.not_loaded and "decoder.fc.0.weight" in report.not_loaded
    assert "2/3 genes" in str(report)
    out = model.eval().forward_cells(torch.rand(2, 3), torch.tensor([[0, -1], [2, 1]]))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_partial_fit_is_reported(tmp_path):
    folder = _write(tmp_path / "ckpt", _scgpt_state())
    small = ScGenePT(ScGenePTConfig(n_tokens=3, n_measured=2, d_model=D, nhead=2, d_hid=HID, nlayers=1))
    report = load_scgpt_weights(small, folder, ["TAL1", "MYC"], include_decoder=True)
    assert "more layers" in report.skipped["transformer_encoder.layers.1.self_attn.Wqkv.weight"]
    assert "decoder.fc.4.weight" in report.loaded
    wide = ScGenePT(ScGenePTConfig(n_tokens=3, n_measured=2, d_model=8, nhead=2, d_hid=HID, nlayers=1))
    report = load_scgpt_weights(wide, folder, ["TAL1", "MYC"])
    assert "shape" in report.skipped["value_encoder.linear2.weight"]
    assert "embedding size" in report.skipped["encoder.embedding.weight"]


def test_malformed_folders(tmp_path):
    with pytest.raises(ScpriorInputError, match="missing"):
        read_scgpt_dir(tmp_path)
    with pytest.raises(ScpriorInputError, match="integer token ids"):
        read_scgpt_dir(_write(tmp_path / "a", _scgpt_state(), vocab={"KLF1": "x"}))
    with pytest.raises(ScpriorInputError, match="embsize"):
        read_scgpt_dir(_write(tmp_path / "b", _scgpt_state(), args={"nheads": 2}))
    folder = _write(tmp_path / "c", _scgpt_state())
    torch.save([1, 2], folder / "best_model.pt")
    with pytest.raises(ScpriorInputError, match="state dict"):
        read_scgpt_dir(folder)
