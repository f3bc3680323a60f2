"""Sharing between machines (docs/sharing.md), end to end in throw-away repositories: clones of one bare Git
repository stand for machines, with the project's committed default DVC remote (~/notmnist-dvc-remote, under a
HOME made for this module).
A second clone pulls instead of training; an experiment pushed by one is pulled, applied and fetched by another;
a third reuses a pushed run from the run-cache; the same through an SSH remote on a sshd this module starts on
127.0.0.1; the failures (missing, unreachable and read-only remote, no Git remote, an interrupted pull); and the
model registry entry fetched with `dvc artifacts get` with Studio kept out of it."""

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from configobj import ConfigObj

from helpers import REPO, make_project, ran_stages, real_members, set_params

pytestmark = pytest.mark.slow

MODEL = "models/model.keras"
TEST = "data/processed/test.npz"
ARTIFACT = "notmnist-model"
GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]
INTERRUPTED = 252  # DVC's exit status after Ctrl-C / SIGINT ("interrupted by the user")
NOTMNIST = [sys.executable, "-m", "notmnist"]


def sh(args, cwd, check=True, env=None, **kwargs):
    """helpers.run with extra environment variables: this venv's tools first on PATH; returns the CompletedProcess
    with stdout and stderr together in .out."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    result.out = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.out[-4000:]}")
    return result


def commit(repo, message):
    sh(["git", "add", "-A"], repo)
    sh(["git", *GIT_ID, "commit", "-qm", message], repo)


def committed_remote():
    """(name, url as written) of the default remote in the project's own .dvc/config."""
    config = ConfigObj(str(REPO / ".dvc/config"))
    name = config["core"]["remote"]
    return name, config[f'remote "{name}"']["url"]


def use_committed_remote(project):
    """Give a make_project copy the project's committed default remote, written exactly as in .dvc/config."""
    name, url = committed_remote()
    config = ConfigObj(str(project / ".dvc/config"))
    config["core"]["remote"] = name
    config[f'remote "{name}"'] = {"url": url}
    config.write()


def clone(shared, name, branch="main"):
    """A new machine: a clone of the bare origin, reaching the same default remote."""
    dest = shared.root / name
    sh(["git", "clone", "-q", "-b", branch, shared.origin, dest], shared.root)
    return dest


def restore(repo):
    """Back to the last commit after an experiment left its results in the workspace."""
    sh(["git", "checkout", "-q", "HEAD", "--", "."], repo)
    sh(["dvc", "checkout", "-q", "--force"], repo)


def exp_ref(repo, remote, name):
    """The commit that `remote`'s experiment ref `name` points to ('' when there is none)."""
    lines = sh(["git", "ls-remote", remote, f"refs/exps/*/{name}"], repo).stdout.split()
    return lines[0] if lines else ""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree(path):
    """{relative file name: size} of everything under path: what a failed command must leave as it was."""
    files = (p for p in sorted(Path(path).rglob("*")) if p.is_file() and ".dvc/tmp" not in p.as_posix())
    return {str(p.relative_to(path)): p.stat().st_size for p in files}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, real_archive):
    """Machine A: the tiny project with the committed default remote, trained, committed, pushed (data, outputs,
    run-cache) with its Git history in a bare origin; then two experiments pushed with `dvc exp push`. HOME is a
    folder of this module's for every command, so the default remote ~/notmnist-dvc-remote lands there."""
    root = tmp_path_factory.mktemp("machines")
    home = root / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = t\n\temail = t@t\n")  # DVC commits experiments
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        yield machine_a(root, home, real_archive)


def machine_a(root, home, real_archive):
    origin = root / "origin.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", origin], root)
    a = make_project(root / "a", real_members(per_class=20, archive=real_archive))
    use_committed_remote(a)
    sh(["git", "branch", "-M", "main"], a)
    sh(["git", "remote", "add", "origin", origin], a)
    first = sh(["dvc", "repro"], a)
    assert ran_stages(first.stdout) == ["check", "extract", "preprocess", "train", "package", "evaluate"]
    commit(a, "baseline")
    pushed = sh(["dvc", "push", "--run-cache"], a)
    sh(["git", "push", "-q", "origin", "main"], a)
    models = {"baseline": (a / MODEL).read_bytes()}
    for name, override in (("drop03", "model.dropout=0.3"), ("shift0", "package.tta_shift=0")):
        sh(["dvc", "exp", "run", "-n", name, "-S", override], a)
        models[name] = (a / MODEL).read_bytes()
        restore(a)
    sh(["dvc", "push", "--run-cache"], a)  # the run records of both experiments
    sh(["dvc", "exp", "push", "origin", "drop03", "shift0"], a)
    return SimpleNamespace(
        root=root, home=home, origin=origin, a=a, remote=home / "notmnist-dvc-remote", models=models, pushed=pushed.out
    )


def test_the_committed_default_remote_is_a_folder_in_home_and_setup_creates_it():
    name, url = committed_remote()
    # Absolute once ~ is expanded: DVC resolves a relative local remote against the root of the Git tree when it
    # reads .dvc/config from a commit (dvc exp push/pull, dvc artifacts get), i.e. /notmnist-dvc-remote.
    assert url == "~/notmnist-dvc-remote"
    resolved = sh(["dvc", "config", "--project", f"remote.{name}.url"], REPO).stdout.strip()
    assert Path(resolved) == Path.home() / "notmnist-dvc-remote"
    assert 'mkdir -p "$remote_url"' in (REPO / "setup.sh").read_text()


def test_push_sends_the_raw_archive_every_stage_output_and_the_run_cache(shared):
    assert (shared.remote / "runs").is_dir() and any((shared.remote / "runs").rglob("*"))
    lock = yaml.safe_load((shared.a / "dvc.lock").read_text())
    hashes = {
        out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] not in ("metrics/timing.json", "metrics/evaluate.json")
        and not out["path"].startswith("metrics/plots/")
        or out["path"].endswith(".png")
    }
    hashes.add(yaml.safe_load((shared.a / "data/raw/notMNIST_small.tar.gz.dvc").read_text())["outs"][0]["md5"])
    missing = [h for h in hashes if not (shared.remote / "files/md5" / h[:2] / h[2:]).is_file()]
    assert not missing, f"not on the remote: {missing}"


def test_a_second_clone_pulls_and_repro_trains_nothing(shared):
    b = clone(shared, "b")
    started = time.monotonic()
    pulled = sh(["dvc", "pull"], b)
    pull_s = time.monotonic() - started
    started = time.monotonic()
    repro = sh(["dvc", "repro"], b)
    repro_s = time.monotonic() - started
    print(f"\n$ dvc pull ({pull_s:.1f} s)\n{pulled.out[-600:]}\n$ dvc repro ({repro_s:.1f} s)\n{repro.out}")
    assert ran_stages(repro.stdout) == []
    assert "Stage 'train' didn't change, skipping" in repro.stdout
    assert "Data and pipelines are up to date." in repro.stdout
    assert (b / MODEL).read_bytes() == shared.models["baseline"]
    assert sh(["git", "status", "--porcelain"], b).stdout == ""


def test_an_experiment_pushed_by_one_machine_is_pulled_applied_and_fetched_by_another(shared):
    b2 = clone(shared, "b2")
    pulled = sh(["dvc", "exp", "pull", "origin", "drop03"], b2)  # its Git refs, and its outputs from the DVC remote
    assert "Pulled experiment" in pulled.out and "drop03" in pulled.out
    shown = sh(["dvc", "exp", "show", "--json"], b2).stdout
    exps = {
        rev["name"]: rev["data"]["params"]["params.yaml"]["data"]["model"]["dropout"]
        for commit in yaml.safe_load(shown)
        for exp in (commit.get("experiments") or [])
        for rev in exp["revs"]
    }
    assert exps == {"drop03": 0.3}
    seeds = json.loads(sh([*NOTMNIST, "seeds", "--json"], b2).stdout)
    assert {"model.dropout": 0.3} in [row["configuration"] for row in seeds]
    sh(["dvc", "exp", "apply", "drop03"], b2)
    assert yaml.safe_load((b2 / "params.yaml").read_text())["model"]["dropout"] == 0.3
    sh(["dvc", "pull"], b2)  # the rest of the workspace's outputs (the data the experiment shares with main)
    repro = sh(["dvc", "repro"], b2)
    assert ran_stages(repro.stdout) == [], repro.stdout
    assert (b2 / MODEL).read_bytes() == shared.models["drop03"]
    # the tools name it as on A: its model, fetched by name as compare and report fetch it, is A's byte for byte
    sh(["dvc", "get", ".", MODEL, "--rev", "drop03", "-o", "got.keras"], b2)
    assert (b2 / "got.keras").read_bytes() == shared.models["drop03"]
    compared = json.loads(sh([*NOTMNIST, "compare", "HEAD", "drop03", "--split", TEST, "--json"], b2).stdout)
    sh([*NOTMNIST, "report", "--exp", "drop03", "--out", "r"], b2)
    counts = compared["a_right_b_wrong"], compared["a_wrong_b_right"]
    assert (
        "HEAD right and drop03 wrong {}, HEAD wrong and drop03 right {}".format(*counts)
        in (b2 / "r/report.md").read_text()
    )


def test_an_experiment_pulled_without_its_outputs_applies_and_dvc_pull_fetches_them(shared):
    """`exp pull --no-cache` takes the Git side only: `exp apply` then writes params.yaml and dvc.lock but fails
    its checkout (exit 255, "Checkout failed ... Is your cache up to date?"), and `dvc pull` completes it."""
    b3 = clone(shared, "b3")
    sh(["dvc", "exp", "pull", "--no-cache", "origin", "drop03"], b3)
    applied = sh(["dvc", "exp", "apply", "drop03"], b3, check=False)
    assert applied.returncode != 0 and "Checkout failed for following targets" in applied.out
    assert yaml.safe_load((b3 / "params.yaml").read_text())["model"]["dropout"] == 0.3
    assert not (b3 / MODEL).exists()
    pulled = sh(["dvc", "pull"], b3)
    assert "models/model.keras" in pulled.stdout
    assert ran_stages(sh(["dvc", "repro"], b3).stdout) == []
    assert (b3 / MODEL).read_bytes() == shared.models["drop03"]


def test_a_third_machine_reuses_a_pushed_run_from_the_run_cache(shared):
    c = clone(shared, "c")
    sh(["dvc", "pull", "--run-cache"], c)
    set_params(c, {"package": {"tta_shift": 0}})  # what machine A ran as experiment shift0
    repro = sh(["dvc", "repro", "--pull"], c)
    assert "Stage 'package' is cached - skipping run, checking out outputs" in repro.stdout
    assert not {"train", "package"} & set(ran_stages(repro.stdout)), repro.stdout
    assert (c / MODEL).read_bytes() == shared.models["shift0"]


def test_two_machines_pushing_an_experiment_of_the_same_name(shared):
    d = clone(shared, "d")
    sh(["dvc", "pull"], d)
    sh(["dvc", "exp", "run", "-n", "shift0", "-S", "package.tta_shift=2"], d)  # A already pushed a shift0
    theirs = exp_ref(d, "origin", "shift0")
    pushed = sh(["dvc", "exp", "push", "origin", "shift0"], d)
    # DVC refuses, says why and how to override, and still exits 0; the remote keeps A's experiment
    assert "Local experiment shift0 has diverged from remote experiment with the same name." in pushed.out
    assert "To override the remote experiment re-run with '--force'." in pushed.out
    assert "No experiments to push." in pushed.out and pushed.returncode == 0
    assert exp_ref(d, "origin", "shift0") == theirs and theirs
    forced = sh(["dvc", "exp", "push", "--force", "origin", "shift0"], d)
    assert "Pushed experiment shift0" in forced.out
    assert exp_ref(d, "origin", "shift0") == exp_ref(d, ".", "shift0") != theirs  # A's is replaced
    pulled = sh(["dvc", "exp", "pull", "origin", "shift0"], shared.a)  # A's own shift0 now diverges from origin's
    assert "has diverged from remote experiment with the same name" in pulled.out and pulled.returncode == 0


@contextmanager
def sshd(tmp, home):
    """A sshd of Debian's openssh-server on 127.0.0.1 and a free port, with its own host key and one authorized
    key, both made here, and that host key in home/.ssh/known_hosts. Stopped on exit."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(binary):
        pytest.fail("sshd not found: install Debian's openssh-server (.ci/run does)")
    (home / ".ssh").mkdir(exist_ok=True)
    for key in ("host_key", "client_key"):
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / key], tmp)
    shutil.copy(tmp / "client_key.pub", tmp / "authorized_keys")
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host_key\nAuthorizedKeysFile {tmp}/authorized_keys\n"
        f"PidFile {tmp}/sshd.pid\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
    )
    host_key = " ".join((tmp / "host_key.pub").read_text().split()[:2])
    (home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory, when run as root
    server = subprocess.Popen([binary, "-D", "-e", "-f", tmp / "sshd_config"], stderr=open(tmp / "sshd.log", "w"))
    try:
        deadline = time.monotonic() + 20
        while "Server listening" not in (tmp / "sshd.log").read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start:\n{(tmp / 'sshd.log').read_text()}")
            time.sleep(0.1)
        yield port, tmp / "client_key"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_ssh_remote_on_a_local_sshd_pushes_and_a_clone_pulls_without_training(shared, tmp_path):
    user = getpass.getuser()
    store = tmp_path / "ssh-store"
    s1, s2, s3 = (clone(shared, name) for name in ("s1", "s2", "s3"))
    sh(["dvc", "pull", "--run-cache"], s1)
    with sshd(tmp_path, shared.home) as (port, key):
        for machine in (s1, s2, s3):
            sh(["dvc", "remote", "add", "--local", "-d", "ssh", f"ssh://{user}@127.0.0.1:{port}{store}"], machine)
            sh(["dvc", "remote", "modify", "--local", "ssh", "keyfile", key], machine)
        pushed = sh(["dvc", "push", "--run-cache"], s1)
        assert (store / "files/md5").is_dir() and (store / "runs").is_dir(), pushed.out
        pulled = sh(["dvc", "pull"], s2)
        repro = sh(["dvc", "repro"], s2)
        print(f"\n$ dvc pull  # from ssh://127.0.0.1:{port}\n{pulled.out[-400:]}\n$ dvc repro\n{repro.out}")
        assert ran_stages(repro.stdout) == []
        assert (s2 / MODEL).read_bytes() == shared.models["baseline"]
    # the same remote once sshd is gone: a named error, nothing pulled, nothing changed
    unreachable = sh(["dvc", "pull"], s3, check=False)
    assert unreachable.returncode != 0
    assert "failed to connect to ssh" in unreachable.out and "Connect call failed" in unreachable.out
    assert not (s3 / MODEL).exists() and sh(["git", "status", "--porcelain"], s3).stdout == ""


def test_pull_from_a_missing_remote_fails_naming_every_missing_output_and_changes_nothing(shared):
    m = clone(shared, "m")
    name, _ = committed_remote()
    nowhere = shared.root / "nowhere"
    sh(["dvc", "remote", "modify", "--local", name, "url", nowhere], m)
    before = tree(m)
    result = sh(["dvc", "pull"], m, check=False)
    assert result.returncode == 1
    assert "failed to pull data from the cloud" in result.out and "Missing cache files" in result.out
    assert "models/model.keras" in result.out
    assert tree(m) == before and not nowhere.exists()


def read_only(directory, args):
    """args run with `directory` read-only: a read-only bind mount in a private mount namespace for root (whom
    file modes do not stop), else the write bits taken away."""
    if os.geteuid() == 0:
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
        return ["unshare", "-m", "sh", "-c", script, "sh", str(directory), *args]
    return ["sh", "-c", 'chmod -R a-w "$1" && shift && "$@"; s=$?; chmod -R u+w "$1"; exit $s', "sh", directory, *args]


def test_read_only_remote_refuses_a_push_changes_nothing_and_still_serves_pulls(shared):
    r = clone(shared, "r")
    sh(["dvc", "pull"], r)
    (r / "notes.txt").write_text("a file this machine adds\n")
    sh(["dvc", "add", "-q", "notes.txt"], r)
    before = tree(shared.remote)
    refused = sh(read_only(shared.remote, ["dvc", "push"]), r, check=False)
    assert refused.returncode != 0
    assert "Read-only file system" in refused.out, refused.out
    assert tree(shared.remote) == before
    reader = clone(shared, "r2")
    served = sh(read_only(shared.remote, ["dvc", "pull"]), reader)
    assert (reader / MODEL).read_bytes() == shared.models["baseline"], served.out


def test_exp_push_and_pull_without_a_git_remote_fail_and_change_nothing(shared):
    refs = sh(["git", "ls-remote", shared.origin], shared.a).stdout
    pushed = sh(["dvc", "exp", "push", "nowhere", "drop03"], shared.a, check=False)
    assert pushed.returncode != 0
    assert "No git repository was found at nowhere" in pushed.out
    lonely = clone(shared, "lonely")
    sh(["git", "remote", "remove", "origin"], lonely)
    pulled = sh(["dvc", "exp", "pull", "origin", "drop03"], lonely, check=False)
    assert pulled.returncode != 0
    assert "'origin' is not a valid Git remote or URL" in pulled.out
    assert sh(["git", "ls-remote", shared.origin], shared.a).stdout == refs
    assert sh(["git", "for-each-ref", "refs/exps"], lonely).stdout == ""


def ctrl_c_on():
    """A shell's background job (`pytest &`) ignores SIGINT and its children inherit that, so DVC would never see
    the Ctrl-C: give the child the default disposition (then Python turns SIGINT into KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_pull_completes_when_run_again(shared):
    """SIGINT in the middle of `dvc pull` (a branch with 3,000 small files, a few seconds' pull), then the same
    command again: it completes with every file, and the interrupted run changed no tracked file."""
    writer = clone(shared, "writer")
    sh(["git", "checkout", "-q", "-b", "bulk"], writer)
    bulk = writer / "bulk"
    bulk.mkdir()
    for i in range(3000):
        (bulk / f"{i:05d}.bin").write_bytes(os.urandom(2000))
    sh(["dvc", "add", "-q", "bulk"], writer)
    commit(writer, "bulk")
    sh(["dvc", "push"], writer)
    sh(["git", "push", "-q", "origin", "bulk"], writer)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for attempt in range(5):  # a pull that ended before the signal came is tried again on a new clone
        reader = clone(shared, f"reader{attempt}", branch="bulk")
        pull = subprocess.Popen(
            ["dvc", "pull"], cwd=reader, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=ctrl_c_on
        )
        cache = reader / ".dvc/cache/files/md5"
        deadline = time.monotonic() + 60
        while pull.poll() is None and time.monotonic() < deadline:
            if cache.is_dir() and any(path.is_file() for path in cache.rglob("*")):  # the transfer has begun
                break
            time.sleep(0.02)
        pull.send_signal(signal.SIGINT)
        output = pull.communicate(timeout=60)[0].decode()
        if pull.returncode != 0:
            break
    assert pull.returncode == INTERRUPTED, output  # a real interruption, not a pull that finished first
    assert "interrupted by the user" in output
    assert len(list((reader / "bulk").glob("*"))) < 3000  # the interrupted run checked out no complete bulk/
    assert sh(["git", "status", "--porcelain", "--untracked-files=no"], reader).stdout == ""
    again = sh(["dvc", "pull"], reader)
    assert len(list((reader / "bulk").glob("*"))) == 3000, again.out
    assert "up to date" in sh(["dvc", "status"], reader).stdout
    assert (reader / MODEL).read_bytes() == shared.models["baseline"]


# --- the model registry entry --------------------------------------------------------------------------------


def test_dvc_yaml_names_the_handed_over_model_as_an_artifact_with_its_metrics():
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    entry = dvc_yaml["artifacts"][ARTIFACT]
    assert entry["path"] == MODEL and entry["type"] == "model"
    assert entry["desc"] and entry["labels"]
    assert any(MODEL in stage.get("outs", []) for stage in dvc_yaml["stages"].values())
    metrics = entry["meta"]["metrics"]
    assert any(metrics in [next(iter(m)) for m in stage.get("metrics", [])] for stage in dvc_yaml["stages"].values())
    scored = yaml.safe_load((REPO / metrics).read_text())
    assert 0 < scored["test"]["accuracy"] <= 1 and 0 < scored["val"]["accuracy"] <= 1


@contextmanager
def studio_stand_in():
    """A local HTTP server standing in for DVC Studio: it answers 500 to anything and counts the requests."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    requests = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                requests.append(conn.recv(4096).split(b"\r\n")[0])
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", requests
    finally:
        server.close()


def test_artifacts_get_fetches_the_tagged_model_with_studio_offline(shared, tmp_path):
    """GTO tags name versions and stages; `dvc artifacts get` needs one to find the artifact at all. With a Studio
    token around DVC asks Studio first; DVC_STUDIO_OFFLINE=true stops that."""
    a = shared.a
    untagged = sh(["dvc", "artifacts", "get", a, ARTIFACT, "-o", tmp_path / "none.keras"], tmp_path, check=False)
    assert untagged.returncode != 0 and f"Unable to find artifact '{ARTIFACT}'" in untagged.out
    sh(["gto", "register", ARTIFACT, "--version", "v1.0.0"], a)  # git tag notmnist-model@v1.0.0 on HEAD
    sh(["gto", "assign", ARTIFACT, "--version", "v1.0.0", "--stage", "prod"], a)  # git tag notmnist-model#prod#1
    sh(["git", "push", "-q", "origin", "--tags"], a)
    assert {f"{ARTIFACT}@v1.0.0", f"{ARTIFACT}#prod#1"} <= set(sh(["git", "tag"], a).stdout.split())
    fresh = clone(shared, "registry-reader")  # no cache: the model comes from its DVC remote
    with studio_stand_in() as (url, requests):
        token = {"DVC_STUDIO_TOKEN": "not-a-real-token", "DVC_STUDIO_URL": url}
        offline = {**token, "DVC_STUDIO_OFFLINE": "true"}
        for n, (source, extra) in enumerate(
            [(a, []), (a, ["--rev", "v1.0.0"]), (fresh, ["--stage", "prod"]), (shared.origin, ["--rev", "v1.0.0"])]
        ):
            out = tmp_path / f"got{n}.keras"
            got = sh(["dvc", "artifacts", "get", source, ARTIFACT, *extra, "-o", out], tmp_path, env=offline)
            assert out.read_bytes() == shared.models["baseline"], got.out
        assert requests == []
        online = sh(["dvc", "artifacts", "get", a, ARTIFACT, "-o", tmp_path / "online.keras"], tmp_path, env=token)
        assert requests and b"/api/model-registry/get-download-uris" in requests[0], online.out
        assert (tmp_path / "online.keras").read_bytes() == shared.models["baseline"]  # falls back to DVC
