"""Work that does not fit a request: asynchronous prediction jobs (a queue in the
database, leases held by the workers that run them)."""

from modelhost.batch.jobs import JobService, Outcome

__all__ = ["JobService", "Outcome"]
