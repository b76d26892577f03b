"""Embed an AnnData with UCE's *released* files, one call: ``obsm['X_uce']``.

The files, in the layouts UCE's ``evaluate.py`` / ``data_proc/data_utils.py`` read:

* ``4layer_model.torch`` (or 33 layers): the model state dict (``encoder.*``,
  ``transformer_encoder.*``, ``decoder.*``, ``binary_decoder.*``, ``gene_embedding_layer.*``,
  ``pos_encoder.pe``, usually ``pe_embedding.weight``);
* ``all_tokens.torch``: the token table, one row per token (rows 0 pad, 2 chromosome close,
  3 CLS; then every species' protein embeddings at its offset). UCE appends 1,895 N(0, 1)
  chromosome tokens drawn after ``torch.manual_seed(23)`` when the file lacks them; so does this;
* ``species_offsets.pkl``: ``{species: row offset}`` (a pickle: read here by a restricted
  unpickler that builds only dicts, strings and integers, so the file cannot run code);
* ``species_chrom.csv``: columns ``species, gene_symbol, chromosome, start``; chromosome token =
  ``CHROM_TOKEN_OFFSET`` + code of ``"<species>_<chromosome>"`` among all such names, sorted;
* protein embeddings per species: ``{symbol: tensor}`` torch files named as UCE names them
  (e.g. ``Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt``); a gene's row is its
  species' offset + its position among that file's (upper-cased) symbols.

Unlike UCE's ``eval_single_anndata.py``, no dataset-level gene or cell filtering, and every cell's
sentence is drawn by its own generator (``seed`` + a hash of the cell's counts), so a cell's
embedding does not depend on the other cells in the file; padding is masked exactly (see
:mod:`scprior.models.uce`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError
from scprior.models.uce import (
    CHROM_END,
    CLS,
    N_SPECIAL,
    PAD,
    GeneVocabulary,
    UCEConfig,
    embed_cells,
    load_uce_state_dict,
    uce_config_from_state_dict,
)
from scprior.runtime import pick_device
from scprior.safe_io import load_pickle_restricted, load_torch_tensors

#: UCE's rows of the special tokens in ``all_tokens.torch`` (eval_single_anndata.py defaults)
RELEASED_PAD, RELEASED_CHROM_END, RELEASED_CLS = 0, 2, 3
#: rows in the released ``all_tokens.torch`` (before the chromosome tokens UCE appends)
RELEASED_N_TOKENS = 143574
#: chromosome tokens UCE appends (hard-coded there), drawn after ``torch.manual_seed(23)``
RELEASED_N_CHROM = 1895
RELEASED_CHROM_SEED = 23
#: UCE's protein-embedding file per species (``get_species_to_pe``)
PROTEIN_FILES = {
    "human": "Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt",
    "mouse": "Mus_musculus.GRCm39.gene_symbol_to_embedding_ESM2.pt",
    "frog": "Xenopus_tropicalis.Xenopus_tropicalis_v9.1.gene_symbol_to_embedding_ESM2.pt",
    "zebrafish": "Danio_rerio.GRCz11.gene_symbol_to_embedding_ESM2.pt",
    "mouse_lemur": "Microcebus_murinus.Mmur_3.0.gene_symbol_to_embedding_ESM2.pt",
    "pig": "Sus_scrofa.Sscrofa11.1.gene_symbol_to_embedding_ESM2.pt",
    "macaca_fascicularis": "Macaca_fascicularis.Macaca_fascicularis_6.0.gene_symbol_to_embedding_ESM2.pt",
    "macaca_mulatta": "Macaca_mulatta.Mmul_10.gene_symbol_to_embedding_ESM2.pt",
}


# --------------------------------------------------------------------------- safe readers
def read_species_offsets(path: str | os.PathLike) -> dict[str, int]:
    """UCE's ``species_offsets.pkl`` -> ``{species: row offset}``, without running any code."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"No species offsets file at {path} (UCE's species_offsets.pkl).")
    obj = load_pickle_restricted(path, allowed={}, what="UCE species offsets pickle")
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                            for k, v in obj.items()):
        raise ScpriorInputError(f"{path} must hold a dict {{species name: integer row offset}}.")
    return {k: int(v) for k, v in obj.items()}


def read_chrom_csv(path: str | os.PathLike) -> pd.DataFrame:
    """UCE's species chromosome CSV with ``spec_chrom_code``: the code of ``"<species>_<chromosome>"``
    among all such names (sorted, as UCE's ``pd.Categorical``)."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"No species chromosome CSV at {path}.")
    table = pd.read_csv(path)
    missing = {"species", "gene_symbol", "chromosome", "start"} - set(table.columns)
    if missing:
        raise ScpriorInputError(f"{path} lacks column(s) {sorted(missing)} (UCE's species_chrom.csv layout).")
    spec_chrom = pd.Categorical(table["species"].astype(str) + "_" + table["chromosome"].astype(str))
    table = table.assign(spec_chrom_code=np.asarray(spec_chrom.codes, dtype=np.int64))
    table["gene_symbol"] = table["gene_symbol"].astype(str).str.upper()
    return table


def read_protein_embeddings(path: str | os.PathLike, species: str) -> list[str]:
    """Upper-cased symbols of a UCE protein-embedding file (``{symbol: tensor}``; ``path`` may be
    the folder holding UCE's file for ``species``), in the file's order (= row order after the offset)."""
    path = Path(path)
    if path.is_dir():
        name = PROTEIN_FILES.get(species)
        if name is None:
            raise ScpriorInputError(f"No known UCE protein-embedding file name for {species!r}; pass the file itself.")
        path = path / name
    obj = load_torch_tensors(path, what="UCE protein embeddings")
    if not isinstance(obj, Mapping) or not obj:
        raise ScpriorInputError(f"{path} must hold a non-empty dict {{gene symbol: embedding tensor}}.")
    return [str(k).upper() for k in obj]


def read_all_tokens(path: str | os.PathLike, *, n_chrom: int = RELEASED_N_CHROM,
                    seed: int = RELEASED_CHROM_SEED) -> tuple[torch.Tensor, int]:
    """``all_tokens.torch`` plus UCE's chromosome tokens appended (``n_chrom`` N(0, 1) rows after
    ``torch.manual_seed(seed)``). Returns (table, row of the first chromosome token)."""
    tokens = load_torch_tensors(path, what="UCE token file (all_tokens.torch)")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise ScpriorInputError(f"{path} must hold one 2-D tensor (tokens x dims).")
    tokens = tokens.float()
    offset = tokens.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    chrom = torch.normal(0.0, 1.0, size=(int(n_chrom), tokens.shape[1]), generator=gen)
    return torch.vstack([tokens, chrom]), offset


# ----------------------------------------------------------------------------- vocabulary
def released_vocabulary(species: str, symbols: list[str], chrom: pd.DataFrame, offset: int,
                        chrom_offset: int) -> tuple[GeneVocabulary, np.ndarray]:
    """Our :class:`GeneVocabulary` of one species from UCE's files, and ``rows``: for every one
    of our token ids, its row in UCE's token table (special, chromosome and gene tokens).

    Genes: those of the protein file that have a position in the chromosome CSV, in genomic
    order (chromosome code, start).
    """
    name = get_species(species).name
    spec = chrom[chrom["species"].astype(str) == species].drop_duplicates("gene_symbol")
    if spec.empty:
        raise ScpriorInputError(f"The chromosome CSV has no rows for species {species!r}.")
    position = {s: i for i, s in enumerate(symbols)}
    spec = spec[spec["gene_symbol"].isin(position)]
    if spec.empty:
        raise ScpriorInputError(f"No {species} gene has both a protein embedding and a chromosome position.")
    codes = np.sort(spec["spec_chrom_code"].unique())
    our_chrom = {int(c): i for i, c in enumerate(codes)}
    genes = pd.DataFrame({"species": name, "symbol": spec["gene_symbol"].to_numpy(),
                          "chrom": spec["spec_chrom_code"].map(our_chrom).to_numpy(),
                          "start": spec["start"].astype(np.int64).to_numpy()})
    genes = genes.sort_values(["chrom", "start", "symbol"], kind="stable").reset_index(drop=True)
    chrom_tokens = np.arange(N_SPECIAL, N_SPECIAL + len(codes))
    genes["token"] = np.arange(N_SPECIAL + len(codes), N_SPECIAL + len(codes) + len(genes))
    rows = np.empty(N_SPECIAL + len(codes) + len(genes), dtype=np.int64)
    rows[PAD], rows[CLS], rows[CHROM_END] = RELEASED_PAD, RELEASED_CLS, RELEASED_CHROM_END
    rows[chrom_tokens] = chrom_offset + codes
    rows[genes["token"].to_numpy()] = offset + genes["symbol"].map(position).to_numpy()
    vocab = GeneVocabulary(tokens=np.zeros((len(rows), 0), dtype=np.float32), genes=genes,
                           chrom_tokens={name: chrom_tokens})
    return vocab, rows


# ------------------------------------------------------------------------------- one call
def embed_with_released_uce(
    adata: ad.AnnData,
    species: str,
    *,
    model_file: str | os.PathLike,
    token_file: str | os.PathLike,
    offsets_file: str | os.PathLike,
    chrom_csv: str | os.PathLike,
    protein_embeddings: str | os.PathLike,
    layer: str | None = "counts",
    seed: int = 0,
    sample_size: int = 1024,
    nhead: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
    key: str = "X_uce",
    progress: bool = True,
) -> ad.AnnData:
    """Embed the cells of ``adata`` (raw counts in ``layers[layer]``, or ``X`` if ``layer`` is
    None; gene symbols as ``var_names``) of ``species`` (UCE's name, e.g. ``"human"``) with UCE's
    released model; returns a copy with ``obsm[key]`` (``X_uce``, 1280-d, L2-normalised).

    ``sample_size`` genes per sentence (UCE: 1024); ``nhead`` 20 as released unless given. Each
    cell's sentence comes from its own generator (``seed`` and the cell's counts). The input is
    not modified. The token table is the checkpoint's ``pe_embedding.weight`` when it has one (as
    UCE's strict load leaves it), else ``token_file`` with UCE's chromosome tokens appended.
    """
    from scprior.models.species_data import check_species_adatas

    state = load_torch_tensors(model_file, what="UCE model weights")
    if not isinstance(state, Mapping):
        raise ScpriorInputError(f"{model_file} must hold a state dict (UCE's 4layer_model.torch).")
    offsets = read_species_offsets(offsets_file)
    if species not in offsets:
        raise ScpriorInputError(f"The offsets file knows {sorted(offsets)}, not {species!r}.")
    chrom = read_chrom_csv(chrom_csv)
    symbols = read_protein_embeddings(protein_embeddings, species)
    table, chrom_offset = read_all_tokens(token_file)
    if "pe_embedding.weight" in state:
        table = torch.as_tensor(state["pe_embedding.weight"]).float()
    vocab, rows = released_vocabulary(species, symbols, chrom, offsets[species], chrom_offset)
    if rows.max() >= table.shape[0]:
        raise ScpriorInputError(f"Token rows up to {rows.max()} are needed but the token table has {table.shape[0]} "
                                "rows; the offsets, protein embeddings and token file do not belong together.")
    overrides = {"sample_size": int(sample_size), "device": device, "progress": progress}
    if nhead is not None:
        overrides["nhead"] = int(nhead)
    cfg: UCEConfig = uce_config_from_state_dict(state, **overrides)
    tokens = table[torch.as_tensor(rows)].numpy()
    model = load_uce_state_dict({k: v for k, v in state.items() if k != "pe_embedding.weight"}, tokens=tokens,
                                config=cfg)
    vocab.tokens = tokens
    if vocab.sentence_length(cfg.sample_size) > cfg.max_len:
        raise ScpriorInputError(f"A sentence of {cfg.sample_size} genes needs {vocab.sentence_length(cfg.sample_size)} "
                                f"positions; the model has {cfg.max_len}. Lower sample_size.")
    model.to(pick_device(device))
    check_species_adatas({species: adata}, layer=layer)
    z = embed_cells(model, vocab, {species: adata}, layer=layer, seed=seed, batch_size=batch_size, progress=progress)
    out = adata.copy()
    out.obsm[key] = z.astype(np.float32)
    out.uns[f"{key}_params"] = {"model_file": str(model_file), "species": species, "seed": int(seed),
                                "sample_size": int(cfg.sample_size), "n_genes_with_token": int(len(vocab.genes))}
    return out
