"""Every `docs/page.md#anchor` cited in the code and every link between the docs resolves to a page
and a heading that exist (docs/contributing.md#citing-the-docs-in-code)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# docs/page.md#anchor in code and prose; (page.md#anchor) and (page.md) links inside docs/
CITED = re.compile(r"docs/([a-z0-9_-]+\.md)(?:#([a-z0-9_-]+))?")
LINKED = re.compile(r"\]\(([a-z0-9_-]+\.md)(?:#([a-z0-9_-]+))?\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(slug(m.group(1)))
    return found


def citations() -> list[tuple[str, str, str | None]]:
    """(where, page, anchor) of every citation in the code, the README and the docs."""
    found = []
    sources = [*ROOT.glob("dopt/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/**/*.py")]
    sources.remove(Path(__file__).resolve())  # its own examples
    sources += [ROOT / "README.md", ROOT / "scen.yaml.example", *DOCS.glob("*.md")]
    for path in sources:
        text = path.read_text()
        where = str(path.relative_to(ROOT))
        found += [(where, m.group(1), m.group(2)) for m in CITED.finditer(text)]
        if path.parent == DOCS:
            found += [(where, m.group(1), m.group(2)) for m in LINKED.finditer(text)]
    return found


def test_the_slug_is_githubs():
    assert slug("Resuming a run") == "resuming-a-run"
    assert slug("`dopt init`") == "dopt-init"
    assert slug("Determinism and threads") == "determinism-and-threads"


def test_every_cited_page_and_anchor_exists():
    known = {page.name: anchors(page) for page in DOCS.glob("*.md")}
    broken = [
        f"{where}: docs/{page}" + (f"#{anchor}" if anchor else "")
        for where, page, anchor in citations()
        if page not in known or (anchor and anchor not in known[page])
    ]
    assert not broken, "unresolved doc citations:\n" + "\n".join(sorted(set(broken)))
