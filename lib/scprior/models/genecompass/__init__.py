"""GeneCompass (xCompass-AI/GeneCompass): a knowledge-informed human + mouse transformer.

- :mod:`.encoding`: rank encoding (counts / gene non-zero median, log2(1+x), top-k ids + values),
  in-silico deletion of tokens;
- :mod:`.tokens`: the (species, gene) vocabulary with medians and human homologs;
- :mod:`.priors`: prior tables (text, protein, GO, GRN, gene family, co-expression, promoter slot);
- :mod:`.model`: the network (knowledge MLP, species token, BERT encoder, masked-gene heads);
- :mod:`.api`: :class:`GeneCompass` (encode, embed, gene_embeddings, delete_genes, save/load) and
  :func:`pretrain_genecompass` (masked-gene pretraining through the one training loop);
- :mod:`.checkpoint`: our checkpoints and GeneCompass's released layout (:func:`load_released`).
"""

from scprior.models.genecompass.api import (
           GeneCompass,
           PretrainConfig,
           build_model,
           pretrain_genecompass,
)
from scprior.models.genecompass.checkpoint import load_genecompass, load_released, save_genecompass
from scprior.models.genecompass.encoding import (
           MASK,
           PAD,
           SPECIES_IDS,
           RankEncoding,
           rank_encode,
           remove_tokens,
)
from scprior.models.genecompass.model import GeneCompassConfig, GeneCompassModel
from scprior.models.genecompass.priors import PRIORS, build_priors
from scprior.models.genecompass.tokens import GeneVocab, build_vocab

__all__ = ["MASK", "PAD", "PRIORS", "SPECIES_IDS", "GeneCompass", "GeneCompassConfig", "GeneCompassModel",
           "GeneVocab", "PretrainConfig", "RankEncoding", "build_model", "build_priors", "build_vocab",
           "load_genecompass", "load_released", "pretrain_genecompass", "rank_encode", "remove_tokens",
           "save_genecompass"]
