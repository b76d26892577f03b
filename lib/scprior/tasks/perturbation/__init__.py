"""Perturbation prediction (scGenePT's task, evaluated the GEARS way).

- :mod:`.baselines`: no change, training mean, additive, combined, Ahlmann-Eltze linear, knowledge
  regressors and the residual knowledge model.
- :mod:`.metrics`: GEARS's per-condition metrics and subgroup summaries.
- :mod:`.gi`: genetic-interaction coefficients and their recovery.
- :mod:`.recipes`: the method lists, knowledge inputs and :func:`run_methods` on one split.
- :mod:`.benchmark`: every method over seeds, with per-subgroup uncertainty.
- :mod:`.verdicts`: computed sentences (fails to beat, the knowledge-model goal).
"""

from scprior.data.perturbation_data import PerturbationData
from scprior.models.perturbation_transformer import PerturbationTransformer
from scprior.tasks.perturbation.benchmark import BenchmarkResult, benchmark, subgroup_uncertainty
from scprior.tasks.perturbation.gi import doubles_with_singles, gi_magnitude_table, gi_recovery
from scprior.tasks.perturbation.recipes import (
    ALL_METHODS,
    BASELINES,
    COVERAGE_GATED,
    DEEP,
    DEEP_LABELS,
    GEARS_METHODS,
    KNOWLEDGE,
    KNOWLEDGE_MODELS,
    MIN_COVERAGE,
    MODELS,
    DeepConfig,
    DeepPerturbationModel,
    KnowledgeInputs,
    MethodRun,
    PerturbationTask,
    run_methods,
)
from scprior.tasks.perturbation.verdicts import (
    baseline_comparison,
    fail_to_beat_sentence,
    knowledge_goal,
    knowledge_goal_sentence,
)

__all__ = [
    "ALL_METHODS", "BASELINES", "COVERAGE_GATED", "DEEP", "DEEP_LABELS", "GEARS_METHODS", "KNOWLEDGE",
    "KNOWLEDGE_MODELS", "MIN_COVERAGE", "MODELS", "BenchmarkResult", "DeepConfig", "DeepPerturbationModel",
    "KnowledgeInputs", "MethodRun", "PerturbationData", "PerturbationTask", "PerturbationTransformer", "baseline_comparison", "benchmark", "doubles_with_singles",
    "fail_to_beat_sentence", "gi_magnitude_table", "gi_recovery", "knowledge_goal", "knowledge_goal_sentence",
    "run_methods", "subgroup_uncertainty",
]
