"""Pins the public surface: adding or removing a public name is a deliberate change."""

from __future__ import annotations

import alignment

EXPECTED = {
    "CCAOutput",
    "cca",
    "cca_transform",
    "dcca_loss",
    "dcca_squared_loss",
    "chunked_siglip_loss",
    "clip_loss",
    "infonce_loss",
    "infonce_mi_lower_bound",
    "sharded_clip_loss",
    "sharded_infonce_loss",
    "sharded_siglip_loss",
    "siglip_loss",
    "vse_loss",
    "CTWOutput",
    "SoftCTWOutput",
    "ctw",
    "soft_ctw",
    "AttentionOutput",
    "HardAttentionOutput",
    "additive_attention",
    "dot_product_attention",
    "doubly_stochastic_penalty",
    "hard_attention",
    "masked_softmax",
    "CycleBackOutput",
    "cycle_back",
    "cycle_consistency_accuracy",
    "kendalls_tau",
    "soft_nearest_neighbor",
    "tcc_batch_loss",
    "tcc_loss",
    "ForcedAlignment",
    "ctc_forced_alignment",
    "AssignmentOutput",
    "hungarian",
    "linear_assignment",
    "SinkhornOutput",
    "sinkhorn",
    "sinkhorn_divergence",
    "sinkhorn_points",
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
    "linear_kernel",
    "polynomial_kernel",
    "rbf_kernel",
    "soft_dtw",
    "soft_dtw_alignment",
    "soft_dtw_divergence",
    "soft_dtw_xy",
    "squared_euclidean",
}


def test_all_is_pinned():
    assert set(alignment.__all__) == EXPECTED
    assert len(alignment.__all__) == len(EXPECTED)


def test_every_public_name_resolves_and_is_documented():
    for name in alignment.__all__:
        obj = getattr(alignment, name)
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
