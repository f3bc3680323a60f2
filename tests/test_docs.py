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


def test_every_documented_experiment_line_is_a_valid_experiment():
    """Each `dvc exp run -S key=value` in README (the presets among them) passes the schema (docs/ hold history)."""
    import yaml

    from notmnist.core import config

    readme = (REPO / "README.md").read_text().splitlines()
    lines = [line for line in readme if "dvc exp run" in line and "$ dvc" not in line]  # "$ dvc ...": a refusal
    checked = 0
    for line in lines:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        for key, value in re.findall(r"-S '?([a-z_.]+)=([^'\s`]+)", line):
            if "," in value and not value.startswith("["):  # a sweep: its first value
                value = value.split(",")[0]
            *sections, name = key.split(".")
            node = raw
            for section in sections:
                node = node[int(section)] if isinstance(node, list) else node[section]
            node[name] = yaml.safe_load(value)
            checked += 1
        config.validate(raw)
    assert checked >= 5, lines


def test_every_yaml_example_in_the_parameters_doc_is_a_network_the_check_accepts():
    """The custom networks docs/parameters.md shows (the practical's CNN, LeNet-5) pass the check stage's check."""
    import yaml

    from notmnist.core import config
    from notmnist.core.models import network_errors

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs/parameters.md").read_text(), re.S)
    for block in blocks:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["model"].update(yaml.safe_load(block)["model"])
        assert not network_errors(config.validate(raw)), block
    assert len(blocks) >= 2
