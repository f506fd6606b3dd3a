"""Where the offline runner's partition engines run: in its own process
(:class:`InProcess`), or spread over child processes (:class:`ForkedJobs`) once an input
proves long enough to be worth it.

Partitions never share state (each engine owns its users, its watermark and its policy
tally), so they can run anywhere; what must not change is the order of the outputs.
Both executors answer the same requests — ``submit(partition, op, arg)`` with op
:data:`BATCH` (``arg``: ``[(offset, raw, parsed event or None)]``), :data:`ADVANCE`
(``arg``: a watermark) or :data:`FLUSH` — with the same :data:`Reply` per request, and
hand the replies back **in the order the requests were submitted**, so the runner yields
exactly the outputs of a run in one process, byte for byte.

:class:`ForkedJobs` forks (POSIX ``fork``: the children inherit the engines as they are
at that moment, nothing is serialised) one child per job; partition ``p`` lives in child
``p % jobs``. Requests and replies travel over ``multiprocessing`` queues (their feeder
threads never block the sender, so a parent busy reading a slow child's reply cannot
deadlock against another child writing one); at most ``depth`` requests are in flight,
which bounds the memory held in the queues. The parent keeps reading and parsing the
input meanwhile — on two cores, the input side and the engines overlap.

After a forked run the parent's engines are stale (the children held the real state and
are gone): a runner is run once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import traceback
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from intentstream.stream.engine.partition import PartitionEngine, StepResult

BATCH: Final = "batch"
ADVANCE: Final = "advance"
FLUSH: Final = "flush"
_WATERMARKS: Final = "watermarks"
_STOP: Final = "stop"

#: (counters, invalid by reason, [(topic, payload)], lines for the dead-letter file only)
#: of one request: what the runner needs. The last item carries the lines the runner
#: itself rejected (:meth:`InProcess.ready`), so they reach the file in input order.
Reply = tuple[dict[str, int], dict[str, int], list[tuple[str, bytes]], list[bytes]]


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


def apply(engine: PartitionEngine, op: str, arg: Any) -> Reply:
    """One request on one engine, its outbox published and acknowledged."""
    if op == BATCH:
        res: StepResult = engine.process_parsed(arg)
    elif op == ADVANCE:
        res = engine.advance_to(arg)
    elif op == FLUSH:
        res = engine.flush()
    else:
        raise ValueError(f"unknown request {op!r}")
    entries = engine.pending_outbox()
    engine.ack([e.id for e in entries])
    return dict(res.counters), res.invalid, [(e.topic, e.value) for e in entries], []


class InProcess:
    """The engines in this process: each request is answered at once."""

    def __init__(self, engines: Sequence[PartitionEngine]) -> None:
        self.engines = engines

    def submit(self, p: int, op: str, arg: Any = None) -> list[Reply]:
        return [apply(self.engines[p], op, arg)]

    def ready(self, reply: Reply) -> list[Reply]:
        """A reply made here, handed back in its turn after those submitted before it."""
        return [reply]

    def drain(self) -> list[Reply]:
        return []

    def watermarks(self) -> list[int]:
        return [e.meta.wm for e in self.engines]

    def close(self) -> None:
        pass


def _child(engines: dict[int, PartitionEngine], inbox: Any, outbox: Any) -> None:
    """A child's loop: answer requests in order until told to stop."""
    try:
        while True:
            op, p, arg = inbox.get()
            if op == _STOP:
                return
            if op == _WATERMARKS:
                outbox.put({q: e.meta.wm for q, e in engines.items()})
                continue
            if op == BATCH:  # the parent parsed these already; parsing again is cheaper than pickling events
                arg = [(off, raw, None) for off, raw in arg]
            outbox.put(apply(engines[p], op, arg))
    except BaseException:  # the parent raises it: an engine error must stop the run, not hang it
        outbox.put(("error", traceback.format_exc()))
    finally:
        outbox.close()
        outbox.join_thread()


class JobFailed(RuntimeError):
    """A child process failed; the message carries its traceback."""


class ForkedJobs:
    """The engines spread over ``jobs`` forked children (see the module docstring)."""

    def __init__(self, engines: Sequence[PartitionEngine], jobs: int, depth: int = 32) -> None:
        ctx = mp.get_context("fork")
        self.n = len(engines)
        self.jobs = max(1, min(jobs, self.n))
        self.depth = depth
        # the job of each request not yet handed back, in order (-1: a ready reply, in _ready)
        self._inflight: deque[int] = deque()
        self._ready: deque[Reply] = deque()
        self._in: list[Any] = []
        self._out: list[Any] = []
        self._procs: list[Any] = []
        for j in range(self.jobs):
            inbox, outbox = ctx.Queue(), ctx.Queue()
            own = {p: engines[p] for p in range(self.n) if p % self.jobs == j}
            proc = ctx.Process(target=_child, args=(own, inbox, outbox), name=f"intentstream-offline-{j}", daemon=True)
            proc.start()
            self._in.append(inbox)
            self._out.append(outbox)
            self._procs.append(proc)

    def submit(self, p: int, op: str, arg: Any = None) -> list[Reply]:
        j = p % self.jobs
        if op == BATCH:
            arg = [(off, raw) for off, raw, _ in arg]
        self._in[j].put((op, p, arg))
        return self._queued(j)

    def ready(self, reply: Reply) -> list[Reply]:
        self._ready.append(reply)
        return self._queued(-1)

    def _queued(self, j: int) -> list[Reply]:
        self._inflight.append(j)
        done = []
        while len(self._inflight) > self.depth:
            done.append(self._next())
        return done

    def drain(self) -> list[Reply]:
        return [self._next() for _ in range(len(self._inflight))]

    def watermarks(self) -> list[int]:
        wms = [0] * self.n
        for j in range(self.jobs):
            self._in[j].put((_WATERMARKS, -1, None))
        for j in range(self.jobs):
            for p, wm in self._get(j).items():
                wms[p] = wm
        return wms

    def close(self) -> None:
        for j, proc in enumerate(self._procs):
            if proc.is_alive():
                self._in[j].put((_STOP, -1, None))
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for q in self._in + self._out:
            q.close()
            q.cancel_join_thread()

    def _next(self) -> Reply:
        j = self._inflight.popleft()
        return self._ready.popleft() if j < 0 else self._get(j)

    def _get(self, j: int) -> Any:
        while True:
            try:
                reply = self._out[j].get(timeout=5)
                break
            except queue.Empty as exc:  # is the child still there?
                if not self._procs[j].is_alive():
                    raise JobFailed(f"offline job {j} exited with code {self._procs[j].exitcode}") from exc
        if type(reply) is tuple and reply and reply[0] == "error":
            raise JobFailed(f"offline job {j} failed:\n{reply[1]}")
        return reply


__all__ = ["ADVANCE", "BATCH", "FLUSH", "ForkedJobs", "InProcess", "JobFailed", "Reply", "apply", "can_fork", "usable_cpus"]
