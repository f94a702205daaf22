"""Shared fixtures: a fresh vault, a copy of sample_vault, a CLI runner."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from memkit import Vault
from memkit.cli import cli

from .llm_server import ScriptedLLMServer, llm_server  # noqa: F401 - a fixture for every test

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VAULT = REPO / "sample_vault"

# Hypothesis: thorough in CI (CI=true), quick on a developer's machine; HYPOTHESIS_PROFILE
# picks one explicitly. Tests that set max_examples scale it with `examples(n)`.
hypothesis_settings.register_profile(
    "ci", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
hypothesis_settings.load_profile(PROFILE)


def examples(thorough: int) -> int:
    """A test's example count: `thorough` in CI, a quarter of it (at least 10) locally."""
    return thorough if PROFILE == "ci" else max(10, thorough // 4)


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
