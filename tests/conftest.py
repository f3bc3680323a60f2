"""pytest fixtures; the helpers themselves live in tests/helpers.py."""

import pytest

from helpers import REAL_ARCHIVE


@pytest.fixture(scope="session")
def real_archive():
    if not REAL_ARCHIVE.exists():
        pytest.fail(f"{REAL_ARCHIVE} is missing: set NOTMNIST_ARCHIVE to notMNIST_small.tar.gz")
    return REAL_ARCHIVE
