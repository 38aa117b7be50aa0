"""Background tuning jobs that outlive the page (and the app process) that started them.

A job is `ragtune tune PROJECT` in its own session (process group), with:

    PROJECT/tune/job.json     pid, start time, command, whether a cancel was asked
    PROJECT/tune/job.log      its stdout and stderr
    PROJECT/tune/status.json  progress, written atomically by the tune itself (builder/tune.py)

Only one job runs per project. A job whose process is gone without a final stage in
status.json (killed, crashed before writing it) reads as failed, with the end of its log.

The pids in job.json and status.json are project files, which a hostile project can fill in:
a pid gets a signal only when it is a real process of this user (never 0, -1, 1 or this one)
and, where /proc exists, still the one recorded: the same start time and, for a job, the same
command line leading its own process group; for a tune started from a terminal, a command line
that names this project's tuning.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from builder.project import Project
from retrieval.index import write_atomic

JOB_FILE = "job.json"
LOG_FILE = "job.log"
STATUS_FILE = "status.json"
FINAL_STAGES = ("done", "failed", "cancelled")
_LOG_TAIL_LINES = 20

# Children started by this process, polled (and so reaped) through their Popen object.
_children: dict[int, subprocess.Popen] = {}


class JobError(Exception):
    """A job that cannot be started; the message says why and what to do."""


@dataclass(frozen=True)
class JobInfo:
    """A started job, as recorded in job.json."""

    pid: int
    started: float
    command: list[str]
    log: Path
    start_ticks: str | None = None
    """The process start time from /proc (Linux), to tell our process from a reused pid."""
    cancel_requested: bool = False


@dataclass(frozen=True)
class JobStatus:
    """Where the project's tuning job stands.

    `stage` is 'idle' (no job), 'starting' (running, no progress written yet), a tune stage
    ('synthesize', 'split', 'format', 'train', ...) or a final one: 'done', 'failed',
    'cancelled'.
    """

    stage: str
    running: bool
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    eta_s: float | None = None
    message: str = ""
    updated: float | None = None
    pid: int | None = None
    log_tail: str = ""

    @property
    def fraction(self) -> float | None:
        """Progress of the current stage in [0, 1], None when it has no step count."""
        if self.max_steps <= 0:
            return None
        return min(max(self.step / self.max_steps, 0.0), 1.0)


def tune_command(project: Project, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of `ragtune tune PROJECT`, run with this Python."""
    root = str(project.root.resolve())
    return [sys.executable, "-m", "builder.cli", "tune", root, *extra_args]


def start_tune_job(
    project: Project, extra_args: Sequence[str] = (), command: Sequence[str] | None = None
) -> JobInfo:
    """Start tuning in the background, detached from this process's session.

    Args:
        project: the opened project.
        extra_args: more `ragtune tune` arguments, e.g. ["--set", "tune.max_steps=50"].
        command: the command to run instead of `ragtune tune` (tests use a stand-in).

    Returns:
        The started job.

    Raises:
        JobError: a job of this project is still running.
    """
    tune_dir = project.tune_dir
    tune_dir.mkdir(parents=True, exist_ok=True)
    argv = list(command) if command is not None else tune_command(project, extra_args)
    with _locked(tune_dir):
        current = job_status(project)
        if current.running:
            raise JobError(
                f"a tuning job is already running (pid {current.pid}, stage {current.stage}): "
                "wait for it to finish or cancel it"
            )
        log_path = tune_dir / LOG_FILE
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        _children[child.pid] = child
        job = JobInfo(child.pid, time.time(), argv, log_path, process_start_ticks(child.pid))
        _write_job(tune_dir, job)
    return job


def read_job(project: Project) -> JobInfo | None:
    """The project's last started job, or None when the app never started one."""
    path = project.tune_dir / JOB_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return JobInfo(
            pid=int(data["pid"]),
            started=float(data["started"]),
            command=list(data["command"]),
            log=Path(data["log"]),
            start_ticks=data.get("start_ticks"),
            cancel_requested=bool(data.get("cancel_requested", False)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise JobError(f"{path} is unreadable ({error}); delete it to start a new job") from error


def job_status(project: Project) -> JobStatus:
    """The project's tuning progress: status.json, checked against whether the job still runs."""
    job = read_job(project)
    status = _read_status(project.tune_dir / STATUS_FILE)
    outside = _outside_run(status, job, project)
    if outside is not None and status is not None:
        return _from_status(status, running=True, pid=outside)
    if job is None:
        return _from_status(status, running=False, pid=None) if status else JobStatus("idle", False)
    # Progress written before this job started belongs to an earlier run.
    if status and (status.get("updated") or 0) < job.started - 1:
        status = None
    tail = _log_tail(job.log)
    if _alive(job):
        if status is None:
            return JobStatus("starting", True, pid=job.pid, log_tail=tail)
        return _from_status(status, running=True, pid=job.pid, log_tail=tail)
    if status and status.get("stage") in FINAL_STAGES:
        return _from_status(status, running=False, pid=job.pid, log_tail=tail)
    if job.cancel_requested:
        return JobStatus("cancelled", False, message="cancelled", pid=job.pid, log_tail=tail)
    last = f" during {status['stage']}" if status and status.get("stage") else ""
    return JobStatus(
        "failed",
        False,
        message=f"the tuning process exited{last} without finishing; see the end of its log",
        pid=job.pid,
        log_tail=tail,
    )


def cancel_job(project: Project) -> bool:
    """Ask the running job to stop (SIGTERM to its process group); it finishes as 'cancelled'.

    Returns:
        True when a running job was signalled, False when none was running.
    """
    job = read_job(project)
    outside = _outside_run(_read_status(project.tune_dir / STATUS_FILE), job, project)
    if outside is not None:
        try:
            os.kill(outside, signal.SIGTERM)  # its own process: the terminal keeps its shell
        except ProcessLookupError:
            return False
        return True
    if job is None or not _alive(job):
        return False
    _write_job(project.tune_dir, replace(job, cancel_requested=True))
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _from_status(status: dict, *, running: bool, pid: int | None, log_tail: str = "") -> JobStatus:
    def number(key: str) -> float | None:
        value = status.get(key)
        return float(value) if isinstance(value, int | float) else None

    return JobStatus(
        stage=str(status.get("stage") or "starting"),
        running=running,
        step=int(number("step") or 0),
        max_steps=int(number("max_steps") or 0),
        loss=number("loss"),
        eta_s=number("eta_s"),
        message=str(status.get("message") or ""),
        updated=number("updated"),
        pid=pid,
        log_tail=log_tail,
    )


def _read_status(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_job(tune_dir: Path, job: JobInfo) -> None:
    data = {**asdict(job), "log": str(job.log)}
    write_atomic(tune_dir / JOB_FILE, json.dumps(data, indent=2).encode("utf-8"))


@contextlib.contextmanager
def _locked(tune_dir: Path) -> Iterator[None]:
    """Serialize check-then-start, so two browser tabs cannot start two jobs at once."""
    with open(tune_dir / "job.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def process_start_ticks(pid: int) -> str | None:
    """When the process started (clock ticks since boot), which tells a reused pid apart."""
    fields = _proc_stat(pid)
    # Field 22 of stat is the start time; [0] here is field 3 (the state).
    return fields[19] if fields and len(fields) > 19 else None


def _proc_cmdline(pid: int) -> list[str] | None:
    """The process's arguments from /proc, or None when they cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]]


def _signalable(pid: object) -> bool:
    """A pid that names one other process: not os.kill's 0 (our group) or -1 (every process
    we may signal), not a negative group, not init, not this process."""
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 1 and pid != os.getpid()


def _ours(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except OSError:
        return False


def _alive(job: JobInfo) -> bool:
    child = _children.get(job.pid)
    if child is not None:
        return child.poll() is None
    if not _process_alive(job.pid, job.start_ticks):
        return False
    fields = _proc_stat(job.pid)
    if fields is None:
        return True  # no /proc: the pid is all there is to check
    # start_tune_job records the start time and starts the job as its own group's leader.
    return (
        job.start_ticks is not None
        and fields[2] == str(job.pid)
        and _ours(job.pid)
        and _proc_cmdline(job.pid) == job.command
    )


def _process_alive(pid: int, start_ticks: str | None) -> bool:
    if not _signalable(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    fields = _proc_stat(pid)
    if fields is None:
        return True
    if fields[0] in ("Z", "X"):
        return False
    return start_ticks is None or process_start_ticks(pid) == start_ticks


def _outside_run(status: dict | None, job: JobInfo | None, project: Project) -> int | None:
    """The pid of a tune that is running but was not started by the app (a terminal's
    `ragtune tune`), from the writer recorded in status.json; None otherwise."""
    if not status or status.get("stage") in FINAL_STAGES:
        return None
    pid, ticks = status.get("pid"), status.get("start_ticks")
    if not isinstance(pid, int) or (job is not None and pid == job.pid):
        return None
    if not _process_alive(pid, ticks if isinstance(ticks, str) else None):
        return None
    return pid if _tunes(pid, project) else None


def _tunes(pid: int, project: Project) -> bool:
    """Whether the process's command line names this project's tuning: the project folder
    with a 'tune' argument, or a file in its tune folder (paths resolved from the process's
    working directory). True without /proc, where nothing more can be read."""
    if _proc_stat(pid) is None:
        return True
    arguments = _proc_cmdline(pid)
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        root, tune_dir = project.root.resolve(), project.tune_dir.resolve()
    except OSError:
        return False
    if not arguments or not _ours(pid):
        return False
    for argument in arguments[1:]:
        try:
            path = Path(cwd, argument).resolve()
        except (OSError, ValueError, RuntimeError):
            continue
        if (path == root and "tune" in arguments) or path.is_relative_to(tune_dir):
            return True
    return False


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 16384, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
