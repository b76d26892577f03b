"""GeneCompass files: our checkpoints, and GeneCompass's released checkpoint layout.

Our checkpoint (:func:`save_genecompass`) is one torch file of tensors and plain data
(``format``, ``config``, ``vocab`` with the gene medians, ``state_dict`` with the prior tables as
buffers, ``info``); :func:`load_genecompass` reads it with ``weights_only=True``.

GeneCompass's released layout (xCompass-AI/GeneCompass: HuggingFace ``BertForMaskedLM`` saved
by ``trainer.save_model``, ``prior_knowledge/`` beside it) is read by :func:`load_released`::

    <model_dir>/config.json           BertConfig + use_values, use_promoter, use_co_exp,
                                      use_gene_family, use_peca_grn, use_cls_token, ...
    <model_dir>/pytorch_model.bin     state dict (bert.embeddings.*, bert.cls_embedding, bert.encoder.layer.N.*,
                                      cls.predictions.*, cls4value.predictions.*, emb_warmup.*)
    <prior_dir>/human_mouse_tokens.pickle                      Ensembl id -> token (<pad> 0, <mask> 1)
    <prior_dir>/gene_list/Gene_id_name_dict_human_mouse.pickle Ensembl id -> symbol
    <prior_dir>/{human,mouse}_gene_median_after_filter.pickle  Ensembl id -> non-zero median (optional)

The prior tables travel in the state dict as buffers (``bert.embeddings.{promoter,co_exp,
gene_family,peca_grn}_knowledge``) and are looked up through ``bert.embeddings.homologous_index``
(mouse token -> human token), as GeneCompass's forward does. Their pickles are read with a
restricted unpickler (plain builtins and numpy arrays/scalars, the same classes
``torch.load(weights_only=True)`` admits); anything else is refused, never executed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scprior.errors import ScpriorInputError
from scprior.models.genecompass.api import FORMAT, GeneCompass
from scprior.models.genecompass.encoding import MASK, N_SPECIAL, PAD
from scprior.models.genecompass.model import GeneCompassConfig, GeneCompassModel
from scprior.models.genecompass.tokens import SPECIAL_TOKENS, GeneVocab
from scprior.safe_io import (
    PLAIN_DATA_GLOBALS,
    load_pickle_restricted,
    load_torch_tensors,
    save_torch_atomic,
)

#: GeneCompass prior name (config flag ``use_<name>``, buffer ``<name>_knowledge``) -> ours, in their concat order
RELEASED_PRIORS = {"promoter": "promoter", "co_exp": "coexp", "gene_family": "family", "peca_grn": "grn"}
TOKENS_FILE = "human_mouse_tokens.pickle"
ID2NAME_FILE = "gene_list/Gene_id_name_dict_human_mouse.pickle"
MEDIAN_FILES = {"human": "human_gene_median_after_filter.pickle", "mouse": "mouse_gene_median_after_filter.pickle"}
WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")


# ------------------------------------------------------------------------------ our files
def save_genecompass(gc: GeneCompass, path: str | os.PathLike) -> Path:
    """Write ``gc`` atomically as a torch file of tensors and plain data; return the path."""
    return save_torch_atomic(gc.state(), path)


def load_genecompass(path: str | os.PathLike, *, device: str = "cpu") -> GeneCompass:
    """Read a file written by :func:`save_genecompass` (``weights_only=True``: no code runs)."""
    state = load_torch_tensors(path, what="GeneCompass checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ScpriorInputError(f"{path} is not a scprior GeneCompass checkpoint (format {FORMAT!r}); "
                                "for GeneCompass's own released files use load_released(model_dir).")
    cfg = GeneCompassConfig(**state["config"])
    sd = state["state_dict"]
    priors = {p: sd[f"embeddings.prior_{p}"] for p in cfg.priors}
    model = GeneCompassModel(cfg, priors)
    model.load_state_dict(sd)
    return GeneCompass(model.to(device), GeneVocab.from_dict(state["vocab"]), dict(state.get("info", {})))


def safe_pickle_load(path: str | os.PathLike, *, what: str = "pickle") -> object:
    """Load a pickle of plain data (dicts, lists, str, numbers, numpy arrays); refuse anything else."""
    return load_pickle_restricted(path, allowed=PLAIN_DATA_GLOBALS, what=what)


# ---------------------------------------------------------------------- released layout
@dataclass
class ReleasedReport:
    """What :func:`load_released` mapped: loaded/folded our keys, skipped theirs (with why), ours
    left at initialisation, token and median coverage."""

    loaded: list[str] = field(default_factory=list)
    folded: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    not_loaded: list[str] = field(default_factory=list)
    n_tokens: int = 0
    symbols_found: int = 0
    medians_found: int = 0
    files_missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"loaded {len(self.loaded)} tensors ({len(self.folded)} folded); skipped {len(self.skipped)} of "
                f"theirs; {len(self.not_loaded)} of ours keep their initialisation; {self.symbols_found}/"
                f"{self.n_tokens - N_SPECIAL} tokens named, {self.medians_found} with a median"
                + (f"; missing optional files {self.files_missing}" if self.files_missing else ""))


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = model_dir / name
        if path.is_file():
            if name.endswith(".safetensors"):
                try:
                    from safetensors.torch import load_file
                except ImportError:
                    raise ScpriorInputError(f"{path} needs the safetensors package; or supply pytorch_model.bin.") from None
                return load_file(str(path))
            state = load_torch_tensors(path, what="GeneCompass weights")
            if not isinstance(state, dict):
                raise ScpriorInputError(f"{path} does not hold a state dict.")
            return state
    raise ScpriorInputError(f"{model_dir} holds none of {list(WEIGHT_FILES)}: not a GeneCompass model folder.")


def _released_config(cfg: dict, state: dict[str, torch.Tensor]) -> GeneCompassConfig:
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        if key not in cfg:
            raise ScpriorInputError(f"config.json lacks {key!r}; is this a GeneCompass (BERT) checkpoint?")
    for flag in ("use_value_embed", "use_value_emb", "concat_values_first"):
        if cfg.get(flag):
            raise ScpriorInputError(f"config.json sets {flag}=true: that GeneCompass variant (value embedding "
                                    "MLP) is not mapped; only the released concat-value design is.")
    if not cfg.get("use_cls_token", True):
        raise ScpriorInputError("config.json sets use_cls_token=false; scprior's GeneCompass always has the species token.")
    priors = tuple(ours for theirs, ours in RELEASED_PRIORS.items() if cfg.get(f"use_{theirs}"))
    dims = {}
    for theirs, ours in RELEASED_PRIORS.items():
        if ours in priors:
            key = f"bert.embeddings.{theirs}_knowledge"
            if key not in state:
                raise ScpriorInputError(f"config.json enables use_{theirs} but the weights lack {key}.")
            dims[ours] = int(state[key].shape[1])
    return GeneCompassConfig(
        hidden_size=int(cfg["hidden_size"]), num_layers=int(cfg["num_hidden_layers"]),
        num_heads=int(cfg["num_attention_heads"]), intermediate_size=int(cfg["intermediate_size"]),
        dropout=float(cfg.get("hidden_dropout_prob", 0.02)), activation=str(cfg.get("hidden_act", "gelu")),
        top_k=int(cfg.get("max_position_embeddings", 2048)), use_values=bool(cfg.get("use_values", False)),
        priors=priors, prior_dims=dims, layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        vocab_size=int(cfg["vocab_size"]))


def _released_vocab(tokens: dict, id2name: dict, medians: dict[str, dict], homologous: torch.Tensor | None,
                    report: ReleasedReport) -> GeneVocab:
    if tokens.get("<pad>") != PAD or tokens.get("<mask>") != MASK:
        raise ScpriorInputError(f"{TOKENS_FILE}: expected <pad> = {PAD} and <mask> = {MASK} as GeneCompass "
                                f"writes them, got {tokens.get('<pad>')} / {tokens.get('<mask>')}.")
    by_id = {int(v): str(k) for k, v in tokens.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ScpriorInputError(f"{TOKENS_FILE}: token ids must be 0..{len(by_id) - 1} without gaps.")
    species, symbols, human, med = [], [], [], []
    for t in range(N_SPECIAL, len(by_id)):
        ens = by_id[t]
        sp_ = "mouse" if ens.upper().startswith("ENSMUSG") else "human"
        name = id2name.get(ens)
        report.symbols_found += name is not None
        species.append(sp_)
        symbols.append(str(name) if name else ens)
        m = medians.get(sp_, {}).get(ens)
        report.medians_found += m is not None
        med.append(float(m) if m is not None else np.nan)
    # prior lookup key: human tokens their own symbol, mouse tokens the symbol of their homologous human token
    for i, sp_ in enumerate(species):
        t = i + N_SPECIAL
        if sp_ == "human":
            human.append(symbols[i].upper())
        else:
            h = int(homologous[t]) if homologous is not None else t
            human.append(symbols[h - N_SPECIAL].upper() if h != t and h >= N_SPECIAL else "")
    # duplicated symbols (two Ensembl ids, one name) keep their Ensembl id to stay unique
    seen: set[tuple[str, str]] = set()
    for i, (sp_, s) in enumerate(zip(species, symbols)):
        if (sp_, s.upper()) in seen:
            symbols[i] = by_id[i + N_SPECIAL]
        seen.add((sp_, symbols[i].upper()))
    return GeneVocab(species, symbols, human, np.asarray(med))


_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_LAYER_MAP = {
    "attention.output.dense": "self_attn.out_proj", "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "linear1", "output.dense": "linear2", "output.LayerNorm": "norm2",
}


def load_released(model_dir: str | os.PathLike, prior_dir: str | os.PathLike | None = None, *,
                  device: str = "cpu") -> tuple[GeneCompass, ReleasedReport]:
    """Map a GeneCompass release (see the module docstring) into :class:`GeneCompass`; report the rest.

    ``prior_dir`` defaults to ``<model_dir>/prior_knowledge``, then ``<model_dir>/../prior_knowledge``.
    The token-type embedding (all type ids are 0) is folded into the position embeddings; the
    prior tables are re-indexed through ``homologous_index`` so a mouse token carries its human
    homolog's priors.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ScpriorInputError(f"{model_dir} has no config.json: not a GeneCompass model folder.")
    try:
        raw_cfg = json.loads((model_dir / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise ScpriorInputError(f"{model_dir}/config.json is not valid JSON ({exc}).") from None
    state = _weights(model_dir)
    state = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}
    state = {f"bert.{k}" if not k.startswith(("cls.", "cls4value.", "emb_warmup.")) else k: v for k, v in state.items()}
    if prior_dir is None:
        cands = [model_dir / "prior_knowledge", model_dir.parent / "prior_knowledge"]
        prior_dir = next((c for c in cands if (c / TOKENS_FILE).is_file()), cands[0])
    prior_dir = Path(prior_dir)
    report = ReleasedReport()
    tokens = safe_pickle_load(prior_dir / TOKENS_FILE, what="GeneCompass token dictionary")
    if not isinstance(tokens, dict):
        raise ScpriorInputError(f"{prior_dir / TOKENS_FILE} must hold a dict Ensembl id -> token id.")
    id2name: dict = {}
    if (prior_dir / ID2NAME_FILE).is_file():
        id2name = dict(safe_pickle_load(prior_dir / ID2NAME_FILE, what="GeneCompass id -> name dictionary"))
    else:
        report.files_missing.append(ID2NAME_FILE)
    medians: dict[str, dict] = {}
    for sp_, name in MEDIAN_FILES.items():
        if (prior_dir / name).is_file():
            medians[sp_] = dict(safe_pickle_load(prior_dir / name, what="GeneCompass gene medians"))
        else:
            report.files_missing.append(name)
    cfg = _released_config(raw_cfg, state)
    if len(tokens) != cfg.vocab_size:
        raise ScpriorInputError(f"config.json vocab_size {cfg.vocab_size} but the token dictionary has {len(tokens)} entries.")
    homologous = state.get("bert.embeddings.homologous_index")
    vocab = _released_vocab(tokens, id2name, medians, homologous, report)
    report.n_tokens = len(vocab)
    index = homologous.long() if homologous is not None else torch.arange(cfg.vocab_size)

    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, value: torch.Tensor | None = None) -> None:
        ours[dst] = (state[src] if value is None else value).float()
        used.add(src)

    e = "bert.embeddings."
    take(e + "word_embeddings.weight", "embeddings.word_embeddings.weight")
    priors = {}
    for theirs, mine in RELEASED_PRIORS.items():
        if mine in cfg.priors:
            table = state[e + f"{theirs}_knowledge"].float()[index]
            priors[mine] = table
            take(e + f"{theirs}_knowledge", f"embeddings.prior_{mine}", table)
            for p in ("weight", "bias"):
                take(e + f"{theirs}_embeddings.linear1.{p}", f"embeddings.prior_proj.{mine}.{p}")
    for part in ("cat_fc", "cat_ln", "cat_proj"):
        for p in ("weight", "bias"):
            take(e + f"concat_embeddings.{part}.{p}", f"embeddings.concat.{part}.{p}")
    pos = state[e + "position_embeddings.weight"].float()[: cfg.top_k]
    if e + "token_type_embeddings.weight" in state:
        pos = pos + state[e + "token_type_embeddings.weight"].float()[0]
        used.add(e + "token_type_embeddings.weight")
        report.folded[e + "token_type_embeddings.weight"] = "row 0 (every token's type) added to the position embeddings"
    take(e + "position_embeddings.weight", "embeddings.position_embeddings.weight", pos)
    for p in ("weight", "bias"):
        take(e + f"LayerNorm.{p}", f"embeddings.LayerNorm.{p}")
    take("bert.cls_embedding.weight", "cls_embedding.weight")
    for i in range(cfg.num_layers):
        base = f"bert.encoder.layer.{i}."
        for p in ("weight", "bias"):
            qkv = [base + f"attention.self.{n}.{p}" for n in ("query", "key", "value")]
            take(qkv[0], f"encoder.layers.{i}.self_attn.in_proj_{p}", torch.cat([state[k] for k in qkv]))
            used.update(qkv)
            report.folded[f"encoder.layers.{i}.self_attn.in_proj_{p}"] = "query/key/value concatenated"
            for theirs, mine in _LAYER_MAP.items():
                take(base + f"{theirs}.{p}", f"encoder.layers.{i}.{mine}.{p}")
    for head, mine in (("cls", "id_head"), ("cls4value", "value_head")):
        pre = f"{head}.predictions."
        if pre + "decoder.weight" not in state:
            continue
        for p in ("weight", "bias"):
            take(pre + f"transform.dense.{p}", f"{mine}.dense.{p}")
            take(pre + f"transform.LayerNorm.{p}", f"{mine}.LayerNorm.{p}")
        take(pre + "decoder.weight", f"{mine}.decoder.weight")
        bias_key = pre + "bias" if pre + "bias" in state else pre + "decoder.bias"
        take(bias_key, f"{mine}.decoder.bias")
        used.update({pre + "bias", pre + "decoder.bias"} & set(state))
    reasons = {"bert.embeddings.position_ids": "HF index buffer (recomputed)",
               "bert.embeddings.token_type_ids": "HF index buffer (all zeros)",
               "bert.embeddings.homologous_index": "used to re-index the prior tables (mouse -> human homolog)",
               "emb_warmup.alpha": "their prior warm-up state (alpha starts at 1, never ramps); ours: prior_warmup_steps",
               "emb_warmup.steps": "their prior warm-up step counter"}
    for k in state:
        if k not in used:
            report.skipped[k] = reasons.get(k, "no slot in scprior's GeneCompass (e.g. pooler)")
    model = GeneCompassModel(cfg, priors)
    own = model.state_dict()
    for k, v in list(ours.items()):
        if k not in own or own[k].shape != v.shape:
            report.skipped[k] = f"shape {tuple(v.shape)} does not fit ours {tuple(own[k].shape) if k in own else None}"
            del ours[k]
    missing, _ = model.load_state_dict(ours, strict=False)
    report.loaded = sorted(ours)
    report.not_loaded = sorted(k for k in missing if k != "embeddings.warmup_step")
    info = {"source": str(model_dir), "released_report": str(report)}
    return GeneCompass(model.to(device), vocab, info), report


__all__ = ["RELEASED_PRIORS", "ReleasedReport", "SPECIAL_TOKENS", "load_genecompass", "load_released",
           "safe_pickle_load", "save_genecompass"]
