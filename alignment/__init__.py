"""alignment: multimodal alignment in JAX.

Pure functions (``jit``/``vmap``/``grad``-clean) for aligning the elements of two modalities:
pairwise costs and kernels (:mod:`alignment.costs`); dynamic time warping, exact and soft
(:mod:`alignment.dtw`); exact linear assignment (:mod:`alignment.assignment`); entropic optimal
transport (:mod:`alignment.ot`); Wasserstein-2 distances between Gaussians
(:mod:`alignment.gaussian`); CCA and Deep CCA (:mod:`alignment.coordination`); contrastive losses
(:mod:`alignment.contrastive`); canonical time warping (:mod:`alignment.temporal`); attention as
alignment (:mod:`alignment.attention`); temporal cycle-consistency (:mod:`alignment.tcc`) and
CTC forced alignment (:mod:`alignment.ctc`).
"""

from alignment._src.assignment import AssignmentOutput, hungarian, linear_assignment
from alignment._src.attention import (
    AttentionOutput,
    HardAttentionOutput,
    additive_attention,
    dot_product_attention,
    doubly_stochastic_penalty,
    hard_attention,
    masked_softmax,
)
from alignment._src.cca import CCAOutput, cca, cca_transform, dcca_loss, dcca_squared_loss
from alignment._src.contrastive import (
    chunked_siglip_loss,
    clip_loss,
    infonce_loss,
    infonce_mi_lower_bound,
    sharded_clip_loss,
    sharded_infonce_loss,
    sharded_siglip_loss,
    siglip_loss,
    vse_loss,
)
from alignment._src.costs import (
    absolute_difference,
    cosine_distance,
    cosine_similarity,
    euclidean,
    linear_kernel,
    polynomial_kernel,
    rbf_kernel,
    squared_euclidean,
)
from alignment._src.ctc import ForcedAlignment, ctc_forced_alignment
from alignment._src.ctw import CTWOutput, SoftCTWOutput, ctw, soft_ctw
from alignment._src.dtw import (
    alignment_to_path,
    dtw,
    dtw_path,
    dtw_xy,
    soft_dtw,
    soft_dtw_alignment,
    soft_dtw_divergence,
    soft_dtw_xy,
)
from alignment._src.gaussian import (
    gaussian_w2,
    gaussian_w2_diag,
    gaussian_w2_diag_pairwise,
    gaussian_w2_pairwise,
    gaussian_w2_scale,
)
from alignment._src.sinkhorn import SinkhornOutput, sinkhorn, sinkhorn_divergence, sinkhorn_points
from alignment._src.tcc import (
    CycleBackOutput,
    cycle_back,
    cycle_consistency_accuracy,
    kendalls_tau,
    soft_nearest_neighbor,
    tcc_batch_loss,
    tcc_loss,
)

__version__ = "0.1.0"

__all__ = [
    "AssignmentOutput",
    "AttentionOutput",
    "CCAOutput",
    "CTWOutput",
    "CycleBackOutput",
    "ForcedAlignment",
    "HardAttentionOutput",
    "SinkhornOutput",
    "SoftCTWOutput",
    "absolute_difference",
    "additive_attention",
    "alignment_to_path",
    "cca",
    "cca_transform",
    "chunked_siglip_loss",
    "clip_loss",
    "cosine_distance",
    "cosine_similarity",
    "ctc_forced_alignment",
    "ctw",
    "cycle_back",
    "cycle_consistency_accuracy",
    "dcca_loss",
    "dcca_squared_loss",
    "dot_product_attention",
    "doubly_stochastic_penalty",
    "dtw",
    "dtw_path",
    "dtw_xy",
    "euclidean",
    "gaussian_w2",
    "gaussian_w2_diag",
    "gaussian_w2_diag_pairwise",
    "gaussian_w2_pairwise",
    "gaussian_w2_scale",
    "hard_attention",
    "hungarian",
    "infonce_loss",
    "infonce_mi_lower_bound",
    "kendalls_tau",
    "linear_assignment",
    "linear_kernel",
    "masked_softmax",
    "polynomial_kernel",
    "rbf_kernel",
    "sharded_clip_loss",
    "sharded_infonce_loss",
    "sharded_siglip_loss",
    "siglip_loss",
    "sinkhorn",
    "sinkhorn_divergence",
    "sinkhorn_points",
    "soft_ctw",
    "soft_dtw",
    "soft_dtw_alignment",
    "soft_dtw_divergence",
    "soft_dtw_xy",
    "soft_nearest_neighbor",
    "squared_euclidean",
    "tcc_batch_loss",
    "tcc_loss",
    "vse_loss",
]
