"""The documentation is part of the interface: its examples run and its API reference is complete.

Every ```python block of a page under docs/ runs, the blocks of one page in order in one
namespace (as a reader pastes them); a block fenced as ```python no-run is shown, not run.
The site itself (cross-references, docstrings, notebooks) is built with warnings as errors by
`sphinx-build -W` in .ci/run.
"""

from __future__ import annotations

import pathlib
import re

import pytest

import alignment

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(
    p for p in DOCS.rglob("*.md") if not {"_build", "notebooks", "_generated"} & set(p.parts)
)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page):
    namespace: dict = {}
    for i, code in enumerate(_python_blocks(page.read_text())):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)


def test_api_reference_lists_every_public_name():
    text = (DOCS / "api.md").read_text()
    listed = set(re.findall(r"^   (\w+)$", text, flags=re.M))  # autosummary entries
    listed |= set(re.findall(r"^\.\. data:: (\w+)$", text, flags=re.M))  # constants
    assert set(alignment.__all__) - listed == set(), "public names missing from docs/api.md"
    assert listed - set(alignment.__all__) == set(), "docs/api.md lists names not in __all__"


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_a_tour_on_the_site():
    """Each notebook is listed on the site, which executes it at every build (so it never goes
    stale); it is stored without outputs, imports the library and has one title."""
    import json

    index = (DOCS / "index.md").read_text()
    assert len(NOTEBOOKS) >= 5
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}\n" in index, path.name
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), path.name
        assert any("import alignment" in "".join(c["source"]) for c in code), path.name
        titles = [
            line
            for c in cells
            if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines()
            if line.startswith("# ")
        ]
        assert len(titles) == 1, (path.name, titles)
