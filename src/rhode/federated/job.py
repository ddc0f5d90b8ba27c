"""A data holder's job on the encrypted global model that pauses for collective refreshes.

Local training (and the encrypted loss) needs collective refreshes in the middle of a forward or
backward pass, but a data holder answers one message at a time and the aggregator batches the
pending ciphertexts of *every* data holder into one refresh round. So the work runs in a
:class:`Job` thread whose refresh hook *pauses*: it hands the due ciphertexts out and waits for the
refreshed ones. :class:`JobRunner` starts a job and returns its first pause (or its end), resumes it
with refreshed ciphertexts and returns its next pause (or its end). Only one job runs at a time per
runner, and its caller waits while it computes, so jobs of several data holders in one process never
compute at the same time.

The same runner serves the in-process engines (one per data holder, in the holder's process) and the
Flower deployment (inside the node-local worker process, :mod:`rhode.federated.flower.worker`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from rhode.errors import ProtocolError, RhodeError
from rhode.federated.payload import Payload, error_payload
from rhode.federated.schema import Field

log = logging.getLogger("rhode.job")

Pause = Callable[[list], list]
Work = Callable[[Pause], Payload]


class _AbortedError(Exception):
    """The job was abandoned (a new job started, or its runner closed)."""


_ABORT = object()


class Job(threading.Thread):
    """``work(pause)`` in a thread; ``pause(cts)`` publishes a pending answer and waits.

    Args:
        job_id: the aggregator's name for this job (checked on resume).
        work: computes the final answer; calls ``pause`` as its refresh hook.
        pending: builds the pending answer for a list of due ciphertexts.
    """

    def __init__(self, job_id: str, work: Work, pending: Callable[[list], Payload]) -> None:
        super().__init__(daemon=True, name=f"job-{job_id}")
        self.job_id = job_id
        self.work = work
        self.pending = pending
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()

    def run(self) -> None:
        try:
            self.outbox.put(self.work(self._pause))
        except _AbortedError:
            pass
        except RhodeError as exc:
            self.outbox.put(error_payload(exc))
        except Exception as exc:  # an internal error: details in this process's log only
            log.exception("job %s failed", self.job_id)
            self.outbox.put(error_payload(exc))

    def _pause(self, cts: list) -> list:
        self.outbox.put(self.pending(list(cts)))
        msg = self.inbox.get()
        if msg is _ABORT:
            raise _AbortedError
        return msg


class JobRunner:
    """One data holder's current job (see module docstring)."""

    def __init__(self) -> None:
        self.job: Job | None = None

    def start(self, job_id: str, work: Work, pending: Callable[[list], Payload]) -> Payload:
        """Abandon any current job, start this one, return its first pause or its end."""
        self.abort()
        self.job = Job(job_id, work, pending)
        self.job.start()
        return self._next()

    def resume(self, job_id: str, refreshed: Callable[[int], list]) -> Payload:
        """Hand the current pause its refreshed ciphertexts (``refreshed(count)``: decoded and
        checked for the count the pause is waiting for); return the next pause or the end."""
        job = self.job
        if job is None or job.job_id != job_id or not job.is_alive():
            raise ProtocolError(
                f"no paused job {job_id!r} here (it was restarted or moved on); the iteration must restart"
            )
        job.inbox.put(refreshed(self._waiting))
        return self._next()

    def _next(self) -> Payload:
        out = self.job.outbox.get()
        self._waiting = (
            int(out.config.get(Field.COUNT.value, 0))
            if isinstance(out.config.get(Field.COUNT.value), int)
            else 0
        )
        return out

    def abort(self) -> None:
        """Stop the current job (it raises inside its next pause); idempotent."""
        if self.job is not None and self.job.is_alive():
            self.job.inbox.put(_ABORT)
            self.job.join()
        self.job = None
