"""Every Python example in the README and docs/ runs as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _examples() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        for i, match in enumerate(BLOCK.finditer(page.read_text())):
            found.append((page.relative_to(ROOT).as_posix(), i, match.group(1)))
    return found


EXAMPLES = _examples()


def test_every_family_page_has_an_example():
    pages = {p for p, _, _ in EXAMPLES}
    for page in ["README.md", "docs/absolute.md", "docs/conditional.md", "docs/relative.md", "docs/rope.md",
                 "docs/scaling.md"]:
        assert page in pages, f"{page} has no ```python example"


@pytest.mark.parametrize("page,index,code", EXAMPLES, ids=[f"{p}#{i}" for p, i, _ in EXAMPLES])
def test_example_runs(page, index, code):
    torch.manual_seed(0)
    exec(compile(code, f"{page}#{index}", "exec"), {"__name__": "__doc_example__"})
