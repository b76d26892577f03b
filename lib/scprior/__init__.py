"""scprior: single-cell models that use prior gene knowledge.

Sub-packages, in the one direction data flows (nothing imports upward):

- :mod:`scprior.data`: raw files -> processed AnnData, readers for the anchor formats, simulators.
- :mod:`scprior.knowledge`: gene tables and gene embeddings.
- :mod:`scprior.models`: one module per model idea (torch only) and the one training loop.
- :mod:`scprior.tasks`: splits, training recipes and metrics per paper task.
- :mod:`scprior.plotting`: figures for the notebooks.
"""

__version__ = "0.1.0"
