"""The one training loop: learns, stops early on validation, checkpoints the best epoch, is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scprior.models.training import TrainConfig, fit, move_to, tensor_loader
from scprior.runtime import pick_device, seed_everything


def _data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    w = np.arange(1, 6, dtype=np.float32)
    y = (x @ w + 0.1 * rng.normal(size=n)).astype(np.float32)[:, None]
    return x, y


def mse_loss(model, batch, epoch):
    x, y = batch
    loss = nn.functional.mse_loss(model(x), y)
    return {"loss": loss, "mse": loss.detach()}


def _train(seed=0, **kw):
    x, y = _data()
    torch.manual_seed(123)  # model init is the caller's job; fit seeds the rest
    model = nn.Linear(5, 1)
    cfg = TrainConfig(max_epochs=kw.pop("max_epochs", 40), lr=0.05, seed=seed, progress=False, device="cpu", **kw)
    res = fit(model, mse_loss, tensor_loader(x[:150], y[:150], batch_size=32, shuffle=True, seed=seed),
              tensor_loader(x[150:], y[150:], batch_size=64), cfg)
    return model, res


def test_fit_learns_linear_map():
    model, res = _train(max_epochs=150, patience=None)
    np.testing.assert_allclose(model.weight.detach().numpy().ravel(), np.arange(1, 6), atol=0.1)
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"] / 10
    assert {"train_loss", "train_mse", "val_loss", "epoch"} <= set(res.history[0])


def test_fit_is_deterministic_under_seed():
    m1, r1 = _train(seed=3)
    m2, r2 = _train(seed=3)
    torch.testing.assert_close(m1.weight, m2.weight)
    assert [h["val_loss"] for h in r1.history] == [h["val_loss"] for h in r2.history]


def test_best_epoch_restored_and_checkpoint_written(tmp_path):
    x, y = _data()
    model = nn.Linear(5, 1)
    # a huge learning rate makes validation loss bounce: the restored model must be the best epoch
    cfg = TrainConfig(max_epochs=15, lr=0.9, optimizer="sgd", patience=None, progress=False, device="cpu")
    res = fit(model, mse_loss, tensor_loader(x[:150], y[:150], batch_size=150),
              tensor_loader(x[150:], y[150:], batch_size=50), cfg,
              checkpoint=tmp_path / "ckpt" / "best.pt", extra_state={"note": "toy"})
    best = min(h["val_loss"] for h in res.history)
    assert res.best_val_loss == pytest.approx(best)
    with torch.no_grad():
        val = nn.functional.mse_loss(model(torch.as_tensor(x[150:])), torch.as_tensor(y[150:])).item()
    assert val == pytest.approx(best, rel=1e-4)
    state = torch.load(res.checkpoint, weights_only=True)
    assert state["best_epoch"] == res.best_epoch and state["note"] == "toy"
    assert not list((tmp_path / "ckpt").glob(".*tmp"))


def test_early_stopping():
    _, res = _train(max_epochs=500, patience=3, min_delta=1e-3)
    assert res.stopped_early and res.epochs_run < 500


def test_nan_loss_is_reported():
    x, y = _data()
    y[0] = np.nan
    with pytest.raises(FloatingPointError, match="check the input for NaN"):
        fit(nn.Linear(5, 1), mse_loss, tensor_loader(x, y, batch_size=256), None,
            TrainConfig(max_epochs=2, progress=False, device="cpu"))


def test_helpers():
    assert pick_device("auto") in {"cpu", "cuda", "mps"}
    assert pick_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="Unknown device"):
        pick_device("tpu")
    with pytest.raises(ValueError):
        seed_everything(-1)
    batch = move_to({"a": torch.zeros(1), "b": [torch.ones(1)]}, "cpu")
    assert batch["b"][0].device.type == "cpu"
    with pytest.raises(ValueError, match="first dimension"):
        tensor_loader(np.zeros(3), np.zeros(4))


def test_lr_warmup_scales_the_first_steps_only():
    """Linear warm-up: step s uses lr * (s + 1) / warmup_steps, then the plain lr; default off."""
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    x, y = _data()
    for warm in (0, 6):
        seen.clear()
        model = nn.Linear(5, 1)
        cfg = TrainConfig(max_epochs=2, lr=0.01, patience=None, progress=False, device="cpu", warmup_steps=warm)
        fit(model, mse_loss, tensor_loader(x[:150], y[:150], batch_size=32), None, cfg,
            optimizer=Spy(model.parameters(), lr=0.01))
        want = [0.01 * min(1.0, (s + 1) / warm) if warm else 0.01 for s in range(10)]
        np.testing.assert_allclose(seen, want)  # 5 batches x 2 epochs; back to 0.01 after step 6
    assert TrainConfig().warmup_steps == 0
    with pytest.raises(Exception, match="warmup_steps"):
        fit(nn.Linear(5, 1), mse_loss, tensor_loader(x, y, batch_size=32), None,
            TrainConfig(max_epochs=1, warmup_steps=-1, progress=False, device="cpu"))
