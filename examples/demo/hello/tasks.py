import time

from celery import shared_task
from django.utils import timezone

from hello.models import Job, Tick
from hello.runtime import COLOUR, RELEASE

# Long enough that a worker stopped during a rollout is in the middle of one.
JOB_SECONDS = 0.5


@shared_task
def run_job(job_id: int) -> int:
    time.sleep(JOB_SECONDS)
    Job.objects.filter(pk=job_id).update(done=timezone.now(), done_release=RELEASE, done_colour=COLOUR)
    return job_id


@shared_task(bind=True)
def tick(self, sent_at: float | None = None) -> None:
    """Sent by celery beat: which beat (origin: its process and host) sent it, and when."""
    Tick.objects.create(origin=self.request.origin or "", sent_at=sent_at or time.time())
