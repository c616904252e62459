from django.db import models


class Hit(models.Model):
    created = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"Hit {self.pk} at {self.created:%Y-%m-%d %H:%M:%S}"


class Job(models.Model):
    """A task queued by a view, marked done by the Celery worker that ran it."""

    queued = models.DateTimeField(auto_now_add=True)
    queued_release = models.CharField(max_length=64)
    done = models.DateTimeField(null=True)
    done_release = models.CharField(max_length=64, blank=True)
    done_colour = models.CharField(max_length=16, blank=True)


class Tick(models.Model):
    """A tick of celery beat, run by a worker."""

    origin = models.CharField(max_length=200)
    sent_at = models.FloatField()
