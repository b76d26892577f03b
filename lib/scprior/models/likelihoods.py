"""Likelihoods and divergences shared by the generative models (ZINB counts, Gaussian latents)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def zinb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor,
                  eps: float = 1e-8) -> torch.Tensor:
    """Element-wise log-likelihood of counts ``x`` under a zero-inflated negative binomial.

    ``mu`` (mean, > 0) and ``zi_logits`` (logit of the extra-zero probability) have the shape of
    ``x``; ``theta`` (inverse dispersion, > 0) broadcasts against it. Returns the shape of ``x``.
    """
    theta = theta.expand_as(mu) if theta.dim() < mu.dim() else theta
    log_theta_mu = torch.log(theta + mu + eps)
    nb_zero = theta * (torch.log(theta + eps) - log_theta_mu)  # log NB(0)
    softplus_pi = F.softplus(zi_logits)
    # x == 0: log(pi + (1 - pi) * NB(0)) = logaddexp(logit, log NB(0)) - softplus(logit)
    log_zero = torch.logaddexp(zi_logits, nb_zero) - softplus_pi
    log_nb = (
        nb_zero
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )
    log_nonzero = log_nb - softplus_pi
    return torch.where(x < eps, log_zero, log_nonzero)


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over the last axis; shape ``mu.shape[:-1]``."""
    var = sigma.pow(2).clamp_min(1e-12)
    return 0.5 * (var + mu.pow(2) - 1.0 - torch.log(var)).sum(-1)
