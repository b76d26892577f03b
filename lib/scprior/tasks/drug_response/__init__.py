"""Drug dose response (GeneCompass's CPA task): data arrays, baselines, CPA recipes, CPA's R2 metrics.

Modules: :mod:`.data` (:class:`~.data.DrugTask`), :mod:`.baselines`, :mod:`.recipes`
(:func:`~.recipes.train_cpa`, :func:`~.recipes.benchmark`), :mod:`.metrics`, :mod:`.latent`.
"""
