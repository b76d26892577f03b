"""Bad input, as a hostile but realistic user supplies it: every case gets a clear ScpriorInputError
(or a correct result), no input file changes and no partial output is left behind.

Classes (the README's "Reliability" section lists the same):
1. files that try to run code (pickled ``os.system``) through every loader;
2. writes that fail half-way (the old file survives, no temporary file remains) and unwritable
   output folders (found before training / before a notebook starts);
3. input that used to give silently wrong results;
4. input that used to end in a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from perturbation_fixtures import make_gears_adata

from conftest import ROOT, make_counts_adata
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings

SYMBOLS = ["KLF1", "GATA1", "CD3E", "INS"]


# ------------------------------------------------------------------------------------- helpers
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def untouched(folder: Path) -> Iterator[None]:
    """Assert every file under ``folder`` keeps its bytes and no file appears or disappears."""
    before = {p: _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    yield
    after = {p: _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    assert after == before, f"files changed: {sorted(set(before) ^ set(after)) or 'contents'}"


def expect_error(fn, *patterns: str) -> str:
    """Call ``fn``; it must raise ScpriorInputError whose message contains every pattern (case-insensitive)."""
    with pytest.raises(ScpriorInputError) as info:
        fn()
    msg = str(info.value)
    for p in patterns:
        assert p.lower() in msg.lower(), f"{p!r} not in message: {msg}"
    assert "weights_only=False" not in msg  # never advise loading a file unsafely
    return msg


class Evil:
    """Pickles as a call to ``os.system`` that creates :attr:`marker`."""

    marker: Path

    def __reduce__(self):
        return (os.system, (f"touch {Evil.marker}",))


@pytest.fixture
def evil(tmp_path) -> Path:
    """The marker file a malicious payload would create (must never exist)."""
    Evil.marker = tmp_path / "PWNED"
    yield Evil.marker
    assert not Evil.marker.exists(), "code from a file ran"


def _evil_torch(path: Path, **extra) -> Path:
    torch.save({"model_state": {"w": torch.zeros(2)}, "config": {}, "payload": Evil(), **extra}, path)
    return path


def _emb() -> GeneEmbeddings:
    rng = np.random.default_rng(0)
    return GeneEmbeddings(np.array(SYMBOLS), rng.normal(size=(4, 3)), "human", "test")


# ----------------------------------------------------------------------- 1. nothing runs code
def test_uce_checkpoint_cannot_run_code(tmp_path, evil):
    from scprior.models.uce import load_uce

    path = _evil_torch(tmp_path / "uce.pt")
    with untouched(tmp_path):
        expect_error(lambda: load_uce(path, np.zeros((5, 4), dtype=np.float32)), "UCE checkpoint", "uce.pt", "re-save")


def test_checkpoint_of_another_model_gets_a_message(tmp_path):
    from scprior.models.macrogene_integrator import load_integrator
    from scprior.models.training import save_checkpoint
    from scprior.models.uce import load_uce

    path = save_checkpoint({"model_state": {"w": torch.zeros(1)}, "config": {"not_a_field": 1}}, tmp_path / "x.pt")
    with untouched(tmp_path):
        expect_error(lambda: load_uce(path, np.zeros((5, 4), dtype=np.float32)), "not a UCE checkpoint", "not_a_field")
        expect_error(lambda: load_integrator(path), "not an integrator checkpoint")


def test_integrator_checkpoint_cannot_run_code(tmp_path, evil):
    from scprior.models.macrogene_integrator import load_integrator

    path = _evil_torch(tmp_path / "unify_metric.pt")
    with untouched(tmp_path):
        expect_error(lambda: load_integrator(path), "integrator checkpoint", "unify_metric.pt")


def test_esm_weights_cannot_run_code_but_namespace_is_allowed(tmp_path, evil):
    from scprior.knowledge.esm import load_esm_model

    path = tmp_path / "esm2_t2_tiny.pt"
    torch.save({"model": {}, "cfg": {"model": argparse.Namespace(encoder_layers=2)}, "x": Evil()}, path)
    with untouched(tmp_path):
        expect_error(lambda: load_esm_model(path), "ESM weights", "esm2_t2_tiny.pt")
    # a Namespace alone passes the safe load and fails later with our own message (not a fair-esm traceback)
    torch.save({"model": {}, "cfg": {"model": argparse.Namespace(encoder_layers=2)}}, path)
    expect_error(lambda: load_esm_model(path), "do not fit fair-esm")


def test_scgpt_weights_cannot_run_code(tmp_path, evil):
    from scprior.models.scgpt_checkpoint import read_scgpt_dir

    folder = tmp_path / "scGPT_human"
    folder.mkdir()
    torch.save({"encoder.embedding.weight": torch.zeros(3, 4), "x": Evil()}, folder / "best_model.pt")
    (folder / "args.json").write_text(json.dumps({"embsize": 4, "nheads": 2, "d_hid": 8, "nlayers": 1}))
    (folder / "vocab.json").write_text(json.dumps({"A": 0}))
    with untouched(tmp_path):
        expect_error(lambda: read_scgpt_dir(folder), "scGPT weights", "best_model.pt", "cannot be read safely")
    (folder / "best_model.pt").write_bytes(b"PK\x03\x04 truncated")
    expect_error(lambda: read_scgpt_dir(folder), "best_model.pt", "intact copy")


def test_regulon_pickle_cannot_run_code(tmp_path, evil):
    from scprior.knowledge.regulon import read_priori_regulon

    path = tmp_path / "primary_intx_regulon.pkl"
    path.write_bytes(pickle.dumps(pd.DataFrame({"UpGene": ["A"], "DownGene": [Evil()]})))
    with untouched(tmp_path):
        expect_error(lambda: read_priori_regulon(path), "regulon table", "posix.system")
    good = tmp_path / "ok.pkl"
    pd.DataFrame({"UpGene": ["SP1", "SP1"], "Type": ["controls-expression-of"] * 2, "DownGene": ["EPHB6", "SP1"]}).to_pickle(good)
    assert read_priori_regulon(good)[["tf", "target"]].values.tolist() == [["SP1", "EPHB6"]]


@pytest.mark.parametrize("ext", ["pt", "pickle"])
def test_embedding_files_cannot_run_code(tmp_path, evil, ext):
    from scprior.knowledge.formats import read_embeddings

    path = tmp_path / f"emb.{ext}"
    if ext == "pt":
        torch.save({"KLF1": torch.zeros(3), "GATA1": Evil()}, path)
    else:
        path.write_bytes(pickle.dumps({"KLF1": [0.0, 1.0], "GATA1": Evil()}))
    with untouched(tmp_path):
        expect_error(lambda: read_embeddings(path, species="human"), "emb." + ext, "cannot be read safely")


def test_own_checkpoints_load_with_weights_only(tmp_path):
    from scprior.models.training import TrainConfig, fit, load_checkpoint, tensor_loader

    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def loss(m, batch, epoch):
        return {"loss": ((m(batch[0]) - batch[1]) ** 2).mean()}

    extra = {"genes": np.array(["A", "B"], dtype=object), "table": np.arange(3), "n": np.int64(4), "dims": (2, 3)}
    fit(model, loss, tensor_loader(x, y, batch_size=8), None, TrainConfig(max_epochs=2, progress=False, device="cpu"),
        checkpoint=tmp_path / "m.pt", extra_state=extra)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain data: loads without unpickling code
    assert raw["genes"] == ["A", "B"] and torch.equal(raw["table"], torch.arange(3)) and raw["n"] == 4
    assert load_checkpoint(tmp_path / "m.pt")["dims"] == (2, 3)
    torch.save({"w": torch.zeros(1)}, tmp_path / "other.pt")
    expect_error(lambda: load_checkpoint(tmp_path / "other.pt"), "not a scprior checkpoint", "model_state")


# ---------------------------------------------------------------- 2. a failed write loses nothing
class DiskFull(OSError):
    pass


def _half_write(path) -> None:
    """What a write that dies half-way leaves: some bytes, then an error (disk full)."""
    with open(path, "wb") as fh:
        fh.write(b"half")
    raise DiskFull(28, "No space left on device")


@pytest.mark.parametrize("ext", ["pt", "pickle", "parquet", "csv", "tsv"])
def test_failed_embedding_write_keeps_the_old_file(tmp_path, monkeypatch, ext):
    from scprior.knowledge import formats

    target = formats.write_embeddings(_emb(), tmp_path / f"emb.{ext}")
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: _half_write(f))
    monkeypatch.setattr(pickle, "dump", lambda obj, fh, *a, **k: (fh.write(b"half"), _half_write(fh.name)))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, f, *a, **k: _half_write(f))
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, f, *a, **k: _half_write(f))
    with untouched(tmp_path), pytest.raises(DiskFull):
        formats.write_embeddings(_emb(), target)


def test_failed_gears_metrics_figure_and_checkpoint_writes_leave_nothing(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from scprior.data.gears import write_gears
    from scprior.models.training import save_checkpoint
    from scprior.plotting.figures import save_figure
    from scprior.tasks.reporting import write_metrics

    gears = write_gears(make_gears_adata(), tmp_path / "g.h5ad")
    metrics = write_metrics({"a": 1.0}, tmp_path / "m.json")
    fig = plt.figure()
    figs = save_figure(fig, tmp_path, "f")
    ckpt = save_checkpoint({"model_state": {"w": torch.zeros(1)}}, tmp_path / "c.pt")
    monkeypatch.setattr(ad.AnnData, "write_h5ad", lambda self, f, *a, **k: _half_write(f))
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: _half_write(self))
    monkeypatch.setattr(fig, "savefig", lambda f, *a, **k: _half_write(f))
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: _half_write(f))
    with untouched(tmp_path):
        for write in (lambda: write_gears(make_gears_adata(), gears), lambda: write_metrics({"a": 2.0}, metrics),
                      lambda: save_figure(fig, tmp_path, "f"), lambda: save_checkpoint({"model_state": {}}, ckpt)):
            with pytest.raises(DiskFull):
                write()
    plt.close(fig)
    assert len(figs) == 2


def _read_only(monkeypatch) -> None:
    """Make every folder unwritable the way a read-only mount is (works as root too)."""
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path, monkeypatch):
    from scprior.models.training import TrainConfig, fit, tensor_loader

    calls = []

    def loss(m, batch, epoch):
        calls.append(epoch)
        return {"loss": m(batch[0]).pow(2).mean()}

    _read_only(monkeypatch)
    with untouched(tmp_path):
        expect_error(lambda: fit(torch.nn.Linear(2, 1), loss, tensor_loader(torch.randn(4, 2)), None,
                                 TrainConfig(max_epochs=3, progress=False, device="cpu"),
                                 checkpoint=tmp_path / "ckpt" / "model.pt"),
                     "Cannot write", "Permission denied", "writable output folder")
    assert calls == []  # not one epoch ran


def test_failed_knowledge_store_and_fetch_writes_keep_the_old_files(tmp_path, monkeypatch):
    from scprior.data import fetch
    from scprior.data.sources import Source
    from scprior.knowledge import store

    table = pd.DataFrame({"tf": ["SP1"], "target": ["EPHB6"], "interaction": ["x"], "source": ["y"]})
    kdir = tmp_path / "knowledge"
    written = [store.write_table(table, "regulon", kdir), store.save_embeddings(_emb(), kdir)]
    raw = tmp_path / "raw"
    src = Source(path="a.txt", kind="url", url="http://x/a.txt")
    (raw / "a.txt").parent.mkdir()
    (raw / "a.txt").write_bytes(b"old")
    monkeypatch.setattr(fetch, "source_bytes", lambda *a, **k: b"new")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, f, *a, **k: _half_write(f))
    monkeypatch.setattr(np, "savez", lambda f, *a, **k: _half_write(f))
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: _half_write(self))
    with untouched(tmp_path):
        for write in (lambda: store.write_table(table, "regulon", kdir), lambda: store.save_embeddings(_emb(), kdir),
                      lambda: fetch.fetch_one(src, raw, tmp_path)):
            with pytest.raises(DiskFull):
                write()
    assert all(p.is_file() for p in written)


def test_prepare_and_knowledge_build_check_their_output_folder_first(tmp_path, monkeypatch):
    from scprior.data.prepare import prepare
    from scprior.knowledge.build import build_knowledge

    _read_only(monkeypatch)
    with untouched(tmp_path):  # fails at once, before reading (prepare: before even looking at its inputs)
        expect_error(lambda: prepare(tmp_path / "no_raw", tmp_path / "out", {}), "Cannot write")
        expect_error(lambda: build_knowledge(ROOT / "data" / "raw", tmp_path / "kout", progress=False), "Cannot write")


def test_read_only_output_folder_gets_a_message_not_a_permission_error(tmp_path, monkeypatch):
    from scprior.knowledge.formats import write_embeddings
    from scprior.tasks.reporting import write_metrics

    _read_only(monkeypatch)
    with untouched(tmp_path):
        expect_error(lambda: write_metrics({"a": 1}, tmp_path / "m.json"), "Cannot write", str(tmp_path))
        expect_error(lambda: write_embeddings(_emb(), tmp_path / "e.csv"), "Cannot write")


# -------------------------------------------------------------- 3. no silently wrong results
def test_headerless_csv_embedding_keeps_its_first_gene(tmp_path):
    from scprior.knowledge.formats import read_embeddings

    rows = {"KLF1": [0.5, 1.5, -2.0], "GATA1": [1.0, 0.0, 3.0], "INS": [2.0, 2.0, 2.0]}
    path = tmp_path / "emb.csv"
    path.write_text("".join(f"{g},{','.join(map(str, v))}\n" for g, v in rows.items()))
    with untouched(tmp_path):
        emb = read_embeddings(path, species="human")
    assert emb.symbols.tolist() == list(rows)
    np.testing.assert_allclose(emb.matrix, np.asarray(list(rows.values())))
    # a header of dimension indices (what DataFrame.to_csv writes) is still a header
    pd.DataFrame(np.asarray(list(rows.values())), index=list(rows)).to_csv(path)
    assert read_embeddings(path, species="human").symbols.tolist() == list(rows)


def test_symbols_differing_only_in_case_are_refused(counts_adata):
    from scprior.data.validate import check_gene_symbols
    from scprior.models.species_data import check_species_adatas

    names = list(counts_adata.var_names)
    names[0], names[1] = "CD3E", "cd3e"
    counts_adata.var_names = names
    expect_error(lambda: check_gene_symbols(counts_adata, species="human"), "differ only in case", "CD3E", "cd3e",
                 "Sum them")
    counts_adata.layers["counts"] = counts_adata.X.copy()
    expect_error(lambda: check_species_adatas({"human": counts_adata}), "differ only in case")


def test_species_name_must_match_symbol_case():
    from scprior.data.validate import check_gene_symbols

    human, mouse = make_counts_adata(species="human"), make_counts_adata(species="mouse")
    check_gene_symbols(human, species="human")
    check_gene_symbols(mouse, species="mouse")
    expect_error(lambda: check_gene_symbols(mouse, species="human"), "passed as human", "species='mouse'")
    expect_error(lambda: check_gene_symbols(human, species="mouse"), "passed as mouse", "species='human'")
    # human symbols with a few lower-case letters (C1orf112) are still human
    human.var_names = ["C1orf112"] + list(human.var_names[1:])
    check_gene_symbols(human, species="human")


def test_embedding_file_read_under_the_wrong_species_is_refused(tmp_path):
    from scprior.knowledge.formats import read_embeddings, write_embeddings

    path = write_embeddings(_emb(), tmp_path / "human_genept.csv")
    with untouched(tmp_path):
        expect_error(lambda: read_embeddings(path, species="mouse"), "human_genept.csv", "passed as mouse",
                     "species='human'")
    assert read_embeddings(path, species="human").symbols.tolist() == SYMBOLS


def test_nan_labels_cast_to_text_are_refused(counts_adata):
    from scprior.data.validate import check_obs_column
    from scprior.models.species_data import check_species_adatas

    labels = counts_adata.obs["cell_type_raw"].astype(object).to_numpy()
    labels[[3, 7]] = np.nan
    counts_adata.obs["cell_type"] = pd.Series(labels, index=counts_adata.obs_names).astype(str)  # NaN -> 'nan'
    expect_error(lambda: check_obs_column(counts_adata, "cell_type"), "2 values ['nan']", "Fill or drop")
    counts_adata.layers["counts"] = counts_adata.X.copy()
    expect_error(lambda: check_species_adatas({"human": counts_adata}, label_key="cell_type"), "'nan'")


def test_raw_counts_into_scilama_are_refused_before_training(counts_adata):
    from scprior.models.scilama import SciLaMAConfig, train_scilama

    before = counts_adata.X.copy()
    expect_error(lambda: train_scilama(counts_adata, None, config=SciLaMAConfig(mode="beta_vae", epochs=1, progress=False)),
                 "raw integer counts", "sc.pp.scale")
    assert (counts_adata.X != before).nnz == 0


@pytest.mark.parametrize("change,pattern", [({"embsize": 8}, "embsize 8 but the weights have 4"),
                                            ({"nlayers": 3}, "nlayers 3 but the weights have 1"),
                                            ({"d_hid": 16}, "d_hid 16 but the weights have 8"),
                                            ({"nheads": 3}, "nheads (3) does not divide embsize (4)")])
def test_scgpt_args_must_match_the_weights(tmp_path, change, pattern):
    from scprior.models.scgpt_checkpoint import read_scgpt_dir

    folder = tmp_path / "scgpt"
    folder.mkdir()
    torch.save({"encoder.embedding.weight": torch.zeros(3, 4),
                "transformer_encoder.layers.0.linear1.weight": torch.zeros(8, 4)}, folder / "best_model.pt")
    (folder / "args.json").write_text(json.dumps({"embsize": 4, "nheads": 2, "d_hid": 8, "nlayers": 1, **change}))
    (folder / "vocab.json").write_text(json.dumps({"A": 0}))
    with untouched(tmp_path):
        expect_error(lambda: read_scgpt_dir(folder), pattern, "args.json")


def test_lower_case_and_padded_gears_conditions_map_to_the_measured_gene(tmp_path):
    from scprior.data.gears import read_gears, validate_gears

    adata = make_gears_adata(with_de=False)
    cond = adata.obs["condition"].astype(str).to_numpy().copy()
    cond[cond == "GATA1+ctrl"] = "gata1+ctrl"
    cond[cond == "ctrl"] = "ctrl "
    adata.obs["condition"] = cond
    # in memory: a clear error instead of 'no control cells' / an unmeasured token
    expect_error(lambda: validate_gears(adata, require_de=False), "'gata1+ctrl'", "'GATA1+ctrl'", "condition_renames")
    path = tmp_path / "perturb_processed.h5ad"
    adata.write_h5ad(path)
    with untouched(tmp_path):
        read = read_gears(path)  # read: respelled to the measured gene and a clean 'ctrl'
    assert {"GATA1+ctrl", "ctrl"} <= set(read.obs["condition"]) and not {"gata1+ctrl", "ctrl "} & set(read.obs["condition"])
    assert "K562_GATA1+ctrl_1+1" in read.uns["rank_genes_groups_cov_all"]


# --------------------------------------------------------------- 4. messages, not tracebacks
def _bad_h5ads(folder: Path, good: Path) -> dict[str, Path]:
    folder.mkdir()
    files = {"empty": folder / "empty.h5ad", "csv": folder / "table.h5ad", "truncated": folder / "cut.h5ad",
             "corrupt": folder / "corrupt.h5ad"}
    files["empty"].write_bytes(b"")
    files["csv"].write_text("cell,KLF1,GATA1\nc1,1,2\n")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    files["corrupt"].write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(4096))
    return files


@pytest.mark.parametrize("kind,pattern", [("empty", "0 bytes"), ("csv", "not an .h5ad"),
                                          ("truncated", "truncated or corrupt"), ("corrupt", "truncated or corrupt")])
def test_broken_h5ad_gets_one_clear_message_from_every_reader(tmp_path, kind, pattern, monkeypatch):
    from scprior.data import processed
    from scprior.data.gears import read_gears
    from scprior.data.perturbench import read_perturbench_norman

    good = tmp_path / "good.h5ad"
    make_gears_adata().write_h5ad(good)
    bad = _bad_h5ads(tmp_path / "bad", good)[kind]
    monkeypatch.setitem(processed.DATASETS, "broken", bad.name)
    with untouched(tmp_path):
        for read in (lambda: read_gears(bad), lambda: read_perturbench_norman(bad),
                     lambda: processed.read_processed("broken", bad.parent)):
            expect_error(read, bad.name, pattern)


def test_pickle_that_raises_type_error_gets_a_message(tmp_path):
    from scprior.knowledge.formats import read_embeddings

    class BadDict:
        def __reduce__(self):
            return (dict, (1, 2, 3))  # dict(1, 2, 3): TypeError while unpickling

    path = tmp_path / "emb.pkl"
    path.write_bytes(pickle.dumps(BadDict()))
    with untouched(tmp_path):
        expect_error(lambda: read_embeddings(path, species="human"), "emb.pkl", "cannot be read safely")


def test_parquet_of_strings_gets_a_message(tmp_path):
    from scprior.knowledge.formats import read_embeddings

    path = tmp_path / "gene_text.parquet"
    pd.DataFrame({"gene_id": ["KLF1", "GATA1"], "embedding": ["a zinc finger", "a GATA factor"]}).to_parquet(path)
    with untouched(tmp_path):
        expect_error(lambda: read_embeddings(path, species="human"), "'KLF1'", "not numeric")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nope")
    expect_error(lambda: read_embeddings(tmp_path / "broken.parquet", species="human"), "not a readable Parquet")


def test_nheads_must_divide_embsize():
    from scprior.models.scgenept import ScGenePTConfig

    expect_error(lambda: ScGenePTConfig(n_tokens=5, n_measured=3, d_model=10, nhead=3), "nhead (3) must divide d_model (10)")


def test_nbrun_unknown_notebook_and_wrong_override_type_fail_before_the_kernel(tmp_path, capsys):
    from scprior.nbrun import main

    out = tmp_path / "out.ipynb"
    assert main(["notebooks/99_nope.ipynb", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No notebook" in err and "00_data" in err
    assert main(["notebooks/00_data.ipynb", "-p", "seed", "notanumber", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'seed' must be int" in err and "'notanumber'" in err and "-p seed 0" in err
    assert main(["notebooks/00_data.ipynb", "-p", "quick", "yes please", "-o", str(out)]) == 2
    assert "'quick' must be bool" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_10x_hint_names_the_symbol_column_not_gene_ids(counts_adata):
    from scprior.data.validate import check_gene_symbols

    symbols = list(counts_adata.var_names)
    ids = [f"ENSG{i:011d}" for i in range(counts_adata.n_vars)]
    counts_adata.var_names = ids
    counts_adata.var["gene_ids"] = ids  # 10x: the Ensembl column
    counts_adata.var["gene_symbols"] = symbols
    msg = expect_error(lambda: check_gene_symbols(counts_adata, species="human"), "adata.var['gene_symbols']")
    assert "gene_ids" not in msg
    del counts_adata.var["gene_symbols"]
    assert "gene_ids" not in expect_error(lambda: check_gene_symbols(counts_adata, species="human"), "Map them")


def test_gears_control_with_a_stray_space_is_read_as_control(tmp_path):
    from scprior.data.gears import read_gears

    adata = make_gears_adata(with_de=False)
    adata.obs["condition"] = adata.obs["condition"].astype(str).replace({"ctrl": "ctrl "})
    path = tmp_path / "g.h5ad"
    adata.write_h5ad(path)
    with untouched(tmp_path):
        read = read_gears(path)
    assert (read.obs["condition"] == "ctrl").sum() == (adata.obs["condition"] == "ctrl ").sum() > 0
    assert sp.issparse(read.X)


def _ensembl(a):
    a.var["gene_name"] = list(a.var_names)
    a.var_names = [f"ENSG{i:011d}" for i in range(a.n_vars)]
    return a


def _dups(a):
    a.var_names = ["GENE0"] + list(a.var_names[1:-1]) + ["GENE0"]
    return a


def _nan(a):
    x = a.layers["counts"].toarray()
    x[0, 0] = np.nan
    a.layers["counts"] = sp.csr_matrix(x)
    return a


def _normalised(a):
    a.layers["counts"] = a.layers["counts"].multiply(1 / 3).tocsr()
    return a


@pytest.mark.parametrize("spoil,species,patterns", [
    (_ensembl, "human", ["Ensembl ids", "adata.var['gene_name']"]),
    (_normalised, "human", ["does not hold raw counts", "adata.layers['counts']"]),
    (_nan, "human", ["NaN/inf", "Remove or impute"]),
    (_dups, "human", ["duplicated gene names", "var_names_make_unique"]),
    (lambda a: a[:0].copy(), "human", ["is empty", "Check the file"]),
])
def test_the_readme_list_fails_at_the_door(counts_adata, spoil, species, patterns):
    """The README's "AnnData conventions" list, through the one check every model calls."""
    from scprior.models.species_data import check_species_adatas

    counts_adata.layers["counts"] = counts_adata.X.copy()
    adata = spoil(counts_adata)
    expect_error(lambda: check_species_adatas({species: adata}), *patterns)
