"""Cell-type annotation within and across species (notebook 02): tasks and splits (:mod:`.data`),
baselines (:mod:`.baselines`), the GeneCompass recipe (:mod:`.genecompass`), metrics and verdicts
(:mod:`.metrics`), and the whole benchmark (:mod:`.run`)."""
