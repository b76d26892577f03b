"""Weak labels, cross-species MNN positives and semi-hard triplet mining."""

from __future__ import annotations

import numpy as np
import torch
from integration_helpers import one_torch_thread  # noqa: F401

from scprior.models.metric_learning import (
    cross_species_positives,
    semihard_triplet_loss,
    species_prefixed,
)


def test_species_prefixed_labels_differ_across_species():
    out = species_prefixed(["beta", "beta"], ["human", "mouse"])
    assert list(out) == ["human:beta", "mouse:beta"]


def _toy():
    # human A (label 0), human B (1), mouse a (2) next to A, mouse b (3) next to B
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.95, 0.1], [0.1, 0.95]]), dim=1)
    labels = torch.tensor([0, 1, 2, 3])
    species = torch.tensor([0, 0, 1, 1])
    return z, labels, species


def test_cross_species_mnn_positives():
    z, labels, species = _toy()
    pos = cross_species_positives(z, labels, species)
    assert pos[0, 2] and pos[2, 0] and pos[1, 3] and pos[3, 1]
    assert not pos[0, 3] and not pos[1, 2] and not pos.diagonal().any()
    # swap the mouse labels' geometry: b now sits by A, so A-b is the pair
    z2 = z[[0, 1, 3, 2]]
    pos2 = cross_species_positives(z2, labels, species)
    assert pos2[0, 3] and pos2[1, 2] and not pos2[0, 2]


def test_semihard_triplets_only_inside_the_margin():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1])
    species = torch.tensor([0, 0, 0, 0])
    far = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    loss, n = semihard_triplet_loss(far, labels, species, margin=0.2, mnn=False, positives="all")
    assert n == 0 and loss.item() == 0.0
    near = torch.tensor([[1.0, 0.0], [0.9, 0.3], [0.9, -0.35], [0.8, -0.5]], requires_grad=True)
    loss, n = semihard_triplet_loss(near, labels, species, margin=0.5, mnn=False, positives="all")
    assert n > 0 and loss.item() > 0
    loss.backward()
    assert near.grad.abs().sum() > 0
    assert np.isfinite(loss.item())


def test_cross_species_positives_only_pair_cells_of_different_species():
    # SATURN's miner: the positive of every triplet is of another species than the anchor (MNN).
    # With same-species positives allowed, most triplets pull cells of one species together and
    # the species are never aligned (the defect behind near-dummy transfer on Baron).
    from scprior.models.metric_learning import semihard_triplets

    gen = torch.Generator().manual_seed(0)
    n = 64
    species = torch.arange(n) % 2
    types = (torch.arange(n) // 2) % 4
    centres = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=1)
    z = centres[types] + 0.4 * torch.randn(n, 8, generator=gen) + 0.3 * species[:, None].float()
    labels = types + 4 * species  # species-prefixed labels
    torch.manual_seed(0)
    a, p, _ = semihard_triplets(z, labels, species, margin=0.5)
    assert len(a) > 0 and bool((species[a] != species[p]).all())
    torch.manual_seed(0)
    a2, p2, _ = semihard_triplets(z, labels, species, margin=0.5, positives="all")
    assert bool((species[a2] == species[p2]).any())  # the old mining: same-species positives
