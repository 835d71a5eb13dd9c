"""The scheduler: a bounded queue of requests and one loop that decodes them in batches (continuous batching).

The queue holds groups: the n samples of one prompt enter a batch together, so the engine prefills their
prompt once (Engine._prefill shares it). One loop (on a thread of its own in an app from `create_app`; on the
main thread under `serve`) takes up to max_batch_size waiting rows at once and runs them through `Engine.steps`
as one batch; a finished, failed or cancelled row leaves the batch at once, and groups that arrive meanwhile
join the running batch between two steps when there are free rows and room in its cache (the others start
the next batch). A cancelled row (client gone, timeout) is dropped at the next step, or skipped if queued.
"""
from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from slm.infer.engine import Engine, Sequence
from slm.infer.server.schemas import ApiError


@dataclass
class Job:
    """One row: a Sequence and where its events go (the request's queue, shared by all its choices)."""
    seq: Sequence
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    choice: int = 0
    stream: bool = False  # a non-streaming request is woken only by its rows' last events
    arrived: float = field(default_factory=time.monotonic)
    first_at: float | None = None  # when its first token came (time to first token)

    def push(self, item) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (self.choice, item))


Group = list[Job]


class Scheduler:
    def __init__(self, engine: Engine, max_batch_size: int = 16, max_queue: int = 64, gather_s: float = 0.01):
        self.engine, self.max_batch_size, self.gather_s = engine, max_batch_size, gather_s
        self.waiting: queue.Queue[Group] = queue.Queue(maxsize=max_queue)
        self.running = 0  # rows being decoded (tests, /health and /metrics read it)
        self.active: list[Job] = []  # the batch being decoded
        self.held: collections.deque[Group] = collections.deque()  # taken from the queue, no room in the batch
        self.batches = 0  # batches started, groups that joined one already running, the largest batch
        self.admitted = 0
        self.largest_batch = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="slm-scheduler", daemon=True)

    def start(self) -> None:
        """Run the scheduler on a thread of its own (what an app started by create_app does)."""
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def queued(self) -> int:
        return self.waiting.qsize() + len(self.held)

    def submit(self, group: Group, max_concurrent: int | None = None) -> None:
        if max_concurrent is not None and self.queued + self.running >= max_concurrent:
            raise ApiError(429, f"the server is busy: {max_concurrent} requests are in flight (--max-concurrent); "
                           "retry later", code="too_many_requests", type_="rate_limit_error")
        try:
            self.waiting.put_nowait(group)
        except queue.Full:
            raise ApiError(429, "the server is busy: the request queue is full; retry later",
                           code="queue_full", type_="rate_limit_error") from None

    def _next_group(self, timeout: float = 0.0) -> Group | None:
        """The oldest waiting group: first those a running batch had no room for, then the queue."""
        while True:
            if self.held:
                group = self.held.popleft()
            else:
                try:
                    group = self.waiting.get(timeout=timeout) if timeout > 0 else self.waiting.get_nowait()
                except queue.Empty:
                    return None
            group = [job for job in group if not job.seq.cancelled]
            if group:
                return group

    def _take_batch(self) -> list[Job]:
        first = self._next_group(timeout=0.05)
        if first is None:
            return []
        batch = list(first)
        deadline = time.monotonic() + self.gather_s  # a moment for requests sent together to ride together
        while len(batch) < self.max_batch_size:
            group = self._next_group(timeout=max(1e-3, deadline - time.monotonic()))
            if group is None:
                break
            if len(batch) + len(group) > self.max_batch_size:
                self.held.appendleft(group)
                break
            batch += group
        return batch

    def _admitter(self, jobs: list[Job]):
        """The engine's `admit` callback for this batch: waiting groups that fit join it (continuous batching)."""
        def admit(free: int, max_prompt_len: int, max_new_tokens: int) -> list:
            joined, no_room = [], []
            while len(joined) < free:
                group = self._next_group()
                if group is None:
                    break
                seq = group[0].seq
                if (len(joined) + len(group) <= free and len(seq.prompt_ids) <= max_prompt_len
                        and seq.params.max_tokens <= max_new_tokens):
                    for job in group:
                        job.seq.index = len(jobs)
                        jobs.append(job)
                        joined.append(job.seq)
                else:
                    no_room.append(group)
                    if len(no_room) > 4:  # keep the queue's order; the rest wait for the next batch
                        break
            self.held.extendleft(reversed(no_room))  # first in line for the next batch, in their order
            if joined:
                self.admitted += 1
                self.running = sum(not job.seq.finished for job in jobs)
                self.largest_batch = max(self.largest_batch, self.running)
            return joined
        return admit

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Take batches and decode them until stop() (or until `until()` is true), on the calling thread."""
        while not self._stop.is_set() and not (until and until()):
            jobs = self._take_batch()
            if not jobs:
                continue
            for i, job in enumerate(jobs):
                job.seq.index = i
            self.running, self.active = len(jobs), jobs
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(jobs))
            try:
                for events in self.engine.steps([job.seq for job in jobs], admit=self._admitter(jobs)):
                    for event in events:
                        job = jobs[event.index]
                        if job.first_at is None:
                            job.first_at = time.monotonic()
                        if job.stream or event.finish_reason:
                            job.push(event)
                    self.running = sum(not job.seq.finished for job in jobs)
            except Exception as e:  # a failing batch answers its requests with an error; the server stays up
                for job in jobs:
                    if not job.seq.finished:
                        job.push(e)
            finally:
                self.running, self.active = 0, []
