"""The docs name real tests and real commands."""

import re

from helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_test_the_docs_name_exists():
    named = {m for doc in DOCS for m in re.findall(r"tests/(\w+\.py)::(\w+)", doc.read_text())}
    assert named, "the docs name no test at all: the pattern is wrong"
    missing = [
        f"{file}::{name}" for file, name in sorted(named) if f"def {name}(" not in (REPO / "tests" / file).read_text()
    ]
    assert not missing, f"docs name tests that do not exist: {missing}"


def test_the_readme_fits_a_newcomers_screenful_budget():
    assert len((REPO / "README.md").read_text().splitlines()) <= 120


def test_no_doc_names_a_removed_module_command():
    stale = [
        (doc.name, m)
        for doc in DOCS
        for m in re.findall(
            r"python -m stages\.(?:grade|predict|export|render_plots|params)\b|stages/(?:cli|files|glyphs|params|architectures|layers)\.py",
            doc.read_text(),
        )
    ]
    assert not stale, f"use `notmnist <tool>` instead: {stale}"


def test_the_experiments_page_shows_the_bench_presets_verbatim():
    import importlib.util

    spec = importlib.util.spec_from_file_location("presets", REPO / "bench/presets.py")
    presets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(presets)
    page = (REPO / "docs/experiments.md").read_text()
    for name in presets.PRESETS:
        assert presets.command_line(name) in page, name
