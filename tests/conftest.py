"""Shared fixtures: a fresh vault, a copy of sample_vault, a CLI runner."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from memkit import Vault
from memkit.cli import cli

from .llm_server import ScriptedLLMServer, llm_server  # noqa: F401 - a fixture for every test

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VAULT = REPO / "sample_vault"


@pytest.fixture(autouse=True)
def _no_ambient_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a vault from the developer's environment."""
    monkeypatch.delenv("MEMKIT_VAULT", raising=False)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MEMKIT_MODEL", "MEMKIT_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault.init(tmp_path / "vault")


@pytest.fixture
def sample_vault(tmp_path: Path) -> Vault:
    target = tmp_path / "sample"
    shutil.copytree(SAMPLE_VAULT, target, ignore=shutil.ignore_patterns(".memkit"))
    return Vault(target)


class Runner:
    """CliRunner bound to one vault; `run(...)` invokes `memkit --vault V ...`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runner = CliRunner()

    def run(self, *args: str, input: str | None = None, vault: bool = True) -> Result:
        full = ["--vault", str(self.root), *args] if vault else list(args)
        return self.runner.invoke(cli, full, input=input, catch_exceptions=False)


@pytest.fixture
def run(vault: Vault) -> Iterator[Runner]:
    yield Runner(vault.root)


@pytest.fixture
def run_sample(sample_vault: Vault) -> Iterator[Runner]:
    yield Runner(sample_vault.root)
