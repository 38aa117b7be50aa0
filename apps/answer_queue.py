"""A bounded queue of answer jobs run on worker threads: the server's event loop keeps accepting
and refusing requests while the model works."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class QueueFull(Exception):
    """No room left in the answer queue."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class AnswerQueue:
    """Runs jobs on `workers` threads, holding at most `depth` jobs (running plus waiting), and
    keeps a running mean of job time to tell refused clients when to come back.

    Args:
        depth: the most jobs held at once.
        workers: jobs run at once.
    """

    def __init__(self, depth: int, workers: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"the queue depth must be at least 1, got {depth}")
        if workers < 1:
            raise ValueError(f"the queue needs at least 1 worker, got {workers}")
        self.depth = depth
        self.workers = workers
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ragtune-answer"
        )
        self._lock = threading.Lock()
        self._held = 0
        self._mean_seconds = 1.0

    def submit(self, job: Callable[[], Any]) -> Future:
        """Queue `job`; its result (or exception) arrives in the returned future.

        Raises:
            QueueFull: `depth` jobs are already held.
        """
        with self._lock:
            if self._held >= self.depth:
                wait = self._held * self._mean_seconds / self.workers
                raise QueueFull(max(1, math.ceil(wait)))
            self._held += 1
        return self._executor.submit(self._run, job)

    def _run(self, job: Callable[[], Any]) -> Any:
        began = time.monotonic()
        try:
            return job()
        finally:
            with self._lock:
                self._held -= 1
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.monotonic() - began)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
