"""alignment: multimodal alignment in JAX.

Pure functions (``jit``/``vmap``/``grad``-clean) for aligning the elements of two modalities:
pairwise costs and kernels (:mod:`alignment.costs`), dynamic time warping, exact and soft
(:mod:`alignment.dtw`), exact linear assignment (:mod:`alignment.assignment`), entropic optimal
transport (:mod:`alignment.ot`) and Wasserstein-2 distances between Gaussians
(:mod:`alignment.gaussian`).
"""

from alignment.assignment import AssignmentOutput, hungarian, linear_assignment
from alignment.costs import (
    absolute_difference,
    cosine_distance,
    cosine_similarity,
    euclidean,
    linear_kernel,
    polynomial_kernel,
    rbf_kernel,
    squared_euclidean,
)
from alignment.dtw import (
    alignment_to_path,
    dtw,
    dtw_path,
    dtw_xy,
    soft_dtw,
    soft_dtw_alignment,
    soft_dtw_divergence,
    soft_dtw_xy,
)
from alignment.gaussian import (
    gaussian_w2,
    gaussian_w2_diag,
    gaussian_w2_diag_pairwise,
    gaussian_w2_pairwise,
    gaussian_w2_scale,
)
from alignment.ot import SinkhornOutput, sinkhorn, sinkhorn_divergence

__version__ = "0.1.0"

__all__ = [
    "AssignmentOutput",
    "SinkhornOutput",
    "absolute_difference",
    "alignment_to_path",
    "cosine_distance",
    "cosine_similarity",
    "dtw",
    "dtw_path",
    "dtw_xy",
    "euclidean",
    "gaussian_w2",
    "gaussian_w2_diag",
    "gaussian_w2_diag_pairwise",
    "gaussian_w2_pairwise",
    "gaussian_w2_scale",
    "hungarian",
    "linear_assignment",
    "linear_kernel",
    "polynomial_kernel",
    "rbf_kernel",
    "sinkhorn",
    "sinkhorn_divergence",
    "soft_dtw",
    "soft_dtw_alignment",
    "soft_dtw_divergence",
    "soft_dtw_xy",
    "squared_euclidean",
]
