"""Models, one module per idea (torch only; nothing here knows about evaluation or plotting),
and :mod:`scprior.models.training`, the one training loop they all use."""
