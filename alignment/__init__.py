"""alignment: multimodal alignment in JAX.

Pure functions (``jit``/``vmap``/``grad``-clean) for aligning the elements of two modalities:
pairwise costs and kernels (:mod:`alignment.costs`) and dynamic time warping, exact and soft
(:mod:`alignment.dtw`).
"""

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

__version__ = "0.1.0"

__all__ = [
    "absolute_difference",
    "alignment_to_path",
    "cosine_distance",
    "cosine_similarity",
    "dtw",
    "dtw_path",
    "dtw_xy",
    "euclidean",
    "linear_kernel",
    "polynomial_kernel",
    "rbf_kernel",
    "soft_dtw",
    "soft_dtw_alignment",
    "soft_dtw_divergence",
    "soft_dtw_xy",
    "squared_euclidean",
]
