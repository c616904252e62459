import asyncio
import json
import math
import os

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from hello.models import Hit, Job, Tick
from hello.runtime import COLOUR, RELEASE, SERVER

MAX_SLEEP = 30.0


@require_GET
def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "demo", "view": "sync", "release": RELEASE, "server": SERVER})


@require_GET
async def index_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "demo", "view": "async", "release": RELEASE, "server": SERVER})


@require_GET
async def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "client": request.META.get("REMOTE_ADDR"),
            "scheme": request.scheme,
            "host": request.get_host(),
            "is_secure": request.is_secure(),
            "server": SERVER,
            "release": RELEASE,
            "colour": COLOUR,
            "pid": os.getpid(),
            "forwarded_for": request.META.get("HTTP_X_FORWARDED_FOR"),
            "real_ip_header": request.META.get("HTTP_X_REAL_IP"),
        }
    )


@require_GET
async def slow(request: HttpRequest) -> JsonResponse:
    try:
        seconds = float(request.GET.get("seconds", "1"))
    except ValueError:
        return JsonResponse({"error": "seconds must be a number"}, status=400)
    if math.isnan(seconds):
        return JsonResponse({"error": "seconds must be a number"}, status=400)
    seconds = min(max(seconds, 0.0), MAX_SLEEP)
    await asyncio.sleep(seconds)
    return JsonResponse({"slept": seconds, "release": RELEASE})


def _note_from(request: HttpRequest) -> str:
    """The "note" of a POST, from a JSON object or a form body.

    Raises ValueError on a body that is not a JSON object.
    """
    if request.content_type == "application/json":
        body = json.loads(request.body or b"{}")
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        note = body.get("note", "")
    else:
        note = request.POST.get("note", "")
    return str(note)[:200]


@csrf_exempt
@require_http_methods(["GET", "POST"])
def db(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        try:
            note = _note_from(request)
        except ValueError:  # includes json.JSONDecodeError and UnicodeDecodeError
            return JsonResponse({"error": "body must be a JSON object"}, status=400)
        hit = Hit.objects.create(note=note)
        return JsonResponse({"id": hit.pk, "rows": Hit.objects.count()}, status=201)
    return JsonResponse({"rows": Hit.objects.count(), "release": RELEASE})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def tasks(request: HttpRequest) -> JsonResponse:
    """POST queues a Celery task (201 {"id"}); GET counts the tasks queued and done."""
    from hello.tasks import run_job

    if request.method == "POST":
        job = Job.objects.create(queued_release=RELEASE)
        run_job.delay(job.pk)
        return JsonResponse({"id": job.pk}, status=201)
    return JsonResponse({"queued": Job.objects.count(), "done": Job.objects.filter(done__isnull=False).count()})


@require_GET
def task(request: HttpRequest, job_id: int) -> JsonResponse:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return JsonResponse({"error": "no such task"}, status=404)
    return JsonResponse(
        {"id": job.pk, "done": job.done is not None, "release": job.done_release, "colour": job.done_colour}
    )


@require_GET
def ticks(request: HttpRequest) -> JsonResponse:
    """celery beat's ticks, in the order beat sent them: [origin, sent_at]."""
    return JsonResponse({"ticks": list(Tick.objects.order_by("sent_at").values_list("origin", "sent_at"))})
