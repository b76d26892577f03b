"""The one training loop under torchrun: 2 CPU processes (gloo, loopback) train the macrogene
integrator to the same weights, history and embedding as one process under the same seed.

Why it can match: every rank draws the same seeded global batch of B cells, takes a contiguous half
and weights its mean loss by (its cells x 2 / B); DDP averages the gradients, which is then the
gradient of the mean over the whole batch (the integrator's pretraining loss is a mean over cells
plus a regulariser; dropout is 0 here because masks would differ across processes). Tolerance: float32
sums in another order, 1e-4 absolute on the embedding after 3 epochs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scprior.models.training import shard_slice

HERE = Path(__file__).resolve().parent
LIB = str(HERE.parent / "lib")

_WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np, torch
torch.set_num_threads(1)
from integration_helpers import random_embeddings, two_species
from scprior.models.macrogene_integrator import MacrogeneIntegratorConfig, integrate
from scprior.runtime import dist_info, is_rank0

adatas = two_species(n_human=70, n_mouse=58, n_genes=30)
sets = {{"protein": random_embeddings(adatas, dim=8, source="protein_kmer")}}
cfg = MacrogeneIntegratorConfig(n_macrogenes=8, hidden_dim=16, latent_dim=6, dropout=0.0, pretrain_epochs=3,
                                metric_epochs=0, label_mode="none", batch_size=25, patience=None,
                                progress=False, device="cpu", seed=3)
res = integrate(adatas, sets, config=cfg, label_key=None, checkpoint_dir=sys.argv[1])
rank, world = dist_info()
if is_rank0():
    np.save(sys.argv[1] + "/z.npy", res.adata.obsm["X_unify"])
    with open(sys.argv[1] + "/history.json", "w") as fh:
        json.dump({{"world": world, "history": res.pretrain.history}}, fh)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_slice_weights_sum_to_the_world_size():
    for n in (1, 5, 24):
        parts = [shard_slice(n, r, 2) for r in range(2)]
        assert sum(w for _, w in parts) == pytest.approx(2.0)
        assert sorted(np.concatenate([m for m, w in parts if w > 0]).tolist()) == list(range(n))


@pytest.mark.parametrize("world", [2])
def test_torchrun_matches_single_process_training(tmp_path, world):
    script = tmp_path / "train.py"
    script.write_text(_WORKER.format(tests=str(HERE)))
    env = {**os.environ, "PYTHONPATH": LIB, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, cmd in (("single", [sys.executable, str(script)]),
                      ("ddp", [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
                               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script)])):
        out = tmp_path / name
        out.mkdir()
        proc = subprocess.run([*cmd, str(out)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = (np.load(out / "z.npy"), json.loads((out / "history.json").read_text()))
        assert (out / "unify_pretrain.pt").is_file()
    (z1, h1), (z2, h2) = runs["single"], runs["ddp"]
    assert h1["world"] == 1 and h2["world"] == world
    np.testing.assert_allclose(z2, z1, atol=1e-4)
    for a, b in zip(h1["history"], h2["history"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), k
