"""Shared model pieces: ZINB likelihood, Gaussian KL, gradient reversal, batching, fit extensions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from integration_helpers import one_torch_thread  # noqa: F401
from scipy import stats

from scprior.models.batching import predict_batches, rows_loader, validation_split
from scprior.models.layers import GradientReversal, mlp
from scprior.models.likelihoods import gaussian_kl, zinb_log_prob
from scprior.models.training import TrainConfig, fit, tensor_loader


def test_zinb_reduces_to_negative_binomial_without_inflation():
    x = torch.tensor([0.0, 1.0, 3.0, 10.0])
    mu = torch.tensor([0.5, 2.0, 3.0, 8.0])
    theta = torch.tensor([1.5, 0.7, 4.0, 2.0])
    ll = zinb_log_prob(x, mu, theta, torch.full_like(x, -40.0))
    p = theta / (theta + mu)
    ref = stats.nbinom.logpmf(x.numpy(), theta.numpy(), p.numpy())
    np.testing.assert_allclose(ll.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_zinb_zero_inflation():
    pi = 0.3
    logit = torch.tensor([np.log(pi / (1 - pi))], dtype=torch.float32)
    mu, theta = torch.tensor([2.0]), torch.tensor([1.0])
    nb0 = stats.nbinom.pmf(0, 1.0, 1.0 / 3.0)
    assert zinb_log_prob(torch.tensor([0.0]), mu, theta, logit).item() == pytest.approx(np.log(pi + (1 - pi) * nb0), rel=1e-5)
    nb2 = stats.nbinom.pmf(2, 1.0, 1.0 / 3.0)
    assert zinb_log_prob(torch.tensor([2.0]), mu, theta, logit).item() == pytest.approx(np.log((1 - pi) * nb2), rel=1e-5)


def test_gaussian_kl_is_zero_at_prior_and_positive_elsewhere():
    assert gaussian_kl(torch.zeros(3, 4), torch.ones(3, 4)).abs().max().item() < 1e-6
    kl = gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[0.5]])).item()
    assert kl == pytest.approx(0.5 * (0.25 + 1 - 1 - np.log(0.25)), rel=1e-5)


def test_gradient_reversal_flips_gradient():
    x = torch.ones(3, requires_grad=True)
    GradientReversal(2.0)(x).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -2.0))


def test_rows_loader_densifies_sparse_batches_in_order():
    m = sp.random(10, 6, density=0.4, format="csr", random_state=0, dtype=np.float32)
    labels = np.arange(10)
    batches = list(rows_loader(m, labels, batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 6), (4, 6), (2, 6)]
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), m.toarray())
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), labels)
    out = predict_batches(lambda x, y: x.sum(1, keepdim=True), m, labels, batch_size=3)
    np.testing.assert_allclose(out.ravel(), np.asarray(m.sum(1)).ravel(), rtol=1e-6)


def test_validation_split_is_stratified_and_seeded():
    strata = np.array(["a"] * 50 + ["b"] * 10)
    tr, va = validation_split(60, fraction=0.2, seed=1, strata=strata)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == 60
    assert (strata[va] == "a").sum() == 10 and (strata[va] == "b").sum() == 2
    tr2, va2 = validation_split(60, fraction=0.2, seed=1, strata=strata)
    assert np.array_equal(va, va2)
    assert len(validation_split(5, fraction=0.0)[1]) == 0


def _toy_fit(**cfg):
    torch.manual_seed(0)
    model = mlp([3, 1], dropout=0.0, activation="identity", norm="none")
    x = torch.randn(32, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def loss_fn(m, batch, epoch):
        return {"loss": ((m(batch[0]) - batch[1]) ** 2).mean()}

    res = fit(model, loss_fn, tensor_loader(x, y, batch_size=8), tensor_loader(x, y, batch_size=8),
              TrainConfig(progress=False, **cfg))
    return model, res


def test_fit_restore_best_false_keeps_last_epoch():
    _, res = _toy_fit(max_epochs=5, lr=0.05, restore_best=False, patience=None)
    assert res.best_epoch == 4 and res.epochs_run == 5


def test_fit_min_epochs_delays_early_stopping():
    # lr=0 never improves after epoch 0: patience 0 would stop at epoch 1, min_epochs keeps it going
    _, res = _toy_fit(max_epochs=6, lr=0.0, patience=0, min_epochs=4)
    assert res.epochs_run == 4 and res.stopped_early
