"""Pins the public surface: adding or removing a public name is a deliberate change."""

from __future__ import annotations

import alignment

EXPECTED = {
    "AssignmentOutput",
    "AttentionOutput",
    "CCAOutput",
    "CCATransformOutput",
    "CLIP_LOGIT_SCALE_INIT",
    "CLIP_MAX_SCALE",
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
    "SIGLIP_LOGIT_BIAS_INIT",
    "SIGLIP_LOGIT_SCALE_INIT",
    "SinkhornBarycenterOutput",
    "SinkhornOutput",
    "SinkhornPointsOutput",
    "SoftDTWBarycenterOutput",
    "SoftNearestNeighborOutput",
    "SubsequenceDTWOutput",
    "VSE_MARGIN",
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
}


def test_all_is_pinned():
    assert set(alignment.__all__) == EXPECTED
    assert len(alignment.__all__) == len(EXPECTED)


def test_every_public_name_resolves_and_is_documented():
    for name in alignment.__all__:
        obj = getattr(alignment, name)
        if name.isupper():  # documented initial values (CLIP_LOGIT_SCALE_INIT, ...)
            assert isinstance(obj, float), name
            continue
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert obj.__doc__, name
            continue
        assert callable(obj), name
        section = "Attributes:" if isinstance(obj, type) else "Args:"
        assert obj.__doc__ and section in obj.__doc__, f"{name} lacks an {section} section"


def test_library_does_not_import_experiment_stack():
    import sys

    heavy = {"flax", "optax", "orbax", "matplotlib", "tslearn"}
    # A fresh interpreter, so that imports made by other tests do not count.
    import subprocess

    code = "import sys, alignment; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in out.stdout.split()}
    assert not (heavy & loaded), heavy & loaded


def test_renamed_names_resolve_with_a_warning():
    import pytest

    for old, new in alignment._RENAMED.items():
        with pytest.warns(DeprecationWarning, match=new):
            assert getattr(alignment, old) is getattr(alignment, new)
    with pytest.raises(AttributeError):
        alignment.not_a_name  # noqa: B018
