"""`notmnist restore` loses nothing: in a throw-away project after one `dvc repro`, a user's edit of params.yaml, a new
file in an output folder, a replaced raw archive and a hand-edited model are copied to restore-backup/ before the
workspace goes back to HEAD, while content that DVC's cache holds is not copied; --dry-run changes nothing; it works
from a subfolder and refuses outside a repository."""

import pytest

from helpers import UNDO, glyph_members, make_project, run, write_tar

slow = pytest.mark.slow


def files(repo, skip=(".git", ".dvc", "restore-backup")):
    """{relative path: bytes} of every file in the workspace, but Git's, DVC's and the backups."""
    paths = [p for p in sorted(repo.rglob("*")) if p.is_file() and p.relative_to(repo).parts[0] not in skip]
    return {str(p.relative_to(repo)): p.read_bytes() for p in paths}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = make_project(tmp_path_factory.mktemp("restore"), glyph_members(per_class=30))
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    return repo


@pytest.fixture(scope="module")
def committed(project):
    return files(project)


def spoil(repo, committed):
    """The user's own changes; returns {path: bytes} of those only the workspace holds. Also a model
    overwritten with bytes DVC's cache holds and a deleted output: both come back, neither is copied."""
    write_tar(repo / "data/raw/notMNIST_small.tar.gz", glyph_members(per_class=30, seed=7))
    own = {
        "params.yaml": committed["params.yaml"] + b"# my note\n",
        "metrics/train/notes.txt": b"my notes on this run\n",
        "models/model.keras": committed["models/model.keras"] + b"edited by hand",
        "data/raw/notMNIST_small.tar.gz": (repo / "data/raw/notMNIST_small.tar.gz").read_bytes(),
    }
    for path, data in own.items():
        (repo / path).write_bytes(data)
    (repo / "models/trained.keras").write_bytes(committed["data/params.ok"])  # content in DVC's cache
    (repo / "data/interim/extract_report.json").unlink(missing_ok=True)
    return own


def backups(repo):
    return sorted((repo / "restore-backup").glob("*"))


@slow
def test_dry_run_lists_every_change_and_changes_nothing(project, committed):
    own = spoil(project, committed)
    before, folders = files(project), backups(project)
    result = run(["notmnist", "restore", "--dry-run"], project)
    lines = result.stdout.splitlines()
    for path in own:
        assert any(line.endswith(f" {path}  (yours: kept)") for line in lines), (path, result.stdout)
    assert "  checkout models/trained.keras" in lines and "  checkout data/interim/extract_report.json" in lines
    assert "  remove metrics/train/notes.txt  (yours: kept)" in lines
    assert lines[-1].startswith("restore --dry-run: nothing changed; it would keep 4 of yours in ")
    assert files(project) == before and backups(project) == folders


@slow
def test_restore_from_a_subfolder_keeps_the_users_own_bytes_and_returns_to_head(project, committed):
    own = spoil(project, committed)
    folders = backups(project)
    result = run(["bash", "-c", UNDO], project / "data/raw")  # the README's command, run from a subfolder
    new = [folder for folder in backups(project) if folder not in folders]
    assert len(new) == 1 and result.stdout.splitlines()[-1].endswith(f"yours kept in {new[0]}"), result.stdout
    assert files(new[0], skip=()) == own  # every byte that was only the user's, and nothing DVC's cache holds
    assert files(project) == committed
    assert run(["dvc", "status", "--json"], project).stdout.strip() == "{}"
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    again = run(["notmnist", "restore"], project)  # nothing differs now: no lines, no backup
    assert again.stdout == f"restore: {project} is back at HEAD\n" and backups(project) == [*folders, *new]


def test_outside_a_repository_restore_is_one_error_line_and_exit_2(tmp_path):
    result = run(["notmnist", "restore"], tmp_path, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    assert "not a git repository" in result.stderr and "run notmnist restore inside" in result.stderr
