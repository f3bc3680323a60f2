#!/usr/bin/env bash
# Set up a fresh checkout: Python environment, Git and DVC, and the raw notMNIST_small archive.
# Safe to run again: each step is skipped when already done.
#   NOTMNIST_ARCHIVE=/path/to/notMNIST_small.tar.gz bash setup.sh   # use a local copy
set -euo pipefail
cd "$(dirname "$0")"

URL=http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz
ARCHIVE=data/raw/notMNIST_small.tar.gz
SHARED=../shared/data/notMNIST_small.tar.gz  # the course's (and CI's) shared copy, when present
PYTHON=${PYTHON:-python3.11}

# 1. Python environment with the pinned dependencies: requirements.txt (the pipeline) and
#    requirements-dev.txt (tests, lint, bench); reinstalled when either changes.
if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if ! cat requirements.txt requirements-dev.txt | cmp -s - .venv/.requirements.installed; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  cat requirements.txt requirements-dev.txt > .venv/.requirements.installed
fi
# The project's own package (notmnist/ and the `notmnist` command), editable: edits take effect at once.
# Reinstalled when pyproject.toml changes; not "import notmnist", which the checkout's own folder satisfies.
if ! cmp -s pyproject.toml .venv/.pyproject.installed || [ ! -x .venv/bin/notmnist ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  cp pyproject.toml .venv/.pyproject.installed
fi

# 2. Git and DVC, with DVC's analytics and update checks off.
[ -d .git ] || { git init --quiet && git add -A && git -c user.name=setup -c user.email=setup@localhost commit --quiet -m "Initial commit"; }
[ -d .dvc ] || .venv/bin/dvc init --quiet
.venv/bin/dvc config core.analytics false
.venv/bin/dvc config core.check_update false
# The default DVC remote, `storage` in .dvc/config: the folder ~/notmnist-dvc-remote, shared by every clone of
# this user on this machine; no account. Created here where missing. One chosen with `dvc remote add --local -d`
# (S3, SSH, a mounted share: docs/sharing.md) is left alone unless it is a local folder too.
remote_url=$(.venv/bin/dvc config "remote.$(.venv/bin/dvc remote default 2>/dev/null || echo none).url" 2>/dev/null || true)
case "$remote_url" in "" | *://*) ;; *) mkdir -p "$remote_url" ;; esac

# 3. The raw archive: NOTMNIST_ARCHIVE, else the shared copy, else the original download.
if [ ! -s "$ARCHIVE" ]; then
  mkdir -p data/raw
  if [ -n "${NOTMNIST_ARCHIVE:-}" ]; then
    [ -f "$NOTMNIST_ARCHIVE" ] || { echo "setup: NOTMNIST_ARCHIVE=$NOTMNIST_ARCHIVE is not a file" >&2; exit 1; }
    cp "$NOTMNIST_ARCHIVE" "$ARCHIVE.part"
  elif [ -f "$SHARED" ]; then
    cp "$SHARED" "$ARCHIVE.part"
  elif ! curl -fL --progress-bar -o "$ARCHIVE.part" "$URL"; then
    rm -f "$ARCHIVE.part"
    cat >&2 <<MSG
setup: could not download $URL.
  Get notMNIST_small.tar.gz (about 8 MB) some other way, then either copy it to $ARCHIVE
  or run:  NOTMNIST_ARCHIVE=/path/to/notMNIST_small.tar.gz bash setup.sh
MSG
    exit 1
  fi
  mv "$ARCHIVE.part" "$ARCHIVE"
fi
# Track it with DVC (cheap when unchanged: same bytes, same .dvc file).
.venv/bin/dvc add --quiet "$ARCHIVE"
echo "setup: ready. Run .venv/bin/dvc repro (or source .venv/bin/activate first)."
