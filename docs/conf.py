"""Sphinx configuration: the documentation site of `alignment`.

Build it with ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html`` after
``pip install -e ".[docs]"`` (see docs/getting_started.md). Warnings are errors in CI: a broken
cross-reference, a docstring that does not parse, a public name missing from the API reference
or a notebook that fails to execute fails the build.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import alignment  # noqa: E402

project = "alignment"
author = "the alignment authors"
copyright = "2026, the alignment authors"
release = version = alignment.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    "mwvae/results.md",
    "mwvae/results_full.md",
    "mwvae/results_polymnist.md",
    "mwvae/results_polymnist_25epochs.md",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# Every cross-reference must resolve (nitpicky); type names from outside the library are left
# unresolved on purpose (no intersphinx: the build must work without a network).
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(jax|jaxlib|numpy|np|jnp|typing|collections|optax|flax)\..*"),
    ("py:class", r"(Array|ArrayLike|DTypeLike|Callable|Sequence|Any|NamedTuple|PRNGKey)"),
    ("py:class", r"(int|float|bool|str|None|tuple|list|dict|object|Warning|UserWarning)"),
]

# Google-style docstrings; shapes and the "Bad input:" paragraphs stay as written.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Bad input", "notes_style"), ("Shapes", "notes_style")]
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
add_module_names = False

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks are executed at every build, so they never go stale; an error fails the build.
# Their kernels inherit this environment: like the tests, they compile with XLA's backend
# optimisations off (the tours compile far more than they compute; the HLO is the same, only
# LLVM's code generation does less).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
        " --xla_llvm_disable_expensive_passes=true"
    ).strip()
nb_execution_mode = "force"
nb_execution_timeout = 180
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

html_theme = "sphinx_book_theme"
html_title = f"alignment {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path: list[str] = []
html_extra_path: list[str] = []


def _copy_notebooks() -> None:
    """The tours live in notebooks/ (where a user opens them); the site renders a copy."""
    target = DOCS / "notebooks"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy2(notebook, target / notebook.name)


def _check_api_reference(app, env) -> None:
    """Warn (an error under -W) for a public name with no API entry."""
    documented = {
        name.removeprefix("alignment.")
        for name in env.domaindata["py"]["objects"]
        if name.startswith("alignment.") and name.count(".") == 1
    }
    missing = sorted(set(alignment.__all__) - documented)
    if missing:
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            "public names without an API entry in docs/api.md: %s", ", ".join(missing)
        )


_copy_notebooks()
# Stubs are regenerated at every build, so a name removed from docs/api.md cannot linger.
shutil.rmtree(DOCS / "_generated", ignore_errors=True)


# ``jax.typing.ArrayLike`` is evaluated into a union of eight types; show its name instead.
_ARRAY_LIKE = re.compile(
    r"~?(jax\.)?(jaxlib\.)?(_jax\.)?Array \| ~?(numpy\.)?ndarray \| ~?(numpy\.)?bool \| "
    r"~?(numpy\.)?number \| bool \| int \| float \| complex"
)


def _short_array_like(app, what, name, obj, options, signature, return_annotation):
    if signature is None:
        return None
    return _ARRAY_LIKE.sub("ArrayLike", signature), return_annotation


def setup(app):
    # MathJax ships with the site (no CDN), so formulas render offline too. sphinx-mathjax-offline
    # is set up here, not listed in ``extensions``: its setup declares no parallel safety, which
    # would turn ``sphinx -j`` (the notebooks executed two at a time in .ci/run) serial with a
    # warning; it only sets ``mathjax_path`` and copies the files when the build ends.
    importlib.import_module("sphinx-mathjax-offline").setup(app)
    app.connect("env-check-consistency", _check_api_reference)
    app.connect("autodoc-process-signature", _short_array_like)
