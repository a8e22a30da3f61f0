"""Tests for alignment._src.ctc (forced alignment) against brute force and optax's CTC loss.

References: enumeration of every frame labelling ``pi`` in ``[0, c)^t`` that collapses to the
labels (tiny inputs), in float64 NumPy, giving the best path, its log-probability and the CTC
log-likelihood (log-sum-exp over the same paths); ``optax.ctc_loss`` for the likelihood.
"""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads

from alignment._src.ctc import ctc_forced_alignment
from tests.conftest import x64

F32 = 1e-5
F64 = 1e-10


def _collapse(path, blank):
    out, prev = [], None
    for p in path:
        if p != blank and p != prev:
            out.append(p)
        prev = p
    return out


def _label_index(path, blank):
    """Position in the labels of each frame's label (-1 for blanks), read off the path."""
    idx, pos, prev = [], -1, None
    for p in path:
        if p == blank:
            idx.append(-1)
        else:
            if p != prev:
                pos += 1
            idx.append(pos)
        prev = p
    return idx


def brute_force(log_probs, labels, blank=0):
    """(best log-prob, best path, label index of the best path, log-likelihood) over all paths."""
    log_probs = np.asarray(log_probs, np.float64)
    t, c = log_probs.shape
    labels = [int(x) for x in labels]
    scores, paths = [], []
    for path in itertools.product(range(c), repeat=t):
        if _collapse(path, blank) == labels:
            paths.append(path)
            scores.append(sum(log_probs[k, p] for k, p in enumerate(path)))
    if not paths:
        return -np.inf, None, None, -np.inf
    scores = np.array(scores)
    best = int(np.argmax(scores))
    top = scores.max()
    loglik = top + np.log(np.sum(np.exp(scores - top)))
    return scores[best], list(paths[best]), _label_index(paths[best], blank), loglik


def _log_probs(rng, t, c, dtype=np.float32):
    logits = rng.normal(size=(t, c)) * 2.0
    return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(dtype)


CASES = [
    # (t, c, labels, blank)
    (1, 3, [], 0),
    (1, 3, [2], 0),
    (3, 3, [1, 2], 0),
    (4, 3, [1, 1], 0),  # a repeat needs a blank between
    (3, 3, [1, 1], 0),  # exactly enough frames: 1 - 1
    (5, 4, [3, 1, 3], 0),
    (6, 3, [1, 2, 2], 0),
    (5, 3, [0, 1], 2),  # blank is the last class
    (6, 4, [], 0),
]


@pytest.mark.parametrize(
    ("t", "c", "labels", "blank", "jit"),
    [(*case, False) for case in CASES] + [(*case, True) for case in CASES[3:6]],
)
def test_forced_alignment_matches_brute_force(rng, t, c, labels, blank, jit):
    lp = _log_probs(rng, t, c)
    fn = ctc_forced_alignment
    if jit:
        fn = jax.jit(ctc_forced_alignment, static_argnames="blank_id")
    out = fn(jnp.asarray(lp), jnp.asarray(labels, jnp.int32), blank_id=blank)
    best, path, index, _ = brute_force(lp, labels, blank)
    np.testing.assert_allclose(float(out.log_prob), best, rtol=F32, atol=F32)
    assert out.tokens.tolist() == path
    assert out.label_index.tolist() == index
    np.testing.assert_allclose(
        np.asarray(out.frame_log_probs), lp[np.arange(t), path], rtol=F32, atol=1e-6
    )
    assert out.tokens.dtype == jnp.int32 and out.log_prob.dtype == jnp.float32


def test_best_path_below_ctc_likelihood_of_optax(rng, enable_x64):
    optax = pytest.importorskip("optax")  # in the experiments extra, which CI installs
    # One padded batch through optax (one compilation): lengths, repeats, empty labels.
    problems = [(6, [1, 2]), (4, [1, 1]), (3, [1, 1]), (1, []), (6, [3, 1, 3]), (5, [2])]
    t_max, c, n = 6, 4, 3
    lps = np.stack([_log_probs(rng, t_max, c, np.float64) for _ in problems])
    labels = np.zeros((len(problems), n), np.int32)
    logit_pad = np.ones((len(problems), t_max))
    label_pad = np.ones((len(problems), n))
    for b, (t, lab) in enumerate(problems):
        labels[b, : len(lab)] = lab
        logit_pad[b, :t] = 0.0
        label_pad[b, : len(lab)] = 0.0
    optax_loglik = -np.asarray(optax.ctc_loss(lps, logit_pad, labels, label_pad))
    ours = jax.vmap(lambda lp, y, tl, ll: ctc_forced_alignment(lp, y, lengths=(tl, ll)))(
        lps,
        labels,
        jnp.asarray([t for t, _ in problems]),
        jnp.asarray([len(x) for _, x in problems]),
    )
    for b, (t, lab) in enumerate(problems):
        best, _, _, loglik = brute_force(lps[b, :t], lab)
        # The brute-force likelihood is optax's: both sum over the same paths.
        np.testing.assert_allclose(optax_loglik[b], loglik, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(float(ours.log_prob[b]), best, rtol=F64, atol=F64)
        assert float(ours.log_prob[b]) <= optax_loglik[b] + 1e-12
        if len(lab) > 0 and t > len(lab) + 1:  # several paths: the best is strictly below
            assert float(ours.log_prob[b]) < optax_loglik[b]


# One compiled function for the property test and the padded-batch tests: lengths traced.
T_PAD, C_PAD, L_PAD = 6, 3, 3
_padded_fn = jax.jit(lambda lp, y, tl, ll: ctc_forced_alignment(lp, y, lengths=(tl, ll)))


@settings(max_examples=40, deadline=None)
@given(
    t_valid=st.integers(1, T_PAD),
    labels=st.lists(st.integers(1, C_PAD - 1), min_size=0, max_size=L_PAD),
    seed=st.integers(0, 2**31 - 1),
)
def test_padded_alignment_matches_brute_force_property(t_valid, labels, seed):
    rng = np.random.default_rng(seed)
    lp = _log_probs(rng, T_PAD, C_PAD)
    lp[t_valid:] = np.nan  # padding is never read
    y = np.zeros(L_PAD, np.int32)
    y[: len(labels)] = labels
    y[len(labels) :] = 7  # garbage in the label padding too
    out = _padded_fn(lp, y, t_valid, len(labels))
    best, path, index, _ = brute_force(lp[:t_valid], labels)
    if path is None:  # infeasible: reported, not raised, under jit
        assert float(out.log_prob) == -np.inf
        assert out.tokens.tolist() == [-1] * T_PAD
        assert out.label_index.tolist() == [-1] * T_PAD
        return
    np.testing.assert_allclose(float(out.log_prob), best, rtol=F32, atol=F32)
    assert out.tokens.tolist() == path + [-1] * (T_PAD - t_valid)
    assert out.label_index.tolist() == index + [-1] * (T_PAD - t_valid)
    assert np.all(np.asarray(out.frame_log_probs)[t_valid:] == 0.0)


def test_vmap_over_padded_batch_equals_loop(rng):
    t_lens = [6, 3, 5, 1]
    label_sets = [[1, 2, 2], [2], [1, 1], []]
    lps = np.stack([_log_probs(rng, T_PAD, C_PAD) for _ in t_lens])
    ys = np.zeros((len(t_lens), L_PAD), np.int32)
    for b, lab in enumerate(label_sets):
        ys[b, : len(lab)] = lab
    batched = jax.vmap(_padded_fn)(
        lps, ys, jnp.asarray(t_lens), jnp.asarray([len(x) for x in label_sets])
    )
    for b, (tl, lab) in enumerate(zip(t_lens, label_sets, strict=True)):
        single = ctc_forced_alignment(lps[b, :tl], np.asarray(lab, np.int32))
        assert float(batched.log_prob[b]) == pytest.approx(float(single.log_prob), rel=F32)
        assert batched.tokens[b, :tl].tolist() == single.tokens.tolist()
        assert batched.label_index[b, :tl].tolist() == single.label_index.tolist()
        assert batched.tokens[b, tl:].tolist() == [-1] * (T_PAD - tl)


def test_gradient_is_one_hot_of_the_path(rng, enable_x64):
    lp = _log_probs(rng, 7, 4, np.float64)
    labels = np.array([1, 3, 3], np.int32)
    fn = lambda x: ctc_forced_alignment(x, labels).log_prob
    grad = np.asarray(jax.grad(fn)(jnp.asarray(lp)))
    _, path, _, _ = brute_force(lp, labels)
    expected = np.zeros_like(lp)
    expected[np.arange(7), path] = 1.0
    np.testing.assert_array_equal(grad, expected)
    check_grads(fn, (jnp.asarray(lp),), order=1, modes=("rev", "fwd"), atol=1e-6, rtol=1e-6)
    # Padding frames get a zero gradient.
    g_pad = jax.grad(lambda x: ctc_forced_alignment(x, labels, lengths=(5, 3)).log_prob)(lp)
    assert np.all(np.asarray(g_pad)[5:] == 0.0)


def test_forbidden_classes_and_infeasible_traced_lengths():
    lp = np.log(np.full((4, 3), 1 / 3))
    lp[:, 2] = -np.inf  # class 2 never emitted
    out = ctc_forced_alignment(lp, np.array([1, 2]))
    assert float(out.log_prob) == -np.inf
    assert out.tokens.tolist() == [-1] * 4
    # Traced lengths that leave too few frames: -inf and -1, no error.
    with x64():
        out = jax.jit(lambda tl: ctc_forced_alignment(np.zeros((4, 3)), [1, 1], lengths=(tl, 2)))(2)
    assert float(out.log_prob) == -np.inf and out.label_index.tolist() == [-1] * 4


def test_bad_input_raises_clear_errors():
    lp = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"labels too long for the frames.*need at least 4"):
        ctc_forced_alignment(lp, np.array([1, 2, 2]))
    with pytest.raises(ValueError, match=r"labels too long"):
        ctc_forced_alignment(lp, np.array([1, 2, 3, 1]))
    with pytest.raises(ValueError, match=r"must not contain the blank"):
        ctc_forced_alignment(lp, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        ctc_forced_alignment(lp, np.array([5]))
    with pytest.raises(ValueError, match=r"`blank_id`=4 is outside"):
        ctc_forced_alignment(lp, np.array([1]), blank_id=4)
    with pytest.raises(ValueError, match=r"`log_probs` must be a non-empty 2-D"):
        ctc_forced_alignment(lp[0], np.array([1]))
    with pytest.raises(ValueError, match=r"`labels` must be a 1-D"):
        ctc_forced_alignment(lp, np.array([[1]]))
    with pytest.raises(ValueError, match=r"`labels` must hold integers"):
        ctc_forced_alignment(lp, np.array([1.0]))
    with pytest.raises(ValueError, match=r"t_valid=4 is outside \[1, 3\]"):
        ctc_forced_alignment(lp, np.array([1]), lengths=(4, 1))
    with pytest.raises(ValueError, match=r"l_valid=2 is outside \[0, 1\]"):
        ctc_forced_alignment(lp, np.array([1]), lengths=(3, 2))
    with pytest.raises(ValueError, match=r"`lengths` must be a pair"):
        ctc_forced_alignment(lp, np.array([1]), lengths=3)
    # Padding beyond l_valid is not validated (it is never read).
    out = ctc_forced_alignment(lp, np.array([1, 0, 0]), lengths=(3, 1))
    assert out.label_index.tolist().count(0) >= 1


# ------------------------------------------------------------------------------------------
# Issue 9: the bad-input policy.
# ------------------------------------------------------------------------------------------

_traced_fn = jax.jit(lambda lp, y, tl, ll: ctc_forced_alignment(lp, y, lengths=(tl, ll)))


def _assert_policy_nan(out):
    assert np.isnan(float(out.log_prob))
    assert np.all(np.isnan(np.asarray(out.frame_log_probs)))
    assert out.tokens.tolist() == [-1] * out.tokens.shape[0]
    assert out.label_index.tolist() == [-1] * out.label_index.shape[0]


@pytest.mark.parametrize(
    ("labels", "t_valid", "l_valid"),
    [
        ([0, 1], 4, 2),  # the blank inside the valid labels
        ([1, -1], 4, 2),  # -1 inside the valid labels
        ([1, 3], 4, 2),  # no such class
        ([1, 2], 5, 2),  # t_valid beyond the frames
        ([1, 2], 0, 2),  # no frame
        ([1, 2], 4, 3),  # l_valid beyond the labels
        ([1, 2], 4, -1),
    ],
)
def test_traced_bad_labels_and_lengths_give_nan(rng, labels, t_valid, l_valid):
    lp = _log_probs(rng, 4, 3)
    _assert_policy_nan(_traced_fn(lp, np.asarray(labels, np.int32), t_valid, l_valid))
    fn = jax.jit(lambda y: ctc_forced_alignment(lp, y))
    if (t_valid, l_valid) == (4, 2):  # bad labels, no lengths: traced labels alone
        _assert_policy_nan(fn(np.asarray(labels, np.int32)))


def test_traced_garbage_in_label_padding_is_ignored(rng):
    lp = _log_probs(rng, 4, 3)
    ref = ctc_forced_alignment(lp, np.array([1, 2], np.int32))
    for pad in (0, -1, 7):  # blank, -1, no class: past l_valid, never read
        out = _traced_fn(lp, np.array([1, 2, pad], np.int32), 4, 2)
        assert float(out.log_prob) == pytest.approx(float(ref.log_prob))
        assert out.tokens.tolist() == ref.tokens.tolist()


def test_array_and_non_integer_lengths_raise_even_under_jit():
    lp = np.zeros((4, 3), np.float32)
    y = np.array([1], np.int32)
    with pytest.raises(ValueError, match=r"`lengths` entry t_valid must be an integer scalar"):
        jax.jit(lambda a: ctc_forced_alignment(lp, y, lengths=(a, 1)))(np.array([2, 3]))
    with pytest.raises(ValueError, match=r"`lengths` entry l_valid must be an integer scalar"):
        jax.jit(lambda a: ctc_forced_alignment(lp, y, lengths=(4, a)))(np.array([[1]]))
    with pytest.raises(ValueError, match=r"`lengths` entry t_valid must be an integer scalar"):
        ctc_forced_alignment(lp, y, lengths=(1.5, 1))
    with pytest.raises(ValueError, match=r"`lengths` entry l_valid must be an integer scalar"):
        ctc_forced_alignment(lp, y, lengths=(4, True))
    with pytest.raises(ValueError, match=r"`lengths` entry t_valid must be an integer scalar"):
        ctc_forced_alignment(lp, y, lengths=(None, 1))


def test_none_complex_and_static_ints_raise():
    lp = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"`log_probs`.*None"):
        ctc_forced_alignment(None, np.array([1]))
    with pytest.raises(ValueError, match=r"`labels`.*None"):
        ctc_forced_alignment(lp, None)
    with pytest.raises(ValueError, match=r"`log_probs` must be real"):
        ctc_forced_alignment(lp.astype(np.complex64), np.array([1]))
    with pytest.raises(ValueError, match=r"`labels` must hold integers"):
        ctc_forced_alignment(lp, np.array([True]))
    for blank in (1.0, True, np.array(0)):
        with pytest.raises(ValueError, match=r"`blank_id` must be a Python int"):
            ctc_forced_alignment(lp, np.array([1]), blank_id=blank)


def test_nan_in_a_valid_frame_propagates_padding_never_matters(rng):
    lp = _log_probs(rng, 5, 3)
    y = np.array([1, 2], np.int32)
    bad = lp.copy()
    bad[1, 0] = np.nan
    _assert_policy_nan(ctc_forced_alignment(bad, y))
    grad = jax.grad(lambda x: ctc_forced_alignment(x, y).log_prob)(bad)
    assert np.any(np.isnan(np.asarray(grad)))
    # Garbage past t_valid: the same result and a zero, finite gradient there.
    ref = ctc_forced_alignment(lp[:3], y)
    for value in (np.nan, np.inf, -np.inf, 1e30):
        padded = lp.copy()
        padded[3:] = value
        out = ctc_forced_alignment(padded, y, lengths=(3, 2))
        assert float(out.log_prob) == pytest.approx(float(ref.log_prob))
        assert out.tokens.tolist()[:3] == ref.tokens.tolist()
        g = np.asarray(
            jax.grad(lambda x: ctc_forced_alignment(x, y, lengths=(3, 2)).log_prob)(padded)
        )
        assert np.all(np.isfinite(g)) and np.all(g[3:] == 0.0)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_is_computed_in_float32(rng, dtype):
    lp = _log_probs(rng, 6, 4)
    y = np.array([1, 3, 3], np.int32)
    low = jnp.asarray(lp).astype(dtype)
    out = ctc_forced_alignment(low, y)
    ref = ctc_forced_alignment(low.astype(jnp.float32), y)
    assert out.log_prob.dtype == dtype and out.frame_log_probs.dtype == dtype
    assert out.tokens.tolist() == ref.tokens.tolist()
    np.testing.assert_allclose(float(out.log_prob), float(ref.log_prob), rtol=1e-2)


def test_output_is_forced_alignment_output():
    from alignment._src.ctc import ForcedAlignmentOutput

    out = ctc_forced_alignment(np.zeros((3, 3), np.float32), np.array([1], np.int32))
    assert isinstance(out, ForcedAlignmentOutput)
    assert all(field is not None for field in out)
