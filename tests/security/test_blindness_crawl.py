"""The blindness crawl: nothing an expert can open says anything about a clip they have not
answered yet (its votes, distribution, retirement or any model's prediction of it).

Logged in as an expert who holds an unanswered clip X, the crawl requests every route of the
URLconf (walked from the resolver, so a new route is crawled without anyone listing it), each
with every plausible URL argument and with the usual query parameters, plus X's media files.
It does so twice: first while X has no votes and no predictions, then after other experts
voted on X, two training runs predicted it and a curator made the first the production run
of retirement (so X's prediction is its retirement prior, with a prior weight m set). A
response that differs between the two crawls (once CSRF tokens, nonces and time stamps are
masked), or that newly contains one of X's vote shares, predicted probabilities or the prior
weight in any common format, in its body or a header, is a leak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from annotation.models import Clip, Rating
from tests.security.conftest import version_make

pytestmark = pytest.mark.django_db

# X's panel: 11 votes, A..E. Fewer than the votes a clip needs to retire.
PANEL = {"A": 4, "B": 3, "C": 2, "D": 1, "E": 1}
PREDICTIONS = ([0.0417, 0.5813, 0.2391, 0.0862, 0.0517], [0.6127, 0.2276, 0.0913, 0.0466, 0.0218])
PRIOR_WEIGHT = 7.375  # m of the production run, as the retirement rule would count it
EXEMPT_NAMESPACES = {"admin"}  # the Django admin is staff-only (is_staff), tested elsewhere
QUERIES = (
    "",
    "format=json",
    "format=api",
    "format=csv",
    "ordering=-votes_total",
    "ordering=votes_a",
    "limit=1000",
    "page=1",
    # The curators' clip list sorts and filters by the distribution (403 to experts).
    "sort=-agreement&mode=A",
    "sort=-mean&votes_min=1&retired=no",
)
MASKS = (
    (re.compile(rb'(csrfmiddlewaretoken" value=")[^"]+'), rb"\1*"),
    (re.compile(rb'(csrf[-_]?token["\']?\s*[:=]\s*["\']?)[\w-]+', re.I), rb"\1*"),
    (re.compile(rb'nonce="[^"]*"'), b'nonce="*"'),
    (re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?"), b"<time>"),
    (re.compile(rb"\d\d:\d\d(:\d\d)?"), b"<clock>"),
    (re.compile(rb"\d+(\xc2\xa0|\s)(minutes?|seconds?|hours?)"), b"<ago>"),
)
FIELDS_ABOUT_VOTES = (
    b"retired", b"retire", b"settled", b"votes", b"distribution", b"predict", b"panel", b"p_a",
    b"entropy", b"consensus", b"majority", b"prior", b"posterior",
)  # fmt: skip
VOLATILE_HEADERS = {"date", "set-cookie", "content-length", "etag", "last-modified", "expires"}


@dataclass
class Crawl:
    responses: dict[str, tuple[int, bytes, bytes]]  # url -> (status, masked body, headers)


def _route_patterns() -> list[tuple[str, URLPattern]]:
    """Every (prefix + pattern, URLPattern) of the URLconf outside the exempt namespaces."""
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace not in EXEMPT_NAMESPACES:
                    walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                found.append((prefix + str(pattern.pattern), pattern))

    walk(get_resolver().url_patterns, "")
    return found


def _fill(route: str, candidates: dict[str, list[str]]) -> list[str]:
    """Every URL of a route pattern (`videos/<int:pk>/`) with each candidate argument value."""
    if route.startswith("^"):
        raise AssertionError(f"regex route {route}: give the crawl a way to fill it")
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    missing = [n for n in names if n not in candidates]
    assert not missing, f"the crawl has no values for {missing} of route {route}: add them"
    urls = []
    for values in product(*(candidates[n] for n in names)):
        url = route
        for name, value in zip(names, values, strict=True):
            url = re.sub(rf"<(?:\w+:)?{name}>", value, url, count=1)
        urls.append("/" + url)
    return urls


def _mask(raw: bytes) -> bytes:
    for pattern, replacement in MASKS:
        raw = pattern.sub(replacement, raw)
    return raw


def _markers() -> list[bytes]:
    """X's vote shares and predicted probabilities as pages and APIs write numbers."""
    total = sum(PANEL.values())
    shares = [n / total for n in PANEL.values() if n > 1]
    values = shares + [p for prediction in PREDICTIONS for p in prediction if p > 0.2]
    found: set[str] = {repr(PRIOR_WEIGHT), f"{PRIOR_WEIGHT:g}", f"{PRIOR_WEIGHT:.2f}"}
    for p in values:
        found |= {repr(p), f"{p:.4f}", f"{p:.3f}", f"{100 * p:.1f}%", f"{100 * p:.2f}"}
    return sorted(s.encode() for s in found)


def _crawl(client: Client, urls: list[str]) -> Crawl:
    responses = {}
    for url in urls:
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        headers = b"\n".join(
            f"{k.lower()}: {v}".encode()
            for k, v in sorted(response.headers.items())
            if k.lower() not in VOLATILE_HEADERS
        )
        responses[url] = (response.status_code, _mask(body), headers)
    return Crawl(responses)


def _media_paths(clip: Clip) -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    files = [clip.filmstrip_file, clip.crop_file, clip.video.preview]
    return [str(Path(f.path).relative_to(root)) for f in files if f]


@pytest.fixture
def blind_world(make_user, make_clip, settings, tmp_path):
    """An expert holding the unanswered clip X; the objects every route's arguments name."""
    from modeling.models import TrainingRun

    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.REPEAT_RATE = 0.0  # the queue's answer must not change by chance between crawls
    settings.RETIRE_MIN_VOTES = 1000
    curator = make_user("curator", username="crawl-curator")
    expert = make_user("expert", username="crawl-expert")
    answered, x = make_clip(), make_clip()
    client = Client()
    client.force_login(expert)
    # The expert answers one clip (so their pages have something of their own) and is then
    # served X, which stays held for them while the crawls run.
    for clip in (answered, x):
        served = client.get("/api/grading/next/").json()
        assert served["clip_id"] == clip.external_id, "the queue should serve the oldest clip"
        if clip is answered:
            body = {"clip_id": clip.external_id, "grade": "B", "time_spent_ms": 900}
            assert client.post("/api/grading/ratings/", body, "application/json").status_code == 201
    version = version_make("crawl-version", curator)
    runs = [
        TrainingRun.objects.create(
            version=version, name=f"crawl-run-{i}", config={}, n_folds=3, created_by=curator,
            status="succeeded", finished_at=timezone.now(),
        )
        for i in range(2)
    ]  # fmt: skip
    return {
        "expert": expert, "client": client, "x": x, "answered": answered, "runs": runs,
        "curator": curator,
    }  # fmt: skip


def _urls(world: dict[str, Any]) -> list[str]:
    x, answered, runs = world["x"], world["answered"], world["runs"]
    own_rating = Rating.objects.get(rater=world["expert"], clip=answered)
    from datasets.models import DatasetVersion

    ids = sorted(
        {x.pk, x.video_id, answered.pk, own_rating.pk, *(r.pk for r in runs)}
        | set(DatasetVersion.objects.values_list("pk", flat=True))
    )
    names = list(DatasetVersion.objects.values_list("name", flat=True))
    candidates = {
        "pk": [str(i) for i in ids],
        "video_id": [str(x.video_id)],
        "clip_id": [x.external_id, str(x.pk)],
        "name": names,
        "other": names,
        "path": _media_paths(x),
        # Direct uploads (curators only): an id that names none, the expert is refused first.
        "token": ["00000000-0000-4000-8000-000000000000"],
    }
    arguments = (
        f"clip={x.external_id}", f"clip={x.pk}", f"search={x.external_id}",
        f"video={x.video_id}", f"run={runs[0].pk}", f"clip_id={x.external_id}",
    )  # fmt: skip
    urls = []
    for route, _pattern in _route_patterns():
        for url in _fill(route, candidates):
            queries = QUERIES + arguments if "<" not in route else ("", "format=json")
            urls += [url + (f"?{q}" if q else "") for q in queries]
    combined = "&".join(("format=json", "limit=1000", *arguments))
    urls += [f"/{route}?{combined}" for route, _ in _route_patterns() if "<" not in route]
    return urls


def _votes_and_predictions(world: dict[str, Any], make_user) -> None:
    """Other experts' votes on X and two runs' predictions of it, written as the services do
    (the ratings and the clip's counts agree)."""
    from modeling.models import Prediction

    x = world["x"]
    for grade, n in PANEL.items():
        for _ in range(n):
            Rating.objects.create(clip=x, rater=make_user("expert"), grade=grade, time_spent_ms=5)
    Clip.objects.filter(pk=x.pk).update(
        **{f"votes_{g.lower()}": n for g, n in PANEL.items()}, votes_total=sum(PANEL.values())
    )
    for run, p in zip(world["runs"], PREDICTIONS, strict=True):
        Prediction.objects.create(
            run=run, clip=x, fold=None, model_version=f"run{run.pk}-crawl",
            **{f"p_{g.lower()}": v for g, v in zip("abcde", p, strict=True)},
        )  # fmt: skip
    # The first run steers retirement: X's prediction becomes its prior, with weight m (set
    # here, as no clip has a full panel to fit it on). The rule stays below X's settling.
    from annotation.models import RetirementPolicy, RetirementPrior
    from modeling.retirement_prior import retirement_run_choose

    retirement_run_choose(run=world["runs"][0], user=world["curator"])
    RetirementPolicy.objects.filter(pk=1).update(prior_weight=PRIOR_WEIGHT)
    assert RetirementPrior.objects.filter(clip=x, run_id=world["runs"][0].pk).exists()


def test_an_expert_can_open_nothing_that_tells_the_votes_or_predictions_of_a_clip_they_hold(
    blind_world, make_user
) -> None:
    urls = _urls(blind_world)
    client = blind_world["client"]
    before = _crawl(client, urls)
    _votes_and_predictions(blind_world, make_user)
    after = _crawl(client, urls)
    markers = _markers()
    leaks = []
    for url in urls:
        status0, body0, headers0 = before.responses[url]
        status1, body1, headers1 = after.responses[url]
        if (status0, body0, headers0) != (status1, body1, headers1):
            leaks.append(f"{url}: the answer changed with X's votes ({status0} -> {status1})")
        for marker in markers:
            if (marker in body1 and marker not in body0) or (
                marker in headers1 and marker not in headers0
            ):
                leaks.append(f"{url}: shows {marker.decode()} (a vote share or prediction of X)")
        # Fields that would carry X's state even where it reads the same in both crawls (an
        # open clip's "retired": false): no JSON answer that names X has a key for them.
        if b"application/json" in headers1 and blind_world["x"].external_id.encode() in body1:
            for field in FIELDS_ABOUT_VOTES:
                if re.search(rb'"[a-z_]*' + field + rb'[a-z_]*"\s*:', body1.lower()):
                    leaks.append(f"{url}: names X beside a key about {field.decode()!r}")
    statuses = [s for s, _, _ in after.responses.values()]
    print(
        f"blindness crawl: {len(_route_patterns())} routes, {len(urls)} requests, "
        f"{sum(200 <= s < 300 for s in statuses)} answered 2xx, {len(leaks)} leaks"
    )
    assert not leaks, "\n".join(leaks[:40])
    # The crawl reached real content, X's media among it: a crawl of refusals proves nothing.
    assert sum(200 <= s < 300 for s in statuses) > 50
    for path in _media_paths(blind_world["x"]):
        assert after.responses[f"/media/{path}"][0] == 200, path
    assert after.responses["/api/grading/next/"][0] == 200


def test_the_crawl_walks_every_route_of_the_urlconf(blind_world) -> None:
    """A route added later is crawled without being listed: the URLs come from the resolver."""
    urls = _urls(blind_world)
    for route, _pattern in _route_patterns():
        prefix = "/" + re.split(r"<", route)[0]
        assert any(u.startswith(prefix) for u in urls), route
