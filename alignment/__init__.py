"""alignment: multimodal alignment in JAX.

Pure functions (``jit``/``vmap``/``grad``-clean) for aligning the elements of two or more
modalities: pairwise costs, kernels and pairwise matrices; dynamic time warping, exact and soft,
with bands, subsequences and barycenters; exact linear assignment; entropic optimal transport,
Gromov-Wasserstein, Wasserstein barycenters and the sliced distance; Wasserstein-2 distances
between Gaussians; CCA (two views, multi-view, kernel) and Deep CCA; contrastive losses and
retrieval metrics; k-means units; canonical time warping; temporal cycle-consistency; CTC forced
alignment; attention as alignment; evaluation sharded over devices. Import everything from
``alignment`` (``import alignment as al``); the implementation modules in ``alignment._src`` are
private. The documentation site (docs/) has one page per family and the API reference.
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
from alignment._src.barycenter import (
    FreeSupportBarycenterOutput,
    SinkhornBarycenterOutput,
    free_support_barycenter,
    sinkhorn_barycenter,
)
from alignment._src.cca import (
    CCAOutput,
    CCATransformOutput,
    cca,
    cca_transform,
    dcca_loss,
    dcca_squared_loss,
)
from alignment._src.checks import ConvergenceWarning
from alignment._src.contrastive import (
    CLIP_LOGIT_SCALE_INIT,
    CLIP_MAX_SCALE,
    SIGLIP_LOGIT_BIAS_INIT,
    SIGLIP_LOGIT_SCALE_INIT,
    VSE_MARGIN,
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
from alignment._src.ctc import ForcedAlignmentOutput, ctc_forced_alignment
from alignment._src.ctw import CTWOutput, ctw, soft_ctw
from alignment._src.dtw import (
    alignment_to_path,
    dtw,
    dtw_alignment,
    dtw_points,
    soft_dtw,
    soft_dtw_alignment,
    soft_dtw_divergence,
    soft_dtw_points,
)
from alignment._src.dtw_barycenter import (
    DTWBarycenterOutput,
    SoftDTWBarycenterOutput,
    dtw_barycenter,
    soft_dtw_barycenter,
)
from alignment._src.gaussian import (
    gaussian_w2,
    gaussian_w2_diag,
    gaussian_w2_diag_pairwise,
    gaussian_w2_pairwise,
    gaussian_w2_scale,
)
from alignment._src.gaussian_barycenter import (
    GaussianBarycenterDiagOutput,
    GaussianBarycenterOutput,
    gaussian_w2_barycenter,
    gaussian_w2_barycenter_diag,
)
from alignment._src.gromov import (
    GromovWassersteinOutput,
    fused_gromov_wasserstein,
    gromov_wasserstein,
    gromov_wasserstein_points,
)
from alignment._src.kmeans import (
    KMeansAssignOutput,
    KMeansOutput,
    kmeans,
    kmeans_assign,
    minibatch_kmeans,
)
from alignment._src.lower_bounds import (
    DTWNeighborOutput,
    dtw_nearest_neighbor,
    keogh_envelope,
    lb_keogh,
)
from alignment._src.mcca import (
    KernelCCAOutput,
    MCCAOutput,
    dmcca_loss,
    kernel_cca,
    kernel_cca_transform,
    mcca,
    mcca_transform,
)
from alignment._src.pairwise import pairwise
from alignment._src.retrieval import RetrievalOutput, retrieval_metrics
from alignment._src.sharded import sharded_map, sharded_pairwise
from alignment._src.sinkhorn import (
    SinkhornOutput,
    SinkhornPointsOutput,
    barycentric_projection,
    sinkhorn,
    sinkhorn_divergence,
    sinkhorn_points,
)
from alignment._src.sliced import (
    random_projections,
    sliced_wasserstein,
)
from alignment._src.subsequence import (
    SubsequenceDTWOutput,
    soft_subsequence_dtw,
    subsequence_dtw,
)
from alignment._src.tcc import (
    CycleBackOutput,
    SoftNearestNeighborOutput,
    cycle_back,
    cycle_consistency_accuracy,
    kendalls_tau,
    soft_nearest_neighbor,
    tcc_batch_loss,
    tcc_loss,
)

__version__ = "0.2.0"

# Names renamed in 0.2.0 (CHANGELOG.md): the old spelling still resolves, with a warning.
_RENAMED = {
    "dtw_xy": "dtw_points",
    "soft_dtw_xy": "soft_dtw_points",
    "dtw_path": "dtw_alignment",
    "ForcedAlignment": "ForcedAlignmentOutput",
    "SoftCTWOutput": "CTWOutput",
}


def __getattr__(name: str):
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(
            f"alignment.{name} was renamed alignment.{new} in 0.2.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module 'alignment' has no attribute {name!r}")


__all__ = [
    "CLIP_LOGIT_SCALE_INIT",
    "CLIP_MAX_SCALE",
    "SIGLIP_LOGIT_BIAS_INIT",
    "SIGLIP_LOGIT_SCALE_INIT",
    "VSE_MARGIN",
    "AssignmentOutput",
    "AttentionOutput",
    "CCAOutput",
    "CCATransformOutput",
    "CTWOutput",
    "ConvergenceWarning",
    "CycleBackOutput",
    "DTWBarycenterOutput",
    "DTWNeighborOutput",
    "ForcedAlignmentOutput",
    "FreeSupportBarycenterOutput",
    "GaussianBarycenterDiagOutput",
    "GaussianBarycenterOutput",
    "GromovWassersteinOutput",
    "HardAttentionOutput",
    "KMeansAssignOutput",
    "KMeansOutput",
    "KernelCCAOutput",
    "MCCAOutput",
    "RetrievalOutput",
    "SinkhornBarycenterOutput",
    "SinkhornOutput",
    "SinkhornPointsOutput",
    "SoftDTWBarycenterOutput",
    "SoftNearestNeighborOutput",
    "SubsequenceDTWOutput",
    "absolute_difference",
    "additive_attention",
    "alignment_to_path",
    "barycentric_projection",
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
    "dmcca_loss",
    "dot_product_attention",
    "doubly_stochastic_penalty",
    "dtw",
    "dtw_alignment",
    "dtw_barycenter",
    "dtw_nearest_neighbor",
    "dtw_points",
    "euclidean",
    "free_support_barycenter",
    "fused_gromov_wasserstein",
    "gaussian_w2",
    "gaussian_w2_barycenter",
    "gaussian_w2_barycenter_diag",
    "gaussian_w2_diag",
    "gaussian_w2_diag_pairwise",
    "gaussian_w2_pairwise",
    "gaussian_w2_scale",
    "gromov_wasserstein",
    "gromov_wasserstein_points",
    "hard_attention",
    "hungarian",
    "infonce_loss",
    "infonce_mi_lower_bound",
    "kendalls_tau",
    "keogh_envelope",
    "kernel_cca",
    "kernel_cca_transform",
    "kmeans",
    "kmeans_assign",
    "lb_keogh",
    "linear_assignment",
    "linear_kernel",
    "masked_softmax",
    "mcca",
    "mcca_transform",
    "minibatch_kmeans",
    "pairwise",
    "polynomial_kernel",
    "random_projections",
    "rbf_kernel",
    "retrieval_metrics",
    "sharded_clip_loss",
    "sharded_infonce_loss",
    "sharded_map",
    "sharded_pairwise",
    "sharded_siglip_loss",
    "siglip_loss",
    "sinkhorn",
    "sinkhorn_barycenter",
    "sinkhorn_divergence",
    "sinkhorn_points",
    "sliced_wasserstein",
    "soft_ctw",
    "soft_dtw",
    "soft_dtw_alignment",
    "soft_dtw_barycenter",
    "soft_dtw_divergence",
    "soft_dtw_points",
    "soft_nearest_neighbor",
    "soft_subsequence_dtw",
    "squared_euclidean",
    "subsequence_dtw",
    "tcc_batch_loss",
    "tcc_loss",
    "vse_loss",
]
