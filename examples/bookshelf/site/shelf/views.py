import os
import re

import docopt
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .models import Note

# No slashes or leading dots reach the storage, so a name cannot leave MEDIA_ROOT.
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _safe(name: str) -> bool:
    return bool(SAFE_NAME.fullmatch(name)) and not name.startswith(".")


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "shelf/index.html", {"site_title": settings.SITE_TITLE, "count": Note.objects.count()})


@require_GET
def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "client": request.META["REMOTE_ADDR"],
            "scheme": request.scheme,
            "is_secure": request.is_secure(),
            "host": request.get_host(),
            "release": os.environ.get("ROLLOUT_RELEASE_ID", ""),
            "server": os.environ.get("ROLLOUT_ASGI_SERVER", ""),
            "db_driver": connection.Database.__name__,
            "db_vendor": connection.vendor,
            "docopt": docopt.__version__,
            "site_title": settings.SITE_TITLE,
            "style_url": static("shelf/style.css"),
        }
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def notes(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        try:
            text = request.body.decode().strip()
        except UnicodeDecodeError:
            return JsonResponse({"error": "the note must be UTF-8 text"}, status=400)
        # Checked here because SQLite would store a longer text that PostgreSQL refuses.
        if not text or len(text) > Note._meta.get_field("text").max_length:
            return JsonResponse({"error": "the note must be 1 to 200 characters"}, status=400)
        note = Note.objects.create(text=text)
        return JsonResponse({"id": note.pk, "count": Note.objects.count()}, status=201)
    last = Note.objects.order_by("-created", "-pk").first()
    return JsonResponse({"count": Note.objects.count(), "last": last.text if last else None})


@csrf_exempt
@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    name = request.GET.get("name", "")
    if not _safe(name):
        return JsonResponse({"error": "name must match [A-Za-z0-9._-]+"}, status=400)
    saved = default_storage.save(name, ContentFile(request.body))
    return JsonResponse({"name": saved, "size": default_storage.size(saved)}, status=201)


@require_GET
def media(request: HttpRequest, name: str) -> FileResponse:
    if not _safe(name) or not default_storage.exists(name):
        raise Http404(name)
    return FileResponse(default_storage.open(name), filename=name)
