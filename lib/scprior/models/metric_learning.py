"""Metric learning for cross-species alignment (SATURN's second phase), written for batches that
mix species.

Weak labels are species-prefixed (``"human:beta"`` and ``"mouse:beta"`` are different labels),
so labels never tell the model which types correspond across species. Positives of an anchor are
the cells with its label plus cross-species *mutual nearest neighbours at the label level*: a cell
``p`` of another species is a positive for label ``L`` when ``p`` is the nearest other-species cell
of some cell labelled ``L`` and ``L`` is also the label of ``p``'s own nearest cell in the anchor's
species. Negatives have another label and are not positives. Triplets are mined semi-hard on
cosine distance: ``d(a, p) < d(a, n) < d(a, p) + margin``.

As in SATURN's ``cross_species`` miner (``utils/loss_and_miner_utils.get_species_triplet_indices``),
the positive of a triplet is by default a cell of *another* species than the anchor
(``positives="cross_species"``): same-species positives never pull the species together, and
with them (``positives="all"``) most drawn positives are same-label cells of the anchor's own
species, so the species stay apart while each clusters by type.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def species_prefixed(labels: Sequence[str], species: Sequence[str]) -> np.ndarray:
    """``"species:label"`` per cell: weak labels that carry no cross-species correspondence."""
    return np.asarray([f"{s}:{lab}" for s, lab in zip(species, labels)], dtype=object)


def cross_species_positives(z: torch.Tensor, labels: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
    """Boolean (B, B) matrix of positive pairs: same label (not self) or a label-level cross-species MNN.

    ``z`` (B, d) L2-normalised embeddings, ``labels`` and ``species`` (B,) integer codes.
    """
    b = len(z)
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    with torch.no_grad():
        sim = z @ z.t()
        other = species[:, None] != species[None, :]
        if other.any():
            sim_other = sim.masked_fill(~other, -torch.inf)
            has_other = other.any(1)
            nn_other = sim_other.argmax(1)  # nearest cell of another species
            # p (= nn_other[i]) is linked to label[i] if p's nearest cell in i's species has label[i]
            p = nn_other
            # for each i: among cells of species[i], the nearest to p
            mask_i_species = species[None, :] == species[:, None]  # row i: cells of species[i]
            back = sim[p].masked_fill(~mask_i_species, -torch.inf).argmax(1)
            linked = has_other & (labels[back] == labels)
            idx_i = torch.nonzero(linked).flatten()
            if len(idx_i):
                # every anchor with label[i] gets p as positive, and p gets them as positives
                lab_match = labels[:, None] == labels[idx_i][None, :]  # (B, n_linked)
                extra = torch.zeros_like(pos)
                rows, cols = torch.nonzero(lab_match, as_tuple=True)
                extra[rows, p[idx_i][cols]] = True
                pos = pos | extra | extra.t()
    return pos & ~eye


POSITIVES = ("cross_species", "all")


def semihard_triplets(z: torch.Tensor, labels: torch.Tensor, species: torch.Tensor, *, margin: float = 0.2,
                      mnn: bool = True, positives: str = "cross_species") -> tuple[torch.Tensor, ...]:
    """Mine semi-hard triplets in a batch; returns index tensors (anchor, positive, negative), each (T,).

    ``z`` (B, d) is L2-normalised here. For every anchor one positive is drawn at random (torch
    RNG) from its positives (with ``positives="cross_species"``, SATURN's miner, only those of
    another species: anchors without one form no triplet); every negative with
    ``d(a, p) < d(a, n) < d(a, p) + margin`` (cosine distance) forms a triplet with that pair.
    With species-prefixed labels, ``mnn=False`` leaves no cross-species positive: use
    ``positives="all"`` there. ``positives="all"`` mines exactly as before the SATURN miner.
    """
    if positives not in POSITIVES:
        raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
    with torch.no_grad():
        z = F.normalize(z, dim=1)
        pos = cross_species_positives(z, labels, species) if mnn else (
            (labels[:, None] == labels[None, :]) & ~torch.eye(len(z), dtype=torch.bool, device=z.device))
        neg = (labels[:, None] != labels[None, :]) & ~pos
        if positives == "cross_species":
            pos = pos & (species[:, None] != species[None, :])
        anchors = torch.nonzero(pos.any(1) & neg.any(1)).flatten()
        empty = torch.zeros(0, dtype=torch.long, device=z.device)
        if len(anchors) == 0:
            return empty, empty, empty
        dist = 1.0 - z @ z.t()
        p = torch.multinomial(pos[anchors].float(), 1).flatten()
        d_ap = dist[anchors, p][:, None]
        d_an = dist[anchors]
        semi = neg[anchors] & (d_an > d_ap) & (d_an < d_ap + margin)
        rows, n = torch.nonzero(semi, as_tuple=True)
        return anchors[rows], p[rows], n


def semihard_triplet_loss(z: torch.Tensor, labels: torch.Tensor, species: torch.Tensor, *,
                          margin: float = 0.2, mnn: bool = True,
                          positives: str = "cross_species") -> tuple[torch.Tensor, int]:
    """Mean triplet margin loss on cosine distance over :func:`semihard_triplets`; returns
    (loss, n_triplets). With no triplet the loss is 0 (with a gradient path, so training continues).
    """
    a, p, n = semihard_triplets(z, labels, species, margin=margin, mnn=mnn, positives=positives)
    z = F.normalize(z, dim=1)
    if len(a) == 0:
        return z.sum() * 0.0, 0
    d_ap = 1.0 - (z[a] * z[p]).sum(1)
    d_an = 1.0 - (z[a] * z[n]).sum(1)
    return F.relu(d_ap - d_an + margin).mean(), int(len(a))
