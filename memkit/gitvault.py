"""The vault's git repository via the `git` program: init, commits, history, remote sync."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from memkit.errors import GitError, RecordNotFound
from memkit.vault import STATE_DIR, Vault, is_temporary_name

GITATTRIBUTES_LINES = (
    "# memkit: record files are text with LF line endings on every machine, so they diff and merge",
    "*.md text eol=lf",
    "memkit.yaml text eol=lf",
    "# episodic day files are append-only: when two machines append to the same day, keep both",
    "memory/episodic/**/*.md merge=union",
)
GITIGNORE_LINES = (
    "# memkit's derived state (search index, manifest, locks): rebuilt by `memkit reindex`",
    f"{STATE_DIR}/",
)
HOOK_MARK = "# memkit pre-commit hook"
# Environment variables that would point git at another repository or index than the vault's:
# memkit always finds the repository from the vault folder (`git -C <vault>`).
REPOSITORY_OVERRIDES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX")
CHANGES = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "C": "copied"}
# Renames git should still recognise: approving a proposal moves it *and* rewrites its
# front-matter in the same commit, which can leave a short entry under git's default 50%.
RENAME_SIMILARITY = "30%"


def quoted(text: str, limit: int = 60) -> str:
    """A title for a commit message: one line, at most `limit` characters, in quotes."""
    line = " ".join(text.split())
    return '"' + (line if len(line) <= limit else line[: limit - 3].rstrip() + "...") + '"'


@dataclass
class GitInitReport:
    """What `GitVault.init` did."""

    top: str  # the repository's top folder
    created: bool  # a new repository (False: the vault is in an existing one)
    changed: list[str] = field(default_factory=list)  # .gitattributes / .gitignore written
    hook: str | None = None  # the installed pre-commit hook

    def to_json(self) -> dict[str, Any]:
        return {
            "top": self.top,
            "created": self.created,
            "changed": self.changed,
            "hook": self.hook,
        }


@dataclass
class HistoryEntry:
    """One commit that changed a record: what happened to it and where it was."""

    commit: str
    date: str  # ISO 8601 author date
    author: str  # "Name <email>"
    message: str  # the commit's subject line
    path: str  # the record's vault-relative path after this commit
    change: str  # added | modified | renamed | copied | deleted
    from_path: str | None = None  # renamed/copied: where it was before

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "commit": self.commit,
            "date": self.date,
            "author": self.author,
            "message": self.message,
            "path": self.path,
            "change": self.change,
        }
        if self.from_path is not None:
            data["from"] = self.from_path
        return data


@dataclass
class ConflictCopy:
    """A file both machines changed: ours stays in place, theirs is kept in `copy`."""

    path: str
    copy: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "copy": self.copy}


@dataclass
class RemoteSyncReport:
    """What `GitVault.sync_remote` did, for people (`memkit sync --remote`) and programs."""

    remote: str
    branch: str
    commits: list[str] = field(
        default_factory=list
    )  # commits memkit made (local changes, merge, finalising)
    merged: str = "up to date"  # up to date | fast-forward | merge | nothing to merge
    changed: list[tuple[str, str]] = field(default_factory=list)  # (change, path) the pull brought
    conflicts: list[ConflictCopy] = field(default_factory=list)
    # Deleted on one machine, edited on the other: the edited version was kept in place.
    kept: list[str] = field(default_factory=list)
    pushed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "branch": self.branch,
            "commits": self.commits,
            "merged": self.merged,
            "changed": [{"change": change, "path": path} for change, path in self.changed],
            "conflicts": [c.to_json() for c in self.conflicts],
            "kept": self.kept,
            "pushed": self.pushed,
        }


class GitVault:
    """The git repository a vault lives in (the vault may be a subfolder of a bigger one)."""

    def __init__(self, vault: Vault, git: str = "git") -> None:
        self.vault = vault
        self.root = vault.root
        self._git_name = git
        self._git: str | None = None

    # --- running git -------------------------------------------------------------------------

    @property
    def git(self) -> str:
        if self._git is None:
            found = shutil.which(self._git_name)
            if found is None:
                raise GitError(
                    f"memkit needs the `{self._git_name}` program for this and could not find it "
                    "on PATH; install git (https://git-scm.com/downloads) and try again"
                )
            self._git = found
        return self._git

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in REPOSITORY_OVERRIDES}
        # LC_ALL=C: messages we match on are git's English ones. Literal pathspecs: a file named
        # `a[1].md` means that file, not a pattern. No prompts: memkit never waits on a terminal.
        env.update(
            LC_ALL="C",
            GIT_LITERAL_PATHSPECS="1",
            GIT_TERMINAL_PROMPT="0",
            GIT_MERGE_AUTOEDIT="no",
        )
        return env

    def run(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """`git -C <vault> ARGS` (never through a shell); GitError naming the command on failure."""
        command = [self.git, "-C", str(cwd or self.root), *args]
        try:
            done = subprocess.run(command, capture_output=True, env=self._env(), check=False)
        except OSError as error:
            raise GitError(f"could not run git ({self.git}): {error}") from None
        if check and done.returncode != 0:
            raise self._error(args, done)
        return done

    def _error(self, args: Sequence[str], done: subprocess.CompletedProcess[bytes]) -> GitError:
        # Both streams: a hook (memkit check) prints its problems on stdout, its summary on stderr.
        said = b"\n".join(s.strip() for s in (done.stdout, done.stderr) if s.strip())
        said_text = said.decode("utf-8", "replace")
        return GitError(
            f"`git {shlex.join(args)}` failed in {self.root} (exit {done.returncode}): "
            f"{said_text or 'no message'}"
        )

    def text(self, *args: str, cwd: Path | None = None) -> str:
        return self.run(*args, cwd=cwd).stdout.decode("utf-8", "surrogateescape").strip()

    def _zlist(self, *args: str, cwd: Path | None = None) -> list[str]:
        out = self.run(*args, cwd=cwd).stdout.decode("utf-8", "surrogateescape")
        return [item for item in out.split("\0") if item]

    # --- the repository ----------------------------------------------------------------------

    def is_repo(self) -> bool:
        done = self.run("rev-parse", "--is-inside-work-tree", check=False)
        return done.returncode == 0 and done.stdout.strip() == b"true"

    def require_repo(self) -> None:
        if not self.is_repo():
            raise GitError(
                f"the vault {self.root} is not in a git repository; "
                "make it one with `memkit init --git`"
            )

    @property
    def top(self) -> Path:
        """The top folder of the repository's work tree."""
        return Path(self.text("rev-parse", "--show-toplevel")).resolve()

    @property
    def prefix(self) -> str:
        """The vault's folder relative to the top of the repository: '' or 'a/b/'."""
        return self.text("rev-parse", "--show-prefix")

    def _to_vault(self, top_relpath: str, prefix: str) -> str | None:
        """A path relative to the repository top as a vault-relative one (None: outside)."""
        if not top_relpath.startswith(prefix):
            return None
        return top_relpath[len(prefix) :]

    def head(self) -> str | None:
        done = self.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
        return done.stdout.decode().strip() or None if done.returncode == 0 else None

    def merging(self) -> bool:
        return (
            self.run("rev-parse", "--verify", "--quiet", "MERGE_HEAD", check=False).returncode == 0
        )

    # --- init and hooks ----------------------------------------------------------------------

    def init(self, *, hooks: bool = False) -> GitInitReport:
        """Make the vault a git repository, or use the one it is in; write the attributes that
        make its files merge well and the ignore rule for derived state (idempotent)."""
        created = False
        if not self.is_repo():
            self.run("init", "--quiet")
            created = True
        report = GitInitReport(top=str(self.top), created=created)
        if _add_lines(self.root / ".gitattributes", GITATTRIBUTES_LINES):
            report.changed.append(".gitattributes")
        if _add_lines(self.root / ".gitignore", GITIGNORE_LINES):
            report.changed.append(".gitignore")
        if hooks:
            report.hook = str(self.install_hook())
        return report

    def hook_text(self) -> str:
        """A pre-commit hook running `memkit check` on the staged record files of this vault."""
        prefix = self.prefix
        vault = prefix.rstrip("/") or "."
        return f"""#!/bin/sh
{HOOK_MARK} (installed by `memkit init --git --hooks`): refuses a commit that
# stages an invalid record file of the memkit vault. Skip it once: `git commit --no-verify`.
# Git runs hooks at the top of the work tree, so paths here are relative to it.
vault={shlex.quote(vault)}
prefix={shlex.quote(prefix)}
# The Python that installed this hook runs memkit; `memkit` on PATH when it is gone.
python={shlex.quote(sys.executable)}
staged=$(git -c core.quotePath=false diff --cached --name-only --diff-filter=ACMR -- "$vault") || exit 1
set -f
set --
IFS='
'
for file in $staged; do
  case "$file" in
    "$prefix"memory/*.md|"$prefix"learning/*.md) set -- "$@" "$file" ;;
  esac
done
unset IFS
[ $# -eq 0 ] && exit 0
if [ -x "$python" ]; then
  exec "$python" -m memkit --vault "$vault" check -- "$@"
elif command -v memkit >/dev/null 2>&1; then
  exec memkit --vault "$vault" check -- "$@"
fi
echo "memkit pre-commit hook: memkit is not installed ($python is gone, no memkit on PATH);" \\
  "install it, or commit with --no-verify" >&2
exit 1
"""

    def install_hook(self) -> Path:
        """Write the pre-commit hook (honouring core.hooksPath); never replaces someone else's."""
        hook = Path(self.text("rev-parse", "--git-path", "hooks/pre-commit"))
        if not hook.is_absolute():
            hook = self.root / hook
        if hook.exists() and HOOK_MARK not in hook.read_text("utf-8", errors="replace"):
            raise GitError(
                f"{hook}: a pre-commit hook is already there and memkit will not replace it; "
                f"add this line to it instead: memkit --vault {shlex.quote(str(self.root))} check"
            )
        hook.parent.mkdir(parents=True, exist_ok=True)
        hook.write_text(self.hook_text(), "utf-8")
        hook.chmod(0o755)
        return hook

    # --- commits -----------------------------------------------------------------------------

    def commit(self, paths: Iterable[str], message: str, *, verify: bool = True) -> str | None:
        """Commit exactly these vault-relative paths (new, changed, moved or deleted) and return
        the commit, or None when they hold no change. Other staged work stays staged."""
        relpaths = sorted({p for p in paths if p})
        for relpath in relpaths:
            self.vault.safe_path(relpath)  # refuses anything outside the vault
        if not relpaths:
            return None
        self.require_repo()
        if self.merging():
            raise GitError(
                f"a git merge is in progress in {self.top}, so memkit did not commit; finish it "
                "(resolve, then `git commit`) or undo it (`git merge --abort`), then commit "
                f"{', '.join(relpaths)}"
            )
        present = [p for p in relpaths if os.path.lexists(self.root / p)]
        missing = [p for p in relpaths if p not in present]
        if present:
            # Files the person's .gitignore keeps out of git (say, memory/short-term/) stay out.
            ignored = set(
                self._zlist(
                    "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", *present
                )
            )
            present = [p for p in present if p not in ignored]
        if present:
            self.run("add", "--", *present)
        if missing:
            self.run("rm", "--quiet", "--cached", "--ignore-unmatch", "--", *missing)
            # A path created and deleted again before the commit was never known to git;
            # naming it to `git commit` would fail.
            head = self.head()
            tracked = (
                set(self._zlist("ls-tree", "-r", "-z", "--name-only", "HEAD", "--", *missing))
                if head
                else set()
            )
            missing = [p for p in missing if p in tracked]
        known = present + missing
        if not known:
            return None
        if self.run("diff", "--cached", "--quiet", "--", *known, check=False).returncode == 0:
            return None
        # `git commit -- PATHS` is `--only`: the commit holds these paths' contents and nothing
        # else that was staged, which stays staged for the person's own commit.
        args = ["commit", "--quiet", "--message", message]
        if not verify:
            args.append("--no-verify")
        self.run(*args, "--", *known)
        return self.head()

    def pending_changes(self) -> list[str]:
        """Vault-relative paths with changes git has not committed (editor scratch files left out)."""
        changed = set(
            self._zlist(
                "ls-files", "-z", "--modified", "--deleted", "--others", "--exclude-standard"
            )
        )
        changed |= set(self._zlist("diff", "--cached", "--name-only", "-z", "--relative"))
        keep = (".gitignore", ".gitattributes")
        return sorted(
            p
            for p in changed
            if p in keep or not any(is_temporary_name(part) for part in PurePosixPath(p).parts)
        )

    # --- history -----------------------------------------------------------------------------

    def locate(self, ref: str, cwd: Path | None = None) -> str:
        """The vault-relative path of a record by id or path, also when it was deleted (git
        remembers where a deleted record with that id last was)."""
        try:
            return self.vault.resolve(ref, cwd)
        except RecordNotFound:
            pass
        if "/" in ref or "\\" in ref or ref.endswith(".md"):
            # A path that is gone from the disk: absolute, or relative to the vault.
            if Path(ref).is_absolute():
                return self.vault.relpath(Path(ref))
            relpath = PurePosixPath(ref.replace("\\", "/")).as_posix()
            self.vault.safe_path(relpath)
            return relpath
        if not re.fullmatch(r"[0-9A-Za-z_-]+", ref):
            raise RecordNotFound(ref)
        self.require_repo()
        prefix = self.prefix
        found = self._zlist(
            "log",
            "-1",
            "--diff-filter=D",
            "--format=",
            "--name-only",
            "-z",
            f"-G^id:.*{ref}",
            "--",
            ".",
        )
        if not found:
            raise RecordNotFound(ref)
        last = self._to_vault(found[0], prefix)
        if last is None:
            raise RecordNotFound(ref)
        return last

    def history(self, relpath: str) -> list[HistoryEntry]:
        """Every commit that changed the record at `relpath`, newest first, following renames
        and moves (a proposal approved into its store keeps its history)."""
        self.vault.safe_path(relpath)
        self.require_repo()
        prefix = self.prefix
        out = self.run(
            "log",
            "--follow",
            f"--find-renames={RENAME_SIMILARITY}",
            "--name-status",
            "-z",
            "--format=%x1e%H%x1f%aI%x1f%an <%ae>%x1f%s",
            "--",
            relpath,
        ).stdout.decode("utf-8", "surrogateescape")
        entries: list[HistoryEntry] = []
        for chunk in out.split("\x1e")[1:]:
            header, _, rest = chunk.partition("\0")
            commit, date, author, message = header.split("\x1f", 3)
            fields = [f for f in rest.strip("\n").split("\0") if f.strip("\n")]
            if not fields:
                continue  # a merge commit: its changes show in the commits it joined
            status = fields[0].strip()
            letter = status[:1]
            change = CHANGES.get(letter, "modified")
            if letter in ("R", "C") and len(fields) >= 3:
                old = self._to_vault(fields[1], prefix) or fields[1]
                new = self._to_vault(fields[2], prefix) or fields[2]
                entries.append(HistoryEntry(commit, date, author, message, new, change, old))
            else:
                path = self._to_vault(fields[1], prefix) or fields[1]
                entries.append(HistoryEntry(commit, date, author, message, path, change))
        return entries

    # --- sync with a remote ------------------------------------------------------------------

    def _current_branch(self) -> str:
        done = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        branch = done.stdout.decode().strip()
        if done.returncode != 0 or not branch:
            raise GitError(
                f"the repository at {self.top} is not on a branch (detached HEAD); "
                "check out the branch to sync (`git switch main`) and try again"
            )
        return branch

    def _config(self, key: str) -> str | None:
        done = self.run("config", "--get", key, check=False)
        return done.stdout.decode().strip() or None if done.returncode == 0 else None

    def _remote_and_branch(self, remote: str | None, branch: str) -> tuple[str, str]:
        remotes = self.text("remote").split()
        configured = self._config(f"branch.{branch}.remote")
        if not remote:
            if configured and configured in remotes:
                remote = configured
            elif "origin" in remotes or len(remotes) == 1:
                remote = "origin" if "origin" in remotes else remotes[0]
            else:
                raise GitError(
                    "no git remote to sync with"
                    + (
                        f" (there are {', '.join(remotes)}; name one: `memkit sync --remote NAME`)"
                        if remotes
                        else "; add one with `git remote add origin URL`"
                    )
                )
        if remote not in remotes:
            raise GitError(
                f"no git remote named {remote!r}; add it with `git remote add {remote} URL`"
                + (f" (remotes: {', '.join(remotes)})" if remotes else "")
            )
        merge = self._config(f"branch.{branch}.merge")
        if configured == remote and merge and merge.startswith("refs/heads/"):
            return remote, merge[len("refs/heads/") :]
        return remote, branch

    def sync_remote(
        self,
        remote: str | None = None,
        *,
        after_pull: Callable[[RemoteSyncReport], str | None] | None = None,
        attempts: int = 3,
    ) -> RemoteSyncReport:
        """Commit the vault's pending changes, fetch and merge the remote branch (never rebase),
        keep both versions of any file changed on both sides, then push.

        `after_pull` runs once the merge is done (memkit uses it to sync the index and finalise
        approvals that arrived by moving a file); what it writes through this vault is committed
        with the message it returns. A push refused because the remote moved on meanwhile is
        retried (fetch, merge, push) up to `attempts` times.
        """
        self.require_repo()
        if self.merging():
            raise GitError(
                f"a git merge is in progress in {self.top}; finish it (`git commit`) or undo it "
                "(`git merge --abort`), then run `memkit sync --remote` again"
            )
        branch = self._current_branch()
        remote, remote_branch = self._remote_and_branch(remote, branch)
        report = RemoteSyncReport(remote=remote, branch=remote_branch)
        pending = self.pending_changes()
        if pending:
            sha = self.commit(pending, f"memkit: commit {len(pending)} changed files before sync")
            if sha:
                report.commits.append(sha)
        tracking = f"refs/remotes/{remote}/{remote_branch}"
        for _attempt in range(attempts):
            self.run("fetch", "--quiet", remote)
            done = self.run(
                "rev-parse", "--verify", "--quiet", f"{tracking}^{{commit}}", check=False
            )
            theirs = done.stdout.decode().strip() if done.returncode == 0 else None
            if theirs is not None:
                self._merge(theirs, f"{remote}/{remote_branch}", report)
            else:
                report.merged = "nothing to merge"
            if after_pull is not None:
                message = after_pull(report)
                if message and self.vault.touched:
                    sha = self.commit(self.vault.touched, message)
                    if sha:
                        report.commits.append(sha)
            head = self.head()
            if head is None or head == theirs:
                return report  # nothing of ours to push
            args = ["push", "--quiet", remote, f"HEAD:refs/heads/{remote_branch}"]
            if self._config(f"branch.{branch}.remote") is None:
                args.insert(2, "--set-upstream")
            pushed = self.run(*args, check=False)
            if pushed.returncode == 0:
                report.pushed = True
                return report
            said = pushed.stderr.decode("utf-8", "replace")
            if (
                "[rejected]" not in said
                and "non-fast-forward" not in said
                and "fetch first" not in said
            ):
                raise self._error(args, pushed)
            # Someone pushed between our fetch and our push: fetch and merge again.
        raise GitError(
            f"the remote {remote} kept changing while memkit tried to push {remote_branch} "
            f"({attempts} attempts); run `memkit sync --remote` again"
        )

    def _merge(self, theirs: str, name: str, report: RemoteSyncReport) -> None:
        before = self.head()
        if before == theirs or (
            before is not None
            and self.run("merge-base", "--is-ancestor", theirs, before, check=False).returncode == 0
        ):
            return  # they have nothing we lack
        merged = self.run(
            "merge",
            "--no-edit",
            "--no-verify",
            "--message",
            f"memkit: merge {name}",
            theirs,
            check=False,
        )
        if merged.returncode != 0:
            unmerged = self._unmerged()
            if not unmerged:
                raise self._error(["merge", theirs], merged)
            self._resolve(unmerged, theirs, name, report)
        after = self.head()
        assert after is not None
        report.merged = "fast-forward" if after == theirs else "merge"
        if report.merged == "merge":
            report.commits.append(after)
        report.changed.extend(self._changes(before, after))

    def _unmerged(self) -> dict[str, dict[int, str]]:
        """Conflicted paths (relative to the repository top) and their stages -> blob ids."""
        top = self.top
        stages: dict[str, dict[int, str]] = {}
        for entry in self._zlist("ls-files", "--unmerged", "-z", cwd=top):
            info, _, path = entry.partition("\t")
            _mode, blob, stage = info.split()
            stages.setdefault(path, {})[int(stage)] = blob
        return stages

    def _resolve(
        self, unmerged: dict[str, dict[int, str]], theirs: str, name: str, report: RemoteSyncReport
    ) -> None:
        """Keep everything: our version stays in place, theirs goes next to it as a conflict
        copy; a file deleted on one side and edited on the other keeps the edited version."""
        top, prefix = self.top, self.prefix
        outside = sorted(p for p in unmerged if self._to_vault(p, prefix) is None)
        if outside:
            self.run("merge", "--abort", check=False)
            raise GitError(
                f"merging {name} conflicts in files outside the vault ({', '.join(outside)}); "
                "memkit only resolves vault files, so nothing was merged: merge by hand with "
                f"`git pull`, then run `memkit sync --remote` again"
            )
        tag = theirs[:8]
        resolved: list[str] = []
        for path, stages in sorted(unmerged.items()):
            relpath = self._to_vault(path, prefix)
            assert relpath is not None
            if 2 in stages and 3 in stages:
                self.run("checkout", "--ours", "--", path, cwd=top)
                data = self.run("cat-file", "blob", stages[3]).stdout
                copy = self.vault.write_conflict_copy(relpath, data, tag)
                report.conflicts.append(ConflictCopy(relpath, copy))
                resolved += [relpath, copy]
            elif 2 in stages or 3 in stages:
                side = "--ours" if 2 in stages else "--theirs"
                self.run("checkout", side, "--", path, cwd=top)
                report.kept.append(relpath)
                resolved.append(relpath)
            else:
                self.run("rm", "--quiet", "--cached", "--", path, cwd=top)
        if resolved:
            self.run("add", "--", *resolved)
        copies = len(report.conflicts)
        # --no-verify: the merge brings the other machine's files, already committed there; a
        # hook refusing one of them must not stop the two machines from syncing.
        self.run(
            "commit",
            "--quiet",
            "--no-verify",
            "--message",
            f"memkit: merge {name} ({copies} conflict {'copy' if copies == 1 else 'copies'} kept)",
        )

    def _changes(self, before: str | None, after: str) -> list[tuple[str, str]]:
        """(change, vault-relative path) between two commits, within the vault."""
        if before is None:
            return [("added", p) for p in self._zlist("ls-tree", "-r", "-z", "--name-only", after)]
        fields = self._zlist(
            "diff",
            "--name-status",
            "-z",
            "--relative",
            f"--find-renames={RENAME_SIMILARITY}",
            before,
            after,
        )
        changes: list[tuple[str, str]] = []
        index = 0
        while index < len(fields):
            letter = fields[index][:1]
            if letter in ("R", "C"):
                changes.append((CHANGES[letter], fields[index + 2]))
                index += 3
            else:
                changes.append((CHANGES.get(letter, "modified"), fields[index + 1]))
                index += 2
        return changes

    def conflict_copies(self) -> list[str]:
        """The conflict copies waiting for a person (vault-relative paths)."""
        return self.vault.conflict_copies()


def _add_lines(path: Path, lines: Sequence[str]) -> bool:
    """Append the lines a file lacks (comments only with the rule they explain); True if written."""
    existing = path.read_text("utf-8").splitlines() if path.exists() else []
    present = {line.strip() for line in existing}
    missing = [line for line in lines if not line.startswith("#") and line not in present]
    if not missing:
        return False
    block = [line for line in lines if line.startswith("#") or line in missing]
    text = "\n".join(block) + "\n"
    if existing:
        current = path.read_text("utf-8")
        text = ("" if current.endswith("\n") else "\n") + "\n" + text
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return True
