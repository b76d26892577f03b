"""Real scGPT checkpoints (bowang-lab/scGPT) -> :class:`~scprior.models.scgenept.ScGenePT`.

A scGPT model folder (e.g. ``scGPT_human``, as scGenePT uses it) holds

- ``best_model.pt``: a torch state dict of scGPT's ``TransformerModel`` / ``TransformerGenerator``;
- ``args.json``: its hyper-parameters (``embsize``, ``nheads``, ``d_hid``, ``nlayers``,
  ``dropout``, ``n_layers_cls``, ``pad_token``, ...);
- ``vocab.json``: gene symbol -> token id (incl. ``<pad>``, ``<cls>``, ``<eoc>``).

:func:`load_scgpt_weights` maps what it can onto our module, following scGPT's own perturbation
tutorial (which loads the ``encoder``, ``value_encoder`` and ``transformer_encoder`` parameters):
gene-embedding rows are taken by symbol through ``vocab.json`` (our genes missing from the vocab
keep their initialisation), FlashAttention names (``self_attn.Wqkv``, ``self_attn._impl.*``) are
renamed to PyTorch's (``self_attn.in_proj_*``), and everything else is reported: keys we have no
slot for (``cls_decoder``, ``mvc_decoder``, ...), shape mismatches and excluded prefixes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scprior.errors import ScpriorInputError
from scprior.models.scgenept import ScGenePT, ScGenePTConfig
from scprior.safe_io import load_torch_tensors

FILES = ("best_model.pt", "args.json", "vocab.json")
DEFAULT_PREFIXES = ("encoder", "value_encoder", "transformer_encoder")
_RENAMES = (
    (re.compile(r"self_attn\._impl\.Wqkv\."), "self_attn.in_proj_"),
    (re.compile(r"self_attn\.Wqkv\."), "self_attn.in_proj_"),
    (re.compile(r"self_attn\._impl\.out_proj\."), "self_attn.out_proj."),
)


@dataclass
class CheckpointReport:
    """What :func:`load_scgpt_weights` did: loaded keys, skipped keys with reasons, gene coverage."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    genes_matched: int = 0
    genes_missing: list[str] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)  # our parameters left at initialisation

    def __str__(self) -> str:
        n = self.genes_matched + len(self.genes_missing)
        return (f"loaded {len(self.loaded)} tensors; skipped {len(self.skipped)}; "
                f"{self.genes_matched}/{n} genes found in vocab.json; "
                f"{len(self.not_loaded)} of our tensors keep their initialisation")


def read_scgpt_dir(model_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, dict[str, int]]:
    """(state dict, args, vocab) of a scGPT model folder; fails clearly on a malformed folder."""
    model_dir = Path(model_dir)
    missing = [f for f in FILES if not (model_dir / f).is_file()]
    if missing:
        raise ScpriorInputError(
            f"{model_dir} is not a scGPT model folder: missing {missing}. It must hold best_model.pt "
            "(state dict), args.json and vocab.json, as scGPT's released checkpoints do."
        )
    try:
        args = json.loads((model_dir / "args.json").read_text())
        vocab = json.loads((model_dir / "vocab.json").read_text())
    except json.JSONDecodeError as exc:
        raise ScpriorInputError(f"{model_dir}: args.json / vocab.json is not valid JSON ({exc}).") from exc
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ScpriorInputError(f"{model_dir}/vocab.json must map gene symbols to integer token ids.")
    for key in ("embsize", "nheads", "d_hid", "nlayers"):
        if key not in args:
            raise ScpriorInputError(f"{model_dir}/args.json lacks {key!r}; is this a scGPT checkpoint?")
    state = load_torch_tensors(model_dir / "best_model.pt", what="scGPT weights")
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ScpriorInputError(f"{model_dir}/best_model.pt is not a state dict of tensors.")
    check_args_match_state(args, state, name=str(model_dir))
    return dict(state), args, vocab


def check_args_match_state(args: dict, state: dict[str, torch.Tensor], *, name: str = "checkpoint") -> None:
    """Fail unless ``args.json``'s sizes (``embsize``, ``nheads``, ``d_hid``, ``nlayers``) fit the weights.

    A mismatch would otherwise load nothing (every tensor skipped for its shape) and leave an
    untrained model that looks loaded.
    """
    try:
        sizes = {k: int(args[k]) for k in ("embsize", "nheads", "d_hid", "nlayers")}
    except (TypeError, ValueError) as exc:
        raise ScpriorInputError(f"{name}/args.json: embsize, nheads, d_hid and nlayers must be integers ({exc}).") from None
    if sizes["nheads"] < 1 or sizes["embsize"] % sizes["nheads"]:
        raise ScpriorInputError(
            f"{name}/args.json: nheads ({sizes['nheads']}) does not divide embsize ({sizes['embsize']}); "
            "attention splits the embedding into nheads equal parts. Use the args.json released with these weights.")
    found: dict[str, int] = {}
    emb = next((v for k, v in state.items() if _rename(k) == "encoder.embedding.weight"), None)
    if emb is not None and emb.dim() == 2:
        found["embsize"] = int(emb.shape[1])
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer_encoder\.layers\.(\d+)\.", k))}
    if layers:
        found["nlayers"] = max(layers) + 1
    lin = state.get("transformer_encoder.layers.0.linear1.weight")
    if lin is not None and lin.dim() == 2:
        found["d_hid"] = int(lin.shape[0])
    wrong = {k: (sizes[k], v) for k, v in found.items() if sizes[k] != v}
    if wrong:
        what = ", ".join(f"{k} {a} but the weights have {b}" for k, (a, b) in wrong.items())
        raise ScpriorInputError(
            f"{name}: args.json does not match best_model.pt ({what}). The two files come from different "
            "checkpoints; use the args.json released with these weights.")


def config_from_args(args: dict, *, n_tokens: int, n_measured: int, **overrides) -> ScGenePTConfig:
    """A :class:`ScGenePTConfig` with the checkpoint's sizes (``embsize``, ``nheads``, ``d_hid``, ``nlayers``)."""
    cfg = dict(n_tokens=n_tokens, n_measured=n_measured, d_model=int(args["embsize"]), nhead=int(args["nheads"]),
               d_hid=int(args["d_hid"]), nlayers=int(args["nlayers"]), dropout=float(args.get("dropout", 0.0)))
    cfg.update(overrides)
    return ScGenePTConfig(**cfg)


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def load_scgpt_weights(model: ScGenePT, checkpoint: str | os.PathLike | tuple, token_symbols: Sequence[str], *,
                       prefixes: Sequence[str] = DEFAULT_PREFIXES, include_decoder: bool = False) -> CheckpointReport:
    """Copy the scGPT weights that fit into ``model`` (in place) and report the rest.

    ``checkpoint``: the model folder, or what :func:`read_scgpt_dir` returned for it.
    ``token_symbols``: our token vocabulary without padding (row i of ``encoder.embedding`` is
    ``token_symbols[i]``). ``include_decoder`` also loads ``decoder.fc.*`` (scGPT's MLM decoder; its
    tutorial re-trains it).
    """
    state, args, vocab = checkpoint if isinstance(checkpoint, tuple) else read_scgpt_dir(checkpoint)
    report = CheckpointReport()
    prefixes = tuple(prefixes) + (("decoder",) if include_decoder else ())
    ours = model.state_dict()
    new = dict(ours)
    for key, value in state.items():
        name = _rename(key)
        if not name.startswith(prefixes):
            report.skipped[key] = "prefix not loaded (scGPT's perturbation tutorial re-trains it)" if name.startswith("decoder") \
                else "no counterpart in ScGenePT"
            continue
        if name == "encoder.embedding.weight":
            continue  # mapped by symbol below
        if name not in ours:
            report.skipped[key] = "no counterpart in ScGenePT" + (" (more layers than the model)" if ".layers." in name else "")
            continue
        if tuple(value.shape) != tuple(ours[name].shape):
            report.skipped[key] = f"shape {tuple(value.shape)} != ours {tuple(ours[name].shape)}"
            continue
        new[name] = value.to(ours[name].dtype)
        report.loaded.append(name)
    emb_key = next((k for k in state if _rename(k) == "encoder.embedding.weight"), None)
    if emb_key is not None and "encoder.embedding.weight" in ours and "encoder" in prefixes:
        src = state[emb_key]
        dst = new["encoder.embedding.weight"].clone()
        if src.shape[1] != dst.shape[1]:
            report.skipped[emb_key] = f"embedding size {src.shape[1]} != ours {dst.shape[1]}"
        else:
            for i, sym in enumerate(token_symbols):
                tid = vocab.get(sym)
                if tid is not None and 0 <= tid < src.shape[0]:
                    dst[i] = src[tid]
                    report.genes_matched += 1
                else:
                    report.genes_missing.append(sym)
            new["encoder.embedding.weight"] = dst
            report.loaded.append("encoder.embedding.weight")
    model.load_state_dict(new)
    report.not_loaded = [k for k in ours if k not in report.loaded and not k.startswith("lang_encoder.table")]
    return report


def build_from_scgpt(model_dir: str | os.PathLike, token_symbols: Sequence[str], *, n_measured: int,
                     language_table: np.ndarray | None = None, **overrides) -> tuple[ScGenePT, CheckpointReport]:
    """A ScGenePT sized like the checkpoint (``args.json``), with its weights loaded where they fit."""
    loaded = read_scgpt_dir(model_dir)
    cfg = config_from_args(loaded[1], n_tokens=len(token_symbols) + 1, n_measured=n_measured, **overrides)
    model = ScGenePT(cfg, language_table)
    return model, load_scgpt_weights(model, loaded, token_symbols)
