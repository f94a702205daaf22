"""`memkit import --short-term` and `memkit recall --since/--until`."""

from __future__ import annotations

import json
from pathlib import Path

from memkit import Vault

from .conftest import REPO, Runner

EXAMPLE = REPO / "examples" / "chat.jsonl"


def _short_term(vault: Vault) -> list[str]:
    return sorted(record.body.strip() for record in vault.scan(["short-term"]).records)


def test_import_short_term_keeps_the_latest_messages_within_capacity(
    vault: Vault, run: Runner, tmp_path: Path
) -> None:
    settings = vault.root / "memkit.yaml"
    settings.write_text(settings.read_text("utf-8").replace("capacity: 50", "capacity: 3"), "utf-8")
    lines = [json.loads(line) for line in EXAMPLE.read_text("utf-8").splitlines() if line]
    latest = lines[-1]["session"]
    in_latest = [line for line in lines if line["session"] == latest]

    result = run.run("import", str(EXAMPLE), "--short-term", "--json")
    assert result.exit_code == 0, result.output
    kept = _short_term(Vault(vault.root))
    # Capacity 3: the newest three messages of the latest session, each with its speaker.
    expected = sorted(f"{m['speaker']}: {m['text']}" for m in in_latest[-3:])
    assert kept == expected
    for record in Vault(vault.root).scan(["short-term"]).records:
        assert record.meta["source"]["session"] == latest
    # Importing the same file again adds no message, so short-term memory is left alone.
    again = run.run("import", str(EXAMPLE), "--short-term", "--json")
    assert again.exit_code == 0 and json.loads(again.output)["added"] == 0
    assert _short_term(Vault(vault.root)) == expected


def test_import_short_term_redacts_credentials_like_the_day_file(
    vault: Vault, run: Runner, tmp_path: Path
) -> None:
    secret = "AKIAIOSFODNN7EXAMPLF"
    source = tmp_path / "chat.jsonl"
    source.write_text(
        json.dumps(
            {
                "id": "m1",
                "session": "s1",
                "time": "2026-11-26T08:10:00Z",
                "speaker": "Dana",
                "text": f"the deploy key is {secret}, use it",
            }
        )
        + "\n",
        "utf-8",
    )
    result = run.run("import", str(source), "--short-term")
    assert result.exit_code == 0, result.output
    assert "[REDACTED" in result.stderr or "REDACTED" in result.output + result.stderr
    bodies = _short_term(Vault(vault.root))
    assert len(bodies) == 1 and secret not in bodies[0] and "REDACTED" in bodies[0]
    for path in vault.root.rglob("*.md"):
        assert secret not in path.read_text("utf-8")


def test_recall_takes_since_and_until(run_sample: Runner) -> None:
    everything = json.loads(run_sample.run("recall", "deadlock", "--json").output)["hits"]
    assert everything
    late = run_sample.run("recall", "deadlock", "--since", "2999-01-01", "--json")
    assert late.exit_code == 0 and json.loads(late.output)["hits"] == []
    early = run_sample.run("recall", "deadlock", "--until", "1999-01-01", "--json")
    assert early.exit_code == 0 and json.loads(early.output)["hits"] == []
    wide = run_sample.run(
        "recall", "deadlock", "--since", "1999-01-01", "--until", "2999-01-01", "--json"
    )
    assert json.loads(wide.output)["hits"] == everything
    wrong = run_sample.run("recall", "deadlock", "--since", "next tuesday")
    assert wrong.exit_code == 2 and "is not a date" in wrong.output + wrong.stderr
