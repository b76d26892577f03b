"""Cross-species integration (the Unify/SATURN paper task) on Baron pancreas human + mouse:
data assembly (:mod:`.data`), baselines (:mod:`.baselines`), scores (:mod:`.metrics`), the
per-method recipes (:mod:`.methods`) and the scoring and summary written to
``metrics/integration.json`` (:mod:`.evaluation`)."""
