# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A destructive procedure's journal: each step written before it is taken, so that a run killed mid-way (an OOM
kill, a lost worker, an execution timeout: nothing reaches an exception handler) is found by the next run, which
finishes or undoes it before anything else, and by the health sweep, which reports it as critical until then.

A journal is one JSON file (0600) on the host the procedure acts on, beside the lock the procedure holds; it names
the process that wrote it, so a journal whose process is alive is a run in progress, not an interrupted one.

`crash_point(step)` is how a test stops a procedure at a named step: with RUNBOOK_CRASH_AT=step, the whole run is
SIGKILLed there (the ansible-playbook controller, the worker and this module), as a kill of the machine's
processes would.
"""

from __future__ import annotations

import json
import os
import signal

from ansible_collections.runbook.recovery.plugins.module_utils.common import isoformat, utc_now, write_json_atomic


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first), or [] when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_start(pid: int) -> str | None:
    """When a process started (Linux /proc, clock ticks since boot): tells it from a later one given its pid. None
    when it is gone, a zombie included (killed, its parent killed too, and nobody has reaped it yet)."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 and fields[0] not in ("Z", "X") else None


def _parent(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def _is_controller(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return any(os.path.basename(word) == b"ansible-playbook" for word in handle.read().split(b"\0"))
    except OSError:
        return False


def crash_point(step: str) -> None:
    """A test asks the run to die here: RUNBOOK_CRASH_AT=step. The controller is killed first (so it runs no rescue
    and no later task), then every process between it and this one, this one last."""
    if os.environ.get("RUNBOOK_CRASH_AT") != step:
        return
    chain, pid, top = [], os.getpid(), 0
    while pid > 1:  # up to the topmost ansible-playbook: a worker is a fork of the controller, named like it
        chain.append(pid)
        if _is_controller(pid):
            top = len(chain)
        pid = _parent(pid)
    for victim in reversed(chain[:top] or [os.getpid()]):  # not under ansible-playbook: only this process
        os.kill(victim, signal.SIGKILL)


def crash_after(module, changed: bool) -> None:
    """A test can stop the whole run right after a module wrote, before its result reaches Ansible:
    RUNBOOK_CRASH_AT=after:<module> (for example after:lambda_concurrency); a run that changed nothing goes on."""
    if changed and not getattr(module, "check_mode", False):
        crash_point("after:" + str(getattr(module, "_name", "")).rsplit(".", 1)[-1].removesuffix(".py"))


class Journal:
    """One procedure's journal at `path`."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return json.load(handle)
        except (FileNotFoundError, NotADirectoryError):  # none, or its directory is not there yet
            return None

    def write(self, step: str, **facts) -> None:
        """Record that the procedure is about to take `step` (with what undoing or finishing it needs), then stop
        there if a test asked for it."""
        entry = {**(self.read() or {}), **facts, "step": step, "at": isoformat(utc_now())}
        entry.setdefault("started_at", entry["at"])
        entry.setdefault("pid", os.getpid())
        entry.setdefault("pid_start", process_start(entry["pid"]))
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        write_json_atomic(self.path, entry)
        crash_point(step)

    def close(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def interrupted(self) -> dict | None:
        """The journal, when the run that wrote it is gone (read-only, no lock: for the health sweep); else None."""
        entry = self.read()
        if entry is None or (entry.get("pid") and process_start(entry["pid"]) == entry.get("pid_start")):
            return None
        return entry
