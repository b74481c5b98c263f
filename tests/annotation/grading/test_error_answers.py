"""Service errors become API answers in one place (`annotation.api_errors`): 400 with the
message, 409 for conflicts (naming the rating of an answer given already), 403 recorded in
the audit log; a refusal that records itself keeps its record when requests are atomic."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from annotation.api_errors import api_exception_handler
from annotation.errors import ConflictError, ServiceError
from annotation.grading.answers import AlreadyAnsweredError, NotOfferedError
from annotation.grading.field_guide import AlreadyReferenceError, NotCuratorError, NotSettledError
from annotation.models import AuditEvent, CannotJudge, Rating
from datasets.practice import AlreadyGradedError
from datasets.services import DatasetError
from modeling.services import TrainingError
from tests.grading_support import client_for, grade_offered, offer, post_json

pytestmark = pytest.mark.django_db

RATINGS = "/api/grading/ratings/"
CANNOT_JUDGE = "/api/grading/cannot-judge/"


def test_every_apps_errors_are_service_errors_and_conflicts_are_conflicts() -> None:
    for error in (DatasetError, TrainingError, NotCuratorError):
        assert issubclass(error, ServiceError) and not issubclass(error, ConflictError)
    conflicts = (
        AlreadyAnsweredError,
        NotOfferedError,
        NotSettledError,
        AlreadyReferenceError,
        AlreadyGradedError,
    )
    for conflict in conflicts:
        assert issubclass(conflict, ConflictError)


def test_a_dataset_error_is_a_400_with_its_message_as_detail() -> None:
    answer = api_exception_handler(
        DatasetError("the number of folds must lie between 2 and 20"), {}
    )
    assert answer is not None and answer.status_code == 400
    assert answer.data == {"detail": "the number of folds must lie between 2 and 20"}


def test_an_answer_given_already_is_a_409_naming_the_rating_only_when_it_was_a_grade(
    make_user, make_clip
) -> None:
    expert = make_user("expert")
    graded, skipped = make_clip(), make_clip()
    rating = grade_offered(expert, graded, "C")
    offer(expert, skipped)
    skip = CannotJudge.objects.create(clip=skipped, rater=expert, reason="out_of_focus")
    answer = api_exception_handler(AlreadyAnsweredError("answered", answer=rating), {})
    assert answer is not None and answer.status_code == 409
    assert answer.data == {"detail": "answered", "rating_id": rating.pk}
    answer = api_exception_handler(AlreadyAnsweredError("answered", answer=skip), {})
    assert answer is not None and (answer.status_code, answer.data) == (409, {"detail": "answered"})


def test_through_the_api_a_second_grade_is_a_409_with_the_first_rating(
    make_user, make_clip
) -> None:
    expert = make_user("expert")
    clip = make_clip()
    first = grade_offered(expert, clip, "B")
    again = post_json(
        client_for(expert), RATINGS, {"clip_id": clip.external_id, "grade": "D", "time_spent_ms": 9}
    )
    assert again.status_code == 409
    assert set(again.json()) == {"detail", "rating_id"} and again.json()["rating_id"] == first.pk
    assert Rating.objects.get(pk=first.pk).grade == "B"


def test_through_the_api_a_service_refusal_is_a_400_with_detail(make_user, make_clip) -> None:
    expert = make_user("expert")
    clip = make_clip()
    offer(expert, clip)
    body = {"clip_id": clip.external_id, "reason": "other", "note": ""}
    refused = post_json(client_for(expert), CANNOT_JUDGE, body)
    assert refused.status_code == 400
    assert list(refused.json()) == ["detail"] and "note" in refused.json()["detail"]
    assert not CannotJudge.objects.exists()


def test_through_the_api_a_403_is_still_recorded_in_the_audit_log(make_user, make_clip) -> None:
    trainee = make_user("trainee")
    clip = make_clip()
    denied = post_json(
        client_for(trainee),
        RATINGS,
        {"clip_id": clip.external_id, "grade": "A", "time_spent_ms": 9},
    )
    assert denied.status_code == 403
    event = AuditEvent.objects.get(action="permission_denied", user=trainee)
    assert event.object_id == RATINGS and event.detail["method"] == "POST"


def test_a_service_error_rolls_back_an_atomic_request_and_a_recorded_refusal_does_not(
    monkeypatch,
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    with transaction.atomic():
        api_exception_handler(ServiceError("no"), {})
        assert connection.get_rollback()
        connection.set_rollback(False)
    with transaction.atomic():
        answer = api_exception_handler(NotOfferedError("not on offer"), {})
        assert answer is not None and answer.status_code == 409
        assert not connection.get_rollback()


@pytest.mark.django_db(transaction=True)
def test_with_atomic_requests_the_audit_event_of_a_refused_answer_commits(
    make_user, make_clip, monkeypatch
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    expert = make_user("expert")
    offered, other = make_clip(), make_clip()
    offer(expert, offered)
    client = client_for(expert)
    refused = post_json(
        client, RATINGS, {"clip_id": other.external_id, "grade": "B", "time_spent_ms": 9}
    )
    assert refused.status_code == 409 and list(refused.json()) == ["detail"]
    events = AuditEvent.objects.filter(action="answer_refused", user=expert)
    assert [e.object_id for e in events] == [str(other.pk)]
    assert not Rating.objects.exists()
