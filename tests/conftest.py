"""Fixtures shared across test folders (one session-wide copy each)."""

import pytest

from tests.image.conftest import run_cli, write_config


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny bundle trained through every stage by the real CLI (shared by the tests that only read it)."""
    folder = tmp_path_factory.mktemp("tiny")
    cfg = write_config(folder)
    run_cli("train", cfg, "--quiet", "--accelerator", "cpu")
    return cfg, folder / "ckpt"
