"""The delivery job's bounds that need no database: how long a job may run."""

from __future__ import annotations

from jobs.deliver import BATCH_SIZE, DELIVERY_JOB_TIMEOUT, job_timeout


def test_a_job_without_rate_limit_may_run_an_hour() -> None:
    assert job_timeout(0.0, BATCH_SIZE) == DELIVERY_JOB_TIMEOUT


def test_a_rate_limited_batch_gets_twice_what_the_limit_alone_takes() -> None:
    # 5,000 messages at one a second take 5,000 s: the job must not be killed at an hour.
    assert job_timeout(1.0, 5000) == 10_000
    assert job_timeout(0.5, 3) == DELIVERY_JOB_TIMEOUT  # 12 s: the hour still applies
