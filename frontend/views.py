"""Server-rendered pages. Views parse, check the role, call a service or selector, render."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage, Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.access.roles import (
    CURATOR,
    EXPERT,
    TRAINEE,
    signed_in,
    user_has_role,
    user_role,
)
from annotation.aggregation import clip_list as clip_listing
from annotation.aggregation import selectors
from annotation.aggregation.retirement_selectors import clip_retirement
from annotation.grades import GRADES
from annotation.grading import field_guide
from annotation.ingest import services
from annotation.ingest.services import direct_uploads_enabled
from annotation.models import Clip, ReferenceClip, Video
from annotation.player import clip_player
from annotation.storage import MEDIA, is_local, object_storage, storage_for
from frontend.charts import distribution_bars
from frontend.forms import VideoTargetsForm, VideoUploadForm
from frontend.refusals import refusal_shown
from modeling.models import JobStatus, TrainingRun

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def role_required(*roles: str, admins: bool = True) -> Callable:
    """Logged-in users of these roles (and admins, unless admins=False) or 403.

    The check is also kept on the view as `role_allows(user)`, so the navigation asks the
    page itself whom it lets in (frontend/navigation.py) instead of guessing. `functools.wraps`
    copies the attribute onto decorators applied above this one (require_GET and the like).
    """

    def allows(user: User | AnonymousUser | None) -> bool:
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        return user_has_role(user, *roles) if admins else user_role(user) in roles

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if not allows(request.user):
                raise PermissionDenied("your role does not allow this page")
            return view(request, *args, **kwargs)

        # Read by frontend/navigation.py; a function attribute the type of a view does not have.
        wrapped.role_allows = allows  # type: ignore[attr-defined]
        return wrapped

    return decorator


@login_required
def home(request: HttpRequest) -> HttpResponse:
    role = user_role(request.user)
    if role == EXPERT and _has_url("grade"):
        return redirect("grade")
    if role == TRAINEE and _has_url("practice"):
        return redirect("practice")
    if role in (CURATOR, "admin"):
        return redirect("clip-list")
    return render(request, "frontend/home.html")


def _has_url(name: str) -> bool:
    from django.urls import NoReverseMatch, reverse

    try:
        reverse(name)
    except NoReverseMatch:
        return False
    return True


@require_GET
@role_required(CURATOR)
def clip_list(request: HttpRequest) -> HttpResponse:
    """Sort, filter and search in the query string (annotation.aggregation.clip_list); a bad
    parameter is answered 400 with the message on the page."""
    context: dict[str, object] = {
        "statuses": Video.Status.choices,
        "modes": clip_listing.MODES,
    }
    with refusal_shown(request) as refused:  # the message names every wrong parameter
        query = clip_listing.clip_list_query_parse(request.GET)
    if refused:
        context |= {"error": True, "query": clip_listing.ClipListQuery(), "form": request.GET}
        return render(request, "frontend/clip_list.html", context, status=400)
    if any(value == "" for value in request.GET.values()):
        # The filter form sends every field; the bookmarkable address keeps only those set.
        canonical = query.url_query()
        return redirect(f"{reverse('clip-list')}?{canonical}" if canonical else "clip-list")
    paginator = Paginator(clip_listing.clip_list_queryset(query), clip_listing.PAGE_SIZE)
    try:
        page = paginator.page(query.page)
    except EmptyPage:
        messages.error(
            request,
            f"page {query.page} does not exist: this list has {paginator.num_pages} page(s).",
        )
        context |= {"error": True, "query": query, "form": query.as_params()}
        return render(request, "frontend/clip_list.html", context, status=400)
    context |= {
        "page": page,
        "query": query,
        "form": query.as_params(),
        "pager_query": query.url_query(page=1),
        "rows": [(clip, _vote_bar(clip)) for clip in page.object_list],
        "headers": [
            (key, label, _sort_link(query, key), _sort_state(query, key))
            for key, label in _CLIP_LIST_COLUMNS
        ],
    }
    return render(request, "frontend/clip_list.html", context)


# The clip list's sortable columns: (sort key of clip_list.SORT_KEYS, header).
_CLIP_LIST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clip", "Clip"),
    ("patient", "Patient"),
    ("status", "Video status"),
    ("votes", "Votes"),
    ("mean", "Mean grade"),
    ("mode", "Mode"),
    ("agreement", "Agreement"),
    ("vcl", "VCL µm/s"),
    ("vsl", "VSL µm/s"),
    ("lin", "LIN"),
    ("retired", "Retired"),
)


def _sort_state(query: clip_listing.ClipListQuery, key: str) -> str:
    """The header's aria-sort value."""
    if query.sort_key != key:
        return "none"
    return "descending" if query.descending else "ascending"


def _sort_link(query: clip_listing.ClipListQuery, key: str) -> str:
    """The header link: sort by `key`, the other way round when it is the sort already; back to
    page 1, filters kept."""
    sort = f"-{key}" if query.sort == key else key
    return "?" + query.url_query(sort=sort, page=1)


_VOTE_BAR_WIDTH = 100


def _vote_bar(clip: Clip) -> list[dict[str, object]]:
    """A stacked bar of the clip's votes, A..E: one segment per grade with votes."""
    total = clip.votes_total
    segments: list[dict[str, object]] = []
    x = 0.0
    for grade, count in zip(GRADES, clip.vote_counts, strict=True):
        if not count or not total:
            continue
        width = _VOTE_BAR_WIDTH * count / total
        segments.append(
            {"grade": grade, "count": count, "x": round(x, 2), "width": round(width, 2)}
        )
        x += width
    return segments


@require_GET
@role_required(CURATOR)
def clip_detail(request: HttpRequest, clip_id: str) -> HttpResponse:
    clip = get_object_or_404(Clip.objects.select_related("video__patient"), external_id=clip_id)
    raw = selectors.clip_distribution(clip)
    rater_model = selectors.rater_model_latest()  # never fitted here: a stale fit is queued
    corrected = selectors.clip_distribution_corrected(clip, snapshot=rater_model.snapshot)
    context = {
        "clip": clip,
        "player": clip_player(clip),
        "distribution": raw,
        "corrected": corrected,
        "rater_model": rater_model,
        "distribution_chart": distribution_bars(
            [("raw votes", raw.p), ("severity-corrected", corrected)]
        ),
        "votes": selectors.clip_votes(clip),
        "repeats": selectors.clip_repeats(clip),
        "cannot_judge": selectors.clip_cannot_judge(clip),
        "reference": ReferenceClip.objects.filter(clip=clip).select_related("chosen_by").first(),
        "grades": GRADES,
        "retirement": clip_retirement(clip),  # curator-only page: the rule's view of the clip
    }
    return render(request, "frontend/clip_detail.html", context)


@require_POST
@role_required(CURATOR)
def clip_reference(request: HttpRequest, clip_id: str) -> HttpResponse:
    """The clip page's field-guide form: action "add" (grade, note) or "remove"."""
    clip = get_object_or_404(Clip, external_id=clip_id)
    action = request.POST.get("action")
    with refusal_shown(request):
        if action == "add":
            reference = field_guide.reference_clip_add(
                curator=signed_in(request),
                clip=clip,
                grade=request.POST.get("grade", ""),
                note=request.POST.get("note", ""),
            )
            messages.success(request, f"Clip {clip_id} is in the guide as grade {reference.grade}.")
        elif action == "remove":
            reference = get_object_or_404(ReferenceClip, clip=clip)
            field_guide.reference_clip_remove(curator=signed_in(request), reference=reference)
            messages.success(request, f"Clip {clip_id} is no longer in the field guide.")
        else:
            messages.error(request, "choose to add the clip to the field guide or remove it")
    return redirect("clip-detail", clip_id=clip_id)


@require_GET
@role_required(CURATOR)
def video_list(request: HttpRequest) -> HttpResponse:
    videos = Video.objects.select_related("patient").order_by("-created_at")
    page = Paginator(videos, 50).get_page(request.GET.get("page"))
    return render(request, "frontend/video_list.html", {"page": page})


def _video_page(request: HttpRequest, video: Video, form: VideoTargetsForm) -> HttpResponse:
    from annotation.ingest.candidates import head_length_px_for
    from annotation.ingest.selectors import video_target_results

    results = video_target_results(video)
    partly_failed = video.status == Video.Status.READY and any(
        r["result"] == "lost" for r in results
    )
    context = {
        "video": video,
        "clips": video.clips.all(),
        "target_results": results,
        "partly_failed": partly_failed,
        "attempts": video.attempts.select_related("requested_by").order_by("-number"),
        "form": form,
        # Targets may be (re)tagged unless an ingestion is queued or running.
        # (A ready video has a first frame only if it was uploaded without targets.)
        "taggable": video.status in (Video.Status.NEEDS_TARGETS, Video.Status.FAILED)
        or (video.status == Video.Status.READY and bool(video.first_frame))
        or partly_failed,
        # Targets with clips stay; the lost ones are replaced by the targets tagged now.
        "kept_targets": [r for r in results if r["result"] in ("clip", "short_clip")],
        "lost_targets": [r for r in results if r["result"] == "lost"],
        # A click snaps to a candidate head within about one head length.
        "snap_radius_px": round(
            head_length_px_for(video.pixel_size_um, head_length_um=settings.INGEST_HEAD_LENGTH_UM),
            2,
        ),
        "waiting_for": _video_waits_for(video),
    }
    return render(request, "frontend/video_detail.html", context)


@require_GET
@role_required(CURATOR)
def video_detail(request: HttpRequest, pk: int) -> HttpResponse:
    video = get_object_or_404(Video.objects.select_related("patient"), pk=pk)
    return _video_page(request, video, VideoTargetsForm())


@require_POST
@role_required(CURATOR)
def video_ingest(request: HttpRequest, pk: int) -> HttpResponse:
    """The video page's targets form: start (or retry) its ingestion with these targets."""
    video = get_object_or_404(Video.objects.select_related("patient"), pk=pk)
    form = VideoTargetsForm(request.POST)
    if form.is_valid():
        with refusal_shown(request, form=form) as refused:
            attempt = services.video_ingest_start(
                video_id=video.pk,
                targets=[services.Target(**t) for t in form.cleaned_data["targets"]],
                requested_by=signed_in(request),
            )
        if not refused:
            messages.success(request, f"Attempt {attempt.number} is queued.")
            return redirect("video-detail", pk=video.pk)
    # The tagged targets stay in the bound form, so nothing has to be clicked again.
    return _video_page(request, video, form)


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("Accept", "").startswith("application/json")


def _video_waits_for(video: Video) -> str:
    """What a pending video waits for, from the database: a running training run, which holds
    the only worker where one worker serves both queues, or else a free worker."""
    if video.status != Video.Status.PENDING:
        return ""
    run = TrainingRun.objects.filter(status=JobStatus.RUNNING).order_by("started_at").first()
    if run is None:
        return "Waiting for a worker to take the video."
    since = f" since {run.started_at:%H:%M} UTC" if run.started_at else ""
    return (
        f"Queued behind a training run: {run.name} (run {run.pk}) is training{since}; "
        "ingestion starts as soon as a worker of the default queue is free."
    )


@require_http_methods(["GET", "POST"])
@role_required(CURATOR)
def video_upload(request: HttpRequest) -> HttpResponse:
    """Upload a video; its page then shows the server-made first frame to tag targets on.

    The page's script sends the form itself and asks for JSON: a refused form then comes
    back as errors shown beside the fields, and the chosen file stays chosen."""
    form = VideoUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        with refusal_shown(request, form=form) as refused:
            video = services.video_create(
                fileobj=upload,
                original_name=upload.name,
                patient_code=form.cleaned_data["patient_code"],
                pixel_size_um=form.cleaned_data["pixel_size_um"],
                uploaded_by=signed_in(request),
            )
        if not refused:
            if _wants_json(request):
                return JsonResponse({"redirect": reverse("video-detail", args=[video.pk])})
            return redirect("video-detail", pk=video.pk)
    if request.method == "POST" and _wants_json(request):
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    return render(
        request,
        "frontend/video_upload.html",
        {
            "form": form,
            "default_pixel_size": settings.DEFAULT_PIXEL_SIZE_UM,
            # Object storage: the page's script sends the file straight to the bucket.
            "direct_upload_url": reverse("api-uploads") if direct_uploads_enabled() else "",
        },
    )


# Media types we serve; anything else goes out as a download, never rendered by the browser.
_MEDIA_TYPES = {".mp4": "video/mp4", ".png": "image/png", ".avi": "video/x-msvideo"}


# Characters no generated media name holds: refused before the path is looked at any further.
_MEDIA_PATH_REFUSED = ("\\", "%", "\x00")


def _media_file(path: str) -> tuple[Path, tuple[str, ...]]:
    """The file a media path names, resolved, and its parts relative to MEDIA_ROOT; else 404.

    Refused before anything is resolved: an absolute path, empty, ``.`` or ``..`` segments,
    backslashes, NUL and other control characters, and ``%`` (the server has decoded the path
    once; a ``%2e`` left in it was encoded twice). The access rule is then applied to the
    resolved path (symlinks followed), never to the text asked for: ``videos/x`` may not be
    reached as ``./videos/x`` or ``clips/../videos/x``.
    """
    if (
        not path
        or path.startswith("/")
        or any(c in path for c in _MEDIA_PATH_REFUSED)
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise Http404("no such file")
    if not is_local(MEDIA):
        # Object storage has no links or dot segments to resolve: the name is the key.
        if not storage_for(MEDIA).exists(path):
            raise Http404("no such file")
        return Path(path), tuple(path.split("/"))
    root = Path(settings.MEDIA_ROOT).resolve()
    try:
        full = (root / path).resolve()
        parts = full.relative_to(root).parts
        found = full.is_file()
    except (OSError, ValueError, RuntimeError):  # a name too long, a link out of the root or a loop
        found = False
    if not found:
        raise Http404("no such file")
    return full, parts


@require_GET
@login_required
def media(request: HttpRequest, path: str) -> HttpResponseBase:
    """Media for logged-in users. Frames and clips hold no votes, so any role may load them;
    full-field source videos and their first-frame previews are for curators.

    With object storage the answer, once the role is checked, is a redirect to a presigned
    URL of the object that expires after MERSV_S3_URL_EXPIRE_S (the bytes never pass through
    the web process)."""
    full, parts = _media_file(path)
    if parts[0] in ("videos", "previews") and not user_has_role(request.user, CURATOR):
        raise PermissionDenied("only curators may download source videos and their previews")
    if not is_local(MEDIA):
        redirect_to = HttpResponseRedirect(object_storage(MEDIA).presigned_url(path))
        redirect_to["Cache-Control"] = "private, no-store"
        return redirect_to
    content_type = _MEDIA_TYPES.get(full.suffix.lower())
    response = FileResponse(
        full.open("rb"),
        content_type=content_type or "application/octet-stream",
        as_attachment=content_type is None,
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response
