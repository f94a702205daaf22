"""The core CLI: init, remember, show, list, forget, check, with text and --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from memkit import __version__
from memkit.cli import cli

from .conftest import REPO, Runner


def test_version_and_help() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = CliRunner().invoke(cli, ["--help"])
    for command in ("init", "remember", "show", "list", "forget", "check"):
        assert command in result.output


def test_each_command_is_where_the_lazy_group_looks_for_it() -> None:
    from memkit.cli.group import COMMAND_FAMILIES, load_commands

    load_commands()
    found = {name: command.callback.__module__ for name, command in cli.commands.items()}
    assert found == {name: f"memkit.cli.{family}" for name, family in COMMAND_FAMILIES.items()}


def test_a_command_imports_only_its_own_family(tmp_path: Path) -> None:
    # `memkit sync` starts without the chat REPL's, the LLM client's or the MCP server's imports.
    root = tmp_path / "v"
    assert CliRunner().invoke(cli, ["--vault", str(root), "init"]).exit_code == 0
    code = (
        "import sys\n"
        "from memkit.cli import main\n"
        f"sys.argv = ['memkit', '--vault', {str(root)!r}, 'status', '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in ('memkit.cli.agents', 'memkit.cli.records', 'memkit.llm', 'openai')"
        " if m in sys.modules]\n"
        "print('loaded:', ','.join(loaded), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert '"records": 0' in out.stdout
    assert "loaded: \n" in out.stderr or out.stderr.rstrip().endswith("loaded:")


def test_an_unknown_command_still_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["serch"])
    assert result.exit_code == 2 and "search" in result.output


def test_python_dash_m_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "memkit", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout


def test_init_then_remember_show_list_forget(tmp_path: Path) -> None:
    root = tmp_path / "v"
    runner = Runner(root)
    result = runner.run("init", str(root), "--json", vault=False)
    assert json.loads(result.stdout)["root"] == str(root.resolve())

    result = runner.run(
        "remember",
        "Dana walks Miso at 7am",
        "--title",
        "Morning walk",
        "--tag",
        "miso",
        "--tag",
        "routine",
        "--importance",
        "0.6",
        "--json",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert list(record)[:8] == [
        "id",
        "type",
        "path",
        "title",
        "created",
        "updated",
        "tags",
        "importance",
    ]
    assert record["type"] == "long-term" and record["title"] == "Morning walk"
    assert record["tags"] == ["miso", "routine"] and record["importance"] == 0.6
    assert record["path"].startswith("memory/long-term/morning-walk-")
    assert record["body"] == "Dana walks Miso at 7am\n"

    shown = json.loads(runner.run("show", record["id"], "--json").stdout)
    assert shown == record
    text = runner.run("show", record["path"]).stdout
    assert text.startswith("---\nid: " + record["id"])

    listed = json.loads(runner.run("list", "--json").stdout)
    assert [r["id"] for r in listed] == [record["id"]]
    assert "body" not in listed[0]
    assert record["id"] in runner.run("list", "--type", "long-term").stdout
    assert runner.run("list", "--type", "persona").stdout == ""

    gone = json.loads(runner.run("forget", record["id"], "--json").stdout)
    assert gone == {"forgotten": record["id"], "path": record["path"]}
    assert not (root / record["path"]).exists()
    result = runner.run("show", record["id"])
    assert result.exit_code == 1 and "no record" in result.stderr


def test_remember_reads_stdin_and_short_term_expires(run: Runner) -> None:
    result = run.run("remember", "-", "--type", "short-term", "--json", input="from stdin\n")
    record = json.loads(result.stdout)
    assert record["body"] == "from stdin\n" and record["type"] == "short-term"
    assert record["expires"] > record["created"]


def test_remember_refuses_secrets_with_exit_1(run: Runner) -> None:
    result = run.run("remember", "aws key AKIAIOSFODNN7EXAMPLE1 here")
    assert result.exit_code == 1
    assert "credential" in result.stderr and "--allow-secrets" in result.stderr
    assert json.loads(run.run("list", "--json").stdout) == []


def test_usage_errors_exit_2(run: Runner) -> None:
    assert run.run("remember", "x", "--type", "memo").exit_code == 2
    assert run.run("remember", "x", "--importance", "7").exit_code == 2
    assert run.run("nonsense").exit_code == 2


def test_no_vault_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 1
    assert "memkit init" in result.stderr


def test_memkit_vault_env_is_used(vault: object, tmp_path: Path) -> None:
    root = tmp_path / "envvault"
    Runner(root).run("init", str(root), vault=False)
    result = CliRunner(env={"MEMKIT_VAULT": str(root)}).invoke(cli, ["remember", "via env"])
    assert result.exit_code == 0, result.output
    assert len(list((root / "memory/long-term").iterdir())) == 1


def test_list_warns_about_bad_files_on_stderr(run: Runner) -> None:
    run.run("remember", "good")
    (run.root / "memory/long-term/broken.md").write_text("---\ntitle: Re: x\n---\n")
    result = run.run("list", "--json")
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 1
    assert "memory/long-term/broken.md:2:" in result.stderr


def test_check_prints_path_line_message_and_exits_1(run: Runner) -> None:
    assert run.run("check").exit_code == 0
    bad = run.root / "learning/insights/bad.md"
    bad.write_text(
        "---\nid: 01JD0000000000000000000001\ntype: insight\ncreated: 2026-01-01\n"
        "updated: 2026-01-01\nimportance: high\n---\nbody\n"
    )
    result = run.run("check")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "learning/insights/bad.md:6: importance: 'high' is not of type 'number'"
    ]
    data = json.loads(run.run("check", "--json").stdout)
    assert data["ok"] is False and data["problems"][0]["line"] == 6
    assert run.run("check", str(bad)).exit_code == 1


def test_check_refuses_files_outside_the_vault(run: Runner, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.md"
    outside.write_text("x")
    result = run.run("check", str(outside))
    assert result.exit_code == 1 and "outside the vault" in result.stderr


def test_sample_vault_passes_check(run_sample: Runner) -> None:
    result = run_sample.run("check", "--json")
    data = json.loads(result.stdout)
    assert data["problems"] == [] and data["checked"] >= 40
    assert result.exit_code == 0


def test_sample_vault_covers_every_type(run_sample: Runner) -> None:
    listed = json.loads(run_sample.run("list", "--json").stdout)
    types = {r["type"] for r in listed}
    assert types == {
        "short-term",
        "long-term",
        "entity",
        "episodic",
        "persona",
        "insight",
        "thread",
        "pattern",
        "decision",
        "feedback",
        "improvement",
        "proposal",
    }
    assert len([r for r in listed if r["path"].startswith("learning/proposals/")]) == 2
    assert len([r for r in listed if r["path"].startswith("learning/rejected/")]) == 1


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    fence = readme.split("```", 2)[1]
    commands = [line for line in fence.splitlines()[1:] if line.strip()]
    assert len(commands) >= 2
    test_command = commands[-1]
    assert test_command.strip() in ci
