"""Compact expression embedding: a triplet-loss embedding for facial-expression similarity,
scored by triplet prediction accuracy. Now a clbench task kind (``"triplet"``): the pieces live
in :mod:`clbench.triplets` and :mod:`clbench.nn.heads` and are re-exported here; the task is
``facial4_mini``'s optional fifth task ``expression_similarity``
(``--facial4_mini.expression-similarity true``; docs/baselines.md, "Compact expression embedding").

Cite: Vemulapalli & Agarwala, "A Compact Embedding for Facial Expression Similarity", CVPR 2019
(arXiv:1811.11283): a 16-dimensional, L2-normalised embedding trained with a triplet loss on the
FEC dataset (triplets of faces annotated with which two expressions are most alike), evaluated
by triplet prediction accuracy. Triplet loss: Schroff et al., "FaceNet", CVPR 2015.

* :class:`TripletLoss`: ``max(0, d(a,p) − d(a,n) + margin)`` on squared Euclidean distances of
  L2-normalised embeddings (FaceNet Eq. 1); ``symmetric=True`` adds the positive-as-anchor term
  as FEC's loss does. :class:`~clbench.triplets.TripletCriterion` applies it to a network's
  ``(3B, 16)`` output.
* :func:`triplet_accuracy`: fraction of triplets whose anchor is closer to the positive than to
  the negative; ``strict=True`` is FEC's rule (the similar pair must be the closest of the
  three pairs).
* :func:`sample_expression_triplets` and :class:`TripletDataset`: **a stand-in for FEC**, which
  is not in the shared data: triplets from FER2013's emotion labels (anchor and positive share an
  emotion, the negative has another). This measures emotion-level similarity, a coarser notion
  than FEC's within-category human judgements.
* :class:`EmbeddingHead`: ``Linear(features → 16)`` then L2 normalisation (FEC's embedding),
  an ``nn.Linear`` subclass like the other heads (``make_head("embedding", ...)``).
"""

from __future__ import annotations

from clbench.nn.heads import EMBEDDING_DIM, EmbeddingHead
from clbench.triplets import (
    MARGIN,
    StackedTriplets,
    TripletCriterion,
    TripletDataset,
    TripletLoss,
    evaluate_triplets,
    triplet_accuracy,
)
from clbench.triplets import sample_label_triplets as sample_expression_triplets

__all__ = [
    "EMBEDDING_DIM",
    "MARGIN",
    "EmbeddingHead",
    "StackedTriplets",
    "TripletCriterion",
    "TripletDataset",
    "TripletLoss",
    "evaluate_triplets",
    "sample_expression_triplets",
    "triplet_accuracy",
]
