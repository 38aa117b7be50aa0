"""Background tuning jobs (builder/jobs.py), driven with a stand-in for `ragtune tune` that
writes status.json the way the real one does."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from builder import jobs
from builder.jobs import JobError, cancel_job, job_status, read_job, start_tune_job
from builder.project import open_project

# The stand-in: argv = [status.json path, behaviour]. It stops cleanly on SIGTERM, like the tune.
STAND_IN = r"""
import json, os, signal, sys, time
path, mode = sys.argv[1], sys.argv[2]
def write(stage, step=0, message=""):
    data = {"stage": stage, "step": step, "max_steps": 10, "loss": 2.5, "eta_s": 30.0,
            "message": message, "updated": time.time(), "pid": os.getpid()}
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)
def stop(*_):
    write("cancelled", message="stopped by request")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("stand-in started", flush=True)
if mode == "finish":
    write("train", 10)
    write("done", 10, "adapters/run-x")
    sys.exit(0)
if mode == "crash":
    write("train", 3)
    print("boom: out of memory", flush=True)
    sys.exit(1)
if mode == "train":
    write("train", 4)
while True:
    time.sleep(0.02)
"""


@pytest.fixture
def project(tmp_path):
    return open_project(tmp_path / "project")


@pytest.fixture
def start(project):
    """Start the stand-in with a behaviour; kill whatever is left at the end of the test."""
    started = []

    def run(mode: str, command: list[str] | None = None):
        status_path = project.tune_dir / jobs.STATUS_FILE
        argv = command or [sys.executable, "-c", STAND_IN, str(status_path), mode]
        job = start_tune_job(project, command=argv)
        started.append(job.pid)
        return job

    yield run
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        jobs._children.pop(pid, None)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def wait_for(project, predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job_status(project)
        if predicate(status):
            return status
        time.sleep(0.02)
    raise AssertionError(f"timed out; last status {job_status(project)}")


def test_no_job_is_idle(project):
    assert job_status(project) == jobs.JobStatus("idle", running=False)
    assert cancel_job(project) is False


def test_default_command_is_ragtune_tune(project):
    assert jobs.tune_command(project, ["--resume"]) == [
        sys.executable,
        "-m",
        "builder.cli",
        "tune",
        str(project.root.resolve()),
        "--resume",
    ]


def test_job_runs_to_done_and_records_itself(project, start):
    job = start("finish")
    status = wait_for(project, lambda s: not s.running)
    assert (status.stage, status.step, status.max_steps) == ("done", 10, 10)
    assert status.message == "adapters/run-x" and status.loss == 2.5
    assert status.fraction == 1.0
    assert "stand-in started" in status.log_tail
    recorded = json.loads((project.tune_dir / jobs.JOB_FILE).read_text())
    assert recorded["pid"] == job.pid and recorded["command"][0] == sys.executable
    assert read_job(project) == job


def test_second_job_is_refused_while_one_runs_and_cancel_stops_it(project, start):
    start("train")
    status = wait_for(project, lambda s: s.stage == "train")
    assert status.running and status.step == 4 and status.fraction == 0.4
    with pytest.raises(JobError, match="already running"):
        start("train")
    assert cancel_job(project) is True
    status = wait_for(project, lambda s: not s.running)
    assert status.stage == "cancelled" and status.message == "stopped by request"
    start("finish")  # a finished job no longer blocks a new one
    assert wait_for(project, lambda s: not s.running).stage == "done"


def test_crash_without_final_stage_reads_as_failed_with_the_log(project, start):
    start("crash")
    status = wait_for(project, lambda s: not s.running)
    assert status.stage == "failed"
    assert "during train" in status.message
    assert "boom: out of memory" in status.log_tail


def test_cancel_before_the_job_handles_signals_still_reads_cancelled(project, start):
    start("", command=[sys.executable, "-c", "import time; time.sleep(30)"])
    assert job_status(project).stage == "starting"
    assert cancel_job(project) is True
    assert wait_for(project, lambda s: not s.running).stage == "cancelled"


def test_status_left_by_an_earlier_run_is_ignored(project, start):
    project.tune_dir.mkdir(parents=True)
    old = {"stage": "done", "step": 9, "max_steps": 9, "updated": time.time() - 3600}
    (project.tune_dir / jobs.STATUS_FILE).write_text(json.dumps(old))
    start("quiet")
    status = job_status(project)
    assert status.running and status.stage == "starting"


def test_a_reloaded_app_finds_the_job_through_its_pid(project, start):
    job = start("train")
    wait_for(project, lambda s: s.stage == "train")
    jobs._children.clear()  # as after an app restart: no Popen object for the job
    assert job_status(project).running
    assert cancel_job(project) is True
    # The finished process stays a zombie child here until reaped: it must read as stopped.
    status = wait_for(project, lambda s: not s.running)
    assert status.stage == "cancelled"
    os.waitpid(job.pid, 0)
    assert job_status(project).stage == "cancelled"


def test_a_tune_started_from_a_terminal_is_followed_and_can_be_cancelled(project):
    project.tune_dir.mkdir(parents=True, exist_ok=True)
    status_path = project.tune_dir / jobs.STATUS_FILE
    terminal = subprocess.Popen([sys.executable, "-c", STAND_IN, str(status_path), "train"])
    try:
        status = wait_for(project, lambda s: s.running and s.stage == "train")
        assert status.pid == terminal.pid
        with pytest.raises(JobError, match="already running"):
            start_tune_job(project, command=[sys.executable, "-c", "pass"])
        assert cancel_job(project)
        terminal.wait(timeout=10)
        assert wait_for(project, lambda s: not s.running).stage == "cancelled"
    finally:
        terminal.kill()
        terminal.wait()
