"""Trust, end to end in throw-away repositories on a slice of the real archive: byte-identical
reruns, run-cache reuse, SIGKILL in every stage, two concurrent `dvc repro`, a diverging training,
and results that do not depend on the machine's core count. See docs/guarantees.md."""

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

from helpers import make_project, ran_stages, real_members, run, set_params

pytestmark = pytest.mark.slow

PER_CLASS = 20
STAGES = ("extract", "preprocess", "train", "evaluate")
UNSTABLE = {"metrics/timing.json"}  # wall-clock seconds: the one output that differs run to run


def outputs(repo):
    """{path: bytes} of every result that must be reproducible: metrics, plots, DVCLive logs, model."""
    paths = [p for p in sorted((repo / "metrics").rglob("*")) if p.is_file()] + [repo / "models/model.keras"]
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


def test_forced_rerun_is_byte_identical_and_leaves_status_clean(project, reference):
    result = run(["dvc", "repro", "--force"], project)
    assert ran_stages(result.stdout) == list(STAGES)
    assert_same_outputs(project, reference)
    assert changed_stages(project) == []


def test_exp_run_with_seen_params_restores_train_from_the_run_cache(project, reference):
    baseline = yaml.safe_load((project / "params.yaml").read_text())["model"]["dropout"]
    assert baseline != 0.3
    assert ran_stages(run(["dvc", "exp", "run", "-S", "model.dropout=0.3"], project).stdout) == ["train", "evaluate"]
    again = run(["dvc", "exp", "run", "-S", f"model.dropout={baseline}"], project)
    assert "Stage 'train' is cached - skipping run, checking out outputs" in again.stdout
    assert "Stage 'evaluate' is cached - skipping run" in again.stdout
    assert ran_stages(again.stdout) == []
    assert_same_outputs(project, reference)
    assert changed_stages(project) == []


def test_threads_are_pinned_so_one_core_gives_the_same_bytes(project, reference):
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert "threads" in stages["train"]["params"] and "threads" in stages["evaluate"]["params"]
    if not shutil.which("taskset"):
        pytest.skip("taskset is not installed")
    result = run(["taskset", "-c", "0", "dvc", "repro", "--force", "--single-item", "train", "evaluate"], project)
    assert ran_stages(result.stdout) == ["train", "evaluate"]
    assert_same_outputs(project, reference)


class Repro:
    """`dvc repro` in its own process group, its output collected line by line as it comes."""

    def __init__(self, repo, *args):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(["dvc", "repro", *args], cwd=repo, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
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


@pytest.mark.parametrize("stage, delay", [("extract", 0.0), ("preprocess", 0.0), ("train", 2.0), ("evaluate", 1.0)])
def test_sigkill_in_a_stage_leaves_nothing_valid_and_the_next_repro_recovers(crash_project, reference, stage, delay):
    first_run = not (crash_project / "dvc.lock").exists()
    repro = Repro(crash_project, *([] if first_run else ["--force"]))
    repro.wait_for_stage(stage)
    time.sleep(delay)
    repro.kill()
    later = STAGES[STAGES.index(stage) + 1:]
    assert not set(later) & set(ran_stages(repro.output)), "killed too late: a later stage had started"
    assert stage in changed_stages(crash_project), "DVC records the killed stage's outputs as valid"

    resumed = run(["dvc", "repro"], crash_project).stdout
    assert stage in ran_stages(resumed) or f"Stage '{stage}' is cached - skipping run" in resumed
    assert_same_outputs(crash_project, reference)
    assert changed_stages(crash_project) == []


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


def test_diverging_training_names_the_epoch_and_saves_no_model(project):
    # params cap learning_rate at 10; with an L2 penalty of 1 each SGD step multiplies the kernels by
    # about 1 - 2 * 10 * 1 = -19, so they overflow float32 within a few dozen steps
    set_params(project, {"model": {"l2": 1.0}, "train": {"optimizer": "sgd", "learning_rate": 10.0,
                                                         "schedule": "constant", "epochs": 3, "batch_size": 8}})
    try:
        result = run(["dvc", "repro"], project, check=False)
        message = result.stdout + result.stderr
        assert result.returncode != 0
        assert "training diverged in epoch " in message and "Lower train.learning_rate" in message, message
        assert "Traceback" not in message
        assert not (project / "models/model.keras").exists()
        assert "train" in changed_stages(project)
    finally:
        # back to the baseline commit: metrics/timing.json differs on every run, so take its lock too
        run(["git", "checkout", "--", "params.yaml", "metrics", "dvc.lock"], project)
        run(["dvc", "checkout", "--force"], project)
    assert changed_stages(project) == []
