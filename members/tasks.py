"""huey tasks of the members app: thin wrappers that take ids and call members.import_jobs."""

from __future__ import annotations

import logging

from django.db import transaction
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from members import import_jobs

logger = logging.getLogger(__name__)


@db_task()
def import_job_run(job_id: int) -> None:
    import_jobs.import_job_run(job_id=job_id)


def import_job_enqueue(*, job_id: int) -> None:
    """Run the import in a worker once the confirming request's transaction (if any)
    has committed: never before the job is visible to it."""
    transaction.on_commit(lambda: import_job_run(job_id))


@db_periodic_task(crontab(minute="23"))
def import_jobs_expire() -> None:
    expired = import_jobs.import_jobs_expire()
    if expired:
        logger.info("member imports expired: %d", expired)
