"""dvc.yaml's code deps are exactly the project modules each stage's command imports."""

import ast
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO

PACKAGES = ("notmnist", "stages")


def module_file(name, root=REPO):
    """The project file of a dotted module name, or None when it is not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    path = root / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path, root=REPO):
    """Dotted names of every module `path` imports, at the top or inside functions (lazy imports);
    `from a import b` counts a.b when b is a module, and a otherwise."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if module_file(f"{node.module}.{alias.name}", root)
            )
    return names


def project_imports(entry, root=REPO):
    """Every project file reached from the module `entry`, transitively, with the packages'
    __init__.py files that importing them runs."""
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            path = module_file(".".join(parts[:i]), root)
            if path and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path, root))
    return {path.relative_to(root).as_posix() for path in seen}


def stage_entry(cmd):
    """`python -m stages.train ...` -> 'stages.train'."""
    words = cmd.split()
    if words[:2] != ["python", "-m"]:
        raise AssertionError(f"stage command {cmd!r} should start with 'python -m <module>'")
    return words[2]


def code_deps(stage):
    return {dep for dep in stage.get("deps", []) if dep.endswith(".py")}


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_deps_are_exactly_the_modules_its_command_imports(name):
    stage = STAGES[name]
    imported = project_imports(stage_entry(stage["cmd"]))
    listed = code_deps(stage)
    assert not imported - listed, f"dvc.yaml stage {name!r} misses deps: {sorted(imported - listed)}"
    assert not listed - imported, f"dvc.yaml stage {name!r} lists deps it does not import: {sorted(listed - imported)}"


def test_the_check_catches_a_missing_lazy_import(tmp_path):
    """The derivation sees imports inside functions, so a removed dep is caught."""
    (tmp_path / "notmnist").mkdir()
    (tmp_path / "stages").mkdir()
    (tmp_path / "notmnist/__init__.py").write_text("")
    (tmp_path / "notmnist/helper.py").write_text("X = 1\n")
    (tmp_path / "notmnist/lazy.py").write_text("def f():\n    from notmnist import helper\n    return helper.X\n")
    (tmp_path / "stages/__init__.py").write_text("")
    (tmp_path / "stages/run.py").write_text("import sys\nfrom notmnist.lazy import f\n")
    found = project_imports("stages.run", tmp_path)
    assert found == {
        "stages/__init__.py",
        "stages/run.py",
        "notmnist/__init__.py",
        "notmnist/lazy.py",
        "notmnist/helper.py",
    }


def test_no_stage_depends_on_a_tool_and_the_core_never_imports_one():
    """Editing the `notmnist` command reruns nothing, and notmnist/core stands without notmnist/tools."""
    for name, stage in STAGES.items():
        assert not [dep for dep in code_deps(stage) if dep.startswith("notmnist/tools/")], name
    for path in sorted((REPO / "notmnist/core").glob("*.py")):
        assert not [m for m in imported_modules(path) if m.startswith("notmnist.tools")], path


if __name__ == "__main__":  # print the deps each stage should list
    for stage_name, stage in STAGES.items():
        print(stage_name, sorted(project_imports(stage_entry(stage["cmd"]))), file=sys.stdout)


def test_a_stage_in_a_copy_of_the_project_imports_that_copys_package(tmp_path):
    """`dvc exp run --queue` runs each experiment in a temporary copy: `python -m stages.x` there must
    use the copy's notmnist/, not the editable install's."""
    import shutil
    import subprocess

    shutil.copytree(REPO / "notmnist", tmp_path / "notmnist")
    result = subprocess.run(
        [sys.executable, "-c", "import notmnist; print(notmnist.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(tmp_path / "notmnist" / "__init__.py")
