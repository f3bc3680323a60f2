"""Trust, end to end in throw-away repositories on a slice of the real archive: byte-identical
reruns, run-cache reuse, SIGKILL in every stage, two concurrent `dvc repro` or `dvc exp run`, a bad
parameter that costs nothing, a diverging training, and results that do not depend on the machine's
core count. The fast tests at the end: commands that refuse to write over their inputs or into
places they cannot write, and model files that cannot make us parse anything large.
See docs/guarantees.md."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, UNDO, glyph_members, make_project, ran_stages, real_members, run, set_params, write_tar
from notmnist.core import contract, records
from notmnist.core.runtime import PipelineError

slow = pytest.mark.slow

PER_CLASS = 20
STAGES = ("check", "extract", "preprocess", "train", "package", "evaluate")
# docs/guarantees.md, "Undo": back to the last commit after any failure
UNSTABLE = {"metrics/timing.json"}  # wall-clock seconds: the one output that differs run to run


def models(repo):
    """The trained network and the model handed over (train's and package's outputs)."""
    return sorted((repo / "models").glob("*.keras"))


def outputs(repo):
    """{path: bytes} of every result that must be reproducible: metrics, plots, DVCLive logs, models."""
    paths = [p for p in sorted((repo / "metrics").rglob("*")) if p.is_file()] + models(repo)
    return {str(p.relative_to(repo)): p.read_bytes() for p in paths if str(p.relative_to(repo)) not in UNSTABLE}


def assert_same_outputs(repo, reference):
    current = outputs(repo)
    assert sorted(current) == sorted(reference)
    differ = [path for path in reference if current[path] != reference[path]]
    assert not differ, f"not byte-identical: {differ}"


def changed_stages(repo):
    return sorted(json.loads(run(["dvc", "status", "--json"], repo).stdout))


def commit(repo, message):
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], repo)


@pytest.fixture(scope="module")
def members(real_archive):
    return real_members(per_class=PER_CLASS, archive=real_archive)


@pytest.fixture(scope="module")
def project(tmp_path_factory, members):
    repo = make_project(tmp_path_factory.mktemp("trust"), members)
    assert ran_stages(run(["dvc", "repro"], repo).stdout) == list(STAGES)
    commit(repo, "baseline")
    return repo


@pytest.fixture(scope="module")
def reference(project):
    return outputs(project)


@slow
def test_forced_rerun_is_byte_identical_and_leaves_status_clean(project, reference):
    result = run(["dvc", "repro", "--force"], project)
    assert ran_stages(result.stdout) == list(STAGES)
    assert_same_outputs(project, reference)
    assert changed_stages(project) == []


@slow
def test_exp_run_with_seen_params_restores_train_from_the_run_cache(project, reference):
    baseline = yaml.safe_load((project / "params.yaml").read_text())["model"]["dropout"]
    assert baseline != 0.3
    first = ran_stages(run(["dvc", "exp", "run", "-S", "model.dropout=0.3"], project).stdout)
    assert first == ["check", "train", "package", "evaluate"]
    again = run(["dvc", "exp", "run", "-S", f"model.dropout={baseline}"], project)
    assert "Stage 'train' is cached - skipping run, checking out outputs" in again.stdout
    assert "Stage 'package' is cached - skipping run, checking out outputs" in again.stdout
    assert "Stage 'evaluate' is cached - skipping run" in again.stdout
    assert ran_stages(again.stdout) == []
    assert_same_outputs(project, reference)
    assert changed_stages(project) == []


@slow
def test_threads_are_pinned_so_one_core_gives_the_same_bytes(project, reference):
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert "threads" in stages["train"]["params"] and "threads" in stages["evaluate"]["params"]
    if not shutil.which("taskset"):
        pytest.skip("taskset is not installed")
    result = run(
        ["taskset", "-c", "0", "dvc", "repro", "--force", "--single-item", "train", "package", "evaluate"], project
    )
    assert ran_stages(result.stdout) == ["train", "package", "evaluate"]
    assert_same_outputs(project, reference)


class Repro:
    """`dvc repro` (or another command) in its own process group, its output collected line by line as it comes."""

    def __init__(self, repo, *args, command=("dvc", "repro")):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [*command, *args],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self):
        return "".join(self.lines)

    def stage_process(self, stage):
        """True once the stage's own command (python -m stages.<stage>) runs in this process group."""
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if f"stages.{stage}".encode() in cmdline and os.getpgid(int(pid)) == self.process.pid:
                    return True
            except (OSError, ProcessLookupError):
                continue
        return False

    def wait_for_stage(self, stage, timeout=120):
        deadline = time.monotonic() + timeout
        while not (f"Running stage '{stage}'" in self.output and self.stage_process(stage)):
            assert self.process.poll() is None, f"dvc repro ended before stage {stage} ran:\n{self.output}"
            assert time.monotonic() < deadline, f"stage {stage} did not start:\n{self.output}"
            time.sleep(0.02)

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.reader.join(timeout=10)

    def wait(self, timeout=300):
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return self.process.returncode


@pytest.fixture(scope="module")
def crash_project(tmp_path_factory, members):
    """A second project with no run-cache yet: the first kill happens in its very first repro."""
    return make_project(tmp_path_factory.mktemp("crash"), members)


@slow
@pytest.mark.parametrize(
    "stage, delay", [("extract", 0.0), ("preprocess", 0.0), ("train", 2.0), ("package", 1.0), ("evaluate", 1.0)]
)
def test_sigkill_in_a_stage_leaves_nothing_valid_and_the_next_repro_recovers(crash_project, reference, stage, delay):
    first_run = not (crash_project / "dvc.lock").exists()
    repro = Repro(crash_project, *([] if first_run else ["--force"]))
    repro.wait_for_stage(stage)
    time.sleep(delay)
    repro.kill()
    later = STAGES[STAGES.index(stage) + 1 :]
    assert not set(later) & set(ran_stages(repro.output)), "killed too late: a later stage had started"
    assert stage in changed_stages(crash_project), "DVC records the killed stage's outputs as valid"

    resumed = run(["dvc", "repro"], crash_project).stdout
    assert stage in ran_stages(resumed) or f"Stage '{stage}' is cached - skipping run" in resumed
    assert_same_outputs(crash_project, reference)
    assert changed_stages(crash_project) == []


@slow
def test_a_second_repro_fails_at_once_and_the_first_finishes_unharmed(project, reference):
    first = Repro(project, "--force")
    first.wait_for_stage("train")
    started = time.monotonic()
    second = run(["dvc", "repro"], project, check=False, timeout=120)
    elapsed = time.monotonic() - started
    assert second.returncode != 0
    message = second.stdout + second.stderr
    assert "Unable to acquire lock" in message or "is busy" in message, message
    assert elapsed < 30
    assert first.process.poll() is None, "the second repro should not wait for the first"
    assert first.wait() == 0, first.output
    assert_same_outputs(project, reference)
    assert changed_stages(project) == []


@slow
def test_diverging_training_names_the_epoch_and_saves_no_model(project):
    # params cap learning_rate at 10; with an L2 penalty of 1 each SGD step multiplies the kernels by
    # about 1 - 2 * 10 * 1 = -19, so they overflow float32 within a few dozen steps
    set_params(
        project,
        {
            "model": {"l2": 1.0},
            "train": {"optimizer": "sgd", "learning_rate": 10.0, "schedule": "constant", "epochs": 3, "batch_size": 8},
        },
    )
    try:
        result = run(["dvc", "repro"], project, check=False)
        message = result.stdout + result.stderr
        assert result.returncode != 0
        assert "training diverged in epoch " in message and "Lower train.learning_rate" in message, message
        assert "Traceback" not in message
        assert not (project / "models/trained.keras").exists()
        assert "train" in changed_stages(project)
    finally:
        run(["bash", "-c", UNDO], project)  # back to the baseline commit
    assert changed_stages(project) == []


# --- a failed run costs nothing; one experiment at a time ---------------------------------------


def workspace(repo):
    """{path: bytes} of everything a run could lose: models, metrics (timing too), plots, params."""
    paths = [p for p in sorted((repo / "metrics").rglob("*")) if p.is_file()] + models(repo)
    return {str(p.relative_to(repo)): p.read_bytes() for p in [*paths, repo / "params.yaml"]}


@slow
def test_a_parameter_change_reruns_check_and_then_only_the_stages_that_read_it(project):
    """data/params.ok has constant bytes, so depending on it adds no reruns."""
    result = run(["dvc", "exp", "run", "-S", "evaluate.batch_size=64"], project)
    assert ran_stages(result.stdout) == ["check", "evaluate"]
    run(["bash", "-c", UNDO], project)
    assert changed_stages(project) == []


@slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=0", "train.batch_size: 0 is out of range"),
        ("model.dropout=1.5", "model.dropout: 1.5 is out of range"),
    ],
)
def test_a_bad_exp_run_value_changes_no_output_and_the_undo_restores_the_last_good_state(
    project, reference, override, message
):
    before = workspace(project)
    result = run(["dvc", "exp", "run", "-S", override], project, check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr
    assert ran_stages(result.stdout) == ["check"]
    after = workspace(project)
    assert {path for path in before if after.get(path) != before[path]} == {"params.yaml"}  # DVC's -S edit only
    run(["bash", "-c", UNDO], project)
    assert workspace(project) == before
    assert changed_stages(project) == []


@slow
def test_a_second_exp_run_is_refused_and_the_first_saves_nothing_it_would_mix(project, reference):
    # enough epochs that train is still running when the second `dvc exp run` has rewritten params.yaml
    first = Repro(project, "-S", "train.epochs=150", command=("dvc", "exp", "run"))
    first.wait_for_stage("train")
    second = run(["dvc", "exp", "run", "-S", "model.dropout=0.3"], project, check=False, timeout=120)
    assert second.returncode != 0
    assert "Unable to acquire lock" in second.stdout + second.stderr or "busy" in second.stdout + second.stderr
    assert first.process.poll() is None, "train ended before the second run rewrote params.yaml: raise its epochs"
    assert first.wait() != 0
    assert "params.yaml changed while this stage ran" in first.output and "dvc exp run --queue" in first.output
    assert "Traceback" not in first.output
    network = project / "models/trained.keras"  # train saved nothing: gone (DVC removed it) or the baseline's bytes
    assert not network.exists() or network.read_bytes() == reference["models/trained.keras"]
    run(["bash", "-c", UNDO], project)
    assert_same_outputs(project, reference)
    assert changed_stages(project) == []


# --- fast: refusals before any work -------------------------------------------------------------


def test_the_check_stage_refuses_a_bad_file_and_writes_constant_bytes_for_any_good_one(tmp_path):
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    passed = []
    for name, dropout in (("a", 0.1), ("b", 0.4), ("bad", 7.0)):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump({**settings, "model": {**settings["model"], "dropout": dropout}})
        )
        result = run(
            [sys.executable, "-m", "stages.check", str(tmp_path / f"{name}.yaml"), str(tmp_path / f"{name}.ok")],
            REPO,
            check=False,
        )
        passed.append((result.returncode, (tmp_path / f"{name}.ok").read_bytes() if result.returncode == 0 else None))
    assert passed[0] == passed[1] == (0, b"params.yaml passed the schema check\n")
    assert passed[2] == (2, None) and not (tmp_path / "bad.ok").exists()


def test_a_rewritten_params_file_is_caught_before_saving(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\n")
    started_with = records.fingerprint(path)
    records.refuse_changed(started_with, path)  # unchanged: no error
    path.write_text("seed: 2\n")
    with pytest.raises(PipelineError, match="changed while this stage ran.*nothing was saved.*dvc exp run --queue"):
        records.refuse_changed(started_with, path)


def test_grade_refuses_an_output_that_is_one_of_its_inputs(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"never read")
    archive = write_tar(tmp_path / "glyphs.tar.gz", glyph_members(per_class=1))
    folder = tmp_path / "glyphs"
    folder.mkdir()
    before = {path: path.read_bytes() for path in (model, archive)}
    for out, message in (
        (model, "is, holds or lies inside the input"),
        (archive, "is, holds or lies inside the input"),
        (folder / "report.json", "is, holds or lies inside the input"),
    ):
        source = folder if out.parent == folder else archive
        result = run(
            [sys.executable, "-m", "notmnist", "grade", str(model), str(source), "--out", str(out)], REPO, check=False
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert {path: path.read_bytes() for path in (model, archive)} == before and not any(folder.iterdir())


def test_random_bytes_named_model_keras_are_not_a_zip_not_file_not_found(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(PipelineError, match=r"not a Keras model file \(not a zip archive\)"):
        contract.check_model_file(path)


def test_a_model_whose_config_is_oversized_is_refused_before_keras_parses_it(tmp_path):
    import zipfile

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:  # 17 MiB of config, a few KB on disk
        archive.writestr("config.json", b"{" + b" " * (17 << 20) + b"}")
        archive.writestr("metadata.json", b"{}")
    assert path.stat().st_size < 100_000
    with pytest.raises(PipelineError, match=r"config.json is 17,825,794 bytes, over the 16,777,216"):
        contract.check_model_file(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.json", b"{}")
    with pytest.raises(PipelineError, match="a zip without config.json"):
        contract.check_model_file(path)
