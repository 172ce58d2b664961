"""
The documentation's relative links lead somewhere: every ``[text](path)`` and
``[text](path#anchor)`` in the README, ``docs/`` and ``benchmarks/README.md``
names a file of the repository and, with an anchor, a heading of that file
(GitHub's anchors: lower case, punctuation dropped, spaces to hyphens); and
they, like the package's help texts, speak to users: no issue numbers.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import REPO_ROOT

DOCUMENTS = sorted([REPO_ROOT / "README.md", REPO_ROOT / "benchmarks" / "README.md", *REPO_ROOT.glob("docs/*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The document without its fenced code blocks, whose brackets are not links."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", prose(path), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path)) if not re.match(r"^[a-z]+:", target)]


def test_the_documents_are_found():
    names = {path.relative_to(REPO_ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/failure-behaviour.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_names_a_file_and_a_heading_of_it(document):
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.relative_to(REPO_ROOT)}")
    assert not broken, f"{document.relative_to(REPO_ROOT)}: " + "; ".join(broken)


def test_every_reference_page_is_linked_from_the_readme():
    linked = {(REPO_ROOT / target.partition("#")[0]).resolve() for target in relative_links(REPO_ROOT / "README.md")}
    orphans = [path.name for path in REPO_ROOT.glob("docs/*.md") if path.resolve() not in linked]
    assert not orphans, f"docs/ pages the README does not link to: {orphans}"


# "issue #3", "issue 12", "issues 12 and 13", "issue-6 target", "the issue's report": the tracker, not the user's concern.
ISSUE_REFERENCE = re.compile(r"\bissues?\s*[-#]?\s*#?\d+|\bthe issue's\b", re.IGNORECASE)


def issue_references(text: str) -> list[str]:
    return [match.group(0) for match in ISSUE_REFERENCE.finditer(text)]


def test_the_issue_pattern_finds_the_ways_docs_have_named_issues():
    text = "as issue #3 asks; issue 12, point 3; the issue-6 target; Issues 12 and 13; see the issue's report"
    assert issue_references(text) == ["issue #3", "issue 12", "issue-6", "Issues 12", "the issue's"]
    assert issue_references("an issuer's certificate; 6 issues were fixed; a known issue") == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_the_documents_name_no_issue_of_the_tracker(document):
    lines = [f"{number}: {line.strip()}" for number, line in enumerate(document.read_text().splitlines(), 1)
             if issue_references(line)]  # fmt: skip
    assert not lines, f"{document.relative_to(REPO_ROOT)} speaks of issues, not to users:\n" + "\n".join(lines)


def test_no_help_text_or_message_of_the_package_names_an_issue():
    found = []
    for path in sorted((REPO_ROOT / "wslocust").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and issue_references(node.value):
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {issue_references(node.value)}")
    assert not found, "\n".join(found)
