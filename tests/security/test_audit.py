"""The audit log: what is recorded, that it holds no secrets, and that it is append-only."""

from __future__ import annotations

import getpass
import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse

from annotation.access.accounts import user_set_role
from annotation.grading import answers as grading
from annotation.models import AppendOnlyError, AuditEvent
from tests.grading_support import cannot_judge_offered, grade_offered
from tests.security.conftest import MP4_BYTES, PASSWORD, World, client_for


def _actions(**filters: object) -> list[str]:
    """Actions in order, leaving out the logins the test clients make."""
    events = AuditEvent.objects.filter(**filters).exclude(action="login_ok").order_by("id")
    return list(events.values_list("action", flat=True))


def test_logins_failures_and_logouts_are_recorded_with_the_address(world: World) -> None:
    client = Client(REMOTE_ADDR="192.0.2.5")
    client.post(reverse("login"), {"username": "sec-curator", "password": "wrong-password-1"})
    client.post(reverse("login"), {"username": "sec-curator", "password": PASSWORD})
    client.post(reverse("logout"))
    events = list(AuditEvent.objects.filter(username="sec-curator").order_by("id"))
    assert [e.action for e in events][-3:] == ["login_failed", "login_ok", "logout"]
    assert {str(e.ip) for e in events[-3:]} == {"192.0.2.5"}
    assert events[-2].user_id == world.users["curator"].pk and events[-3].user_id is None


def test_no_audit_row_holds_a_password_or_a_token(world: World) -> None:
    secret_wrong = "Wrong-Secret-Pass-42"
    Client().post(reverse("login"), {"username": "sec-expert", "password": secret_wrong})
    Client().post(reverse("login"), {"username": "sec-expert", "password": PASSWORD})
    token = (
        Client()
        .post(reverse("api-token"), {"username": "sec-expert", "password": PASSWORD})
        .json()["token"]
    )
    Client().post(reverse("api-token"), {"username": "sec-expert", "password": secret_wrong})
    assert AuditEvent.objects.count() >= 4
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM annotation_auditevent")
        dump = repr(cursor.fetchall())
    for secret in (PASSWORD, secret_wrong, token):
        assert secret not in dump


def test_grading_answers_are_recorded_in_their_transaction(world: World) -> None:
    expert = world.users["expert"]
    clip = world.objects["clip_free"]
    rating = grade_offered(expert, clip, "D", time_spent_ms=5)
    grading.rating_change(expert=expert, rating=rating, grade="E")
    with pytest.raises(grading.AlreadyAnsweredError):  # rolled back: no event either
        grading.cannot_judge_submit(expert=expert, clip=clip, reason="other", note="no head")
    other_clip = world.objects["rating_other"].clip  # graded by another expert only
    cannot_judge_offered(expert, other_clip, reason="other", note="two heads in the crop")
    assert _actions(user=expert)[-3:] == ["grade_submit", "grade_change", "cannot_judge"]
    change = AuditEvent.objects.filter(action="grade_change").latest("id")
    assert change.detail == {"grade": "E", "previous_grade": "D"}
    assert change.object_type == "annotation.rating" and change.object_id == str(rating.pk)


def test_uploads_downloads_builds_and_training_starts_are_recorded(world: World) -> None:
    from modeling.services import training_run_start

    curator = world.users["curator"]
    client = client_for("curator", world)
    upload = io.BytesIO(MP4_BYTES)
    upload.name = "audit.mp4"
    targets = '[{"x": 1, "y": 1}]'
    client.post(
        reverse("api-videos"),
        {"file": upload, "patient_code": "P-9", "pixel_size_um": "0.5", "targets": targets},
    )
    client.get(reverse("dataset-download", kwargs={"name": "sec-own"}))
    client.get(reverse("api-dataset-download", kwargs={"name": "sec-own"}))
    client.post(reverse("api-datasets"), {"name": "audited"}, content_type="application/json")
    from datasets.services import export_dir_for

    version = world.objects["version_own"]
    (export_dir_for(version) / "splits.csv").write_text("clip_id,fold\n")  # what it checks for
    training_run_start(version=version, config={}, created_by=curator, enqueue=False)
    expected = ["upload", "export_download", "export_download", "dataset_build", "training_start"]
    assert _actions(user=curator) == expected
    upload_event = AuditEvent.objects.get(action="upload")
    assert upload_event.detail["original_name"] == "audit.mp4"


def _role_changes(target, after: int = 0) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(action="role_change", object_id=str(target.pk), id__gt=after)
    return list(events.order_by("id"))


def _audit_dump() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM annotation_auditevent")
        return repr(cursor.fetchall())


def test_role_changes_by_the_service_name_the_account_that_made_them(world: World) -> None:
    expert, admin = world.users["expert"], world.users["admin"]
    user_set_role(user=expert, role="curator")  # nobody named: the target only
    user_set_role(user=expert, role="trainee", by=admin)
    anonymous, named = _role_changes(expert)[-3], _role_changes(expert)[-1]
    assert (anonymous.user_id, anonymous.username) == (None, "")
    assert anonymous.detail == {"change": "add", "groups": ["curator"], "of": "sec-expert"}
    assert (named.user_id, named.username) == (admin.pk, "sec-admin")
    assert (named.object_type, named.object_id) == ("auth.user", str(expert.pk))
    assert named.detail == {
        "change": "add", "groups": ["trainee"], "of": "sec-expert", "via": "service",
    }  # fmt: skip


def test_role_changes_in_the_django_admin_name_the_admin_who_made_them(world: World) -> None:
    expert, admin_user = world.users["expert"], world.users["admin"]
    admin = client_for("admin", world, REMOTE_ADDR="192.0.2.9")
    url = reverse("admin:auth_user_change", args=[expert.pk])
    page = admin.get(url)
    assert page.status_code == 200
    before = AuditEvent.objects.latest("id").pk  # the fixture's own role events come first
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(
        groups=[Group.objects.get(name="trainee").pk], user_permissions=[], is_superuser="on",
        last_login_0="", last_login_1="", date_joined_0="2026-01-01", date_joined_1="00:00:00",
    )  # fmt: skip
    response = admin.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    events = _role_changes(expert, after=before)
    assert {(e.user_id, e.username, str(e.ip)) for e in events} == {
        (admin_user.pk, "sec-admin", "192.0.2.9")
    }
    assert {e.object_type for e in events} == {"auth.user"}
    assert [e.detail for e in events] == [
        {"change": "flags", "is_superuser": True, "of": "sec-expert", "via": "admin"},
        {"change": "remove", "groups": ["expert"], "of": "sec-expert", "via": "admin"},
        {"change": "add", "groups": ["trainee"], "of": "sec-expert", "via": "admin"},
    ]
    assert PASSWORD not in _audit_dump()


def test_add_user_records_the_system_account_that_ran_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "A-new-long-password-77"
    monkeypatch.setenv("MERSV_PASSWORD", secret)
    call_command("add_user", "sec-new", "--role", "curator", stdout=io.StringIO())
    created = get_user_model().objects.get(username="sec-new")
    [event] = _role_changes(created)
    assert (event.user_id, event.username) == (None, "")
    assert (event.object_type, event.object_id) == ("auth.user", str(created.pk))
    assert event.detail == {
        "change": "add", "groups": ["curator"], "of": "sec-new", "via": "add_user",
        "os_user": getpass.getuser(),
    }  # fmt: skip
    assert secret not in _audit_dump()


def test_permission_denials_are_recorded_for_pages_and_the_api(world: World) -> None:
    client = client_for("expert", world)
    assert client.get(reverse("clip-list")).status_code == 403
    assert client.get(reverse("api-clips")).status_code == 403
    denied = AuditEvent.objects.filter(action="permission_denied", user=world.users["expert"])
    assert sorted(denied.values_list("object_id", flat=True)) == ["/api/clips/", "/clips/"]


def test_an_audit_event_cannot_be_changed_or_deleted(world: World) -> None:
    event = AuditEvent.objects.create(action="login_ok", username="x")
    event.username = "y"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(username="y")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
@pytest.mark.parametrize(
    "sql",
    ["UPDATE annotation_auditevent SET username = 'y'", "DELETE FROM annotation_auditevent"],
)
def test_the_database_refuses_raw_updates_and_deletes(sql: str, world: World) -> None:
    AuditEvent.objects.create(action="login_ok", username="x")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEvent.objects.filter(username="x").exists()


def test_the_admin_shows_audit_events_read_only(world: World) -> None:
    event = AuditEvent.objects.create(action="login_ok", username="someone")
    admin = client_for("admin", world)
    assert admin.get(reverse("admin:annotation_auditevent_changelist")).status_code == 200
    assert admin.get(reverse("admin:annotation_auditevent_add")).status_code == 403
    change = admin.get(reverse("admin:annotation_auditevent_change", args=[event.pk]))
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert admin.post(reverse("admin:annotation_auditevent_change", args=[event.pk]),
                      {"username": "z"}).status_code == 403  # fmt: skip
    assert (
        admin.get(reverse("admin:annotation_auditevent_delete", args=[event.pk])).status_code == 403
    )
    event.refresh_from_db()
    assert event.username == "someone"


def test_the_audit_page_filters_and_pages(world: World) -> None:
    for i in range(60):
        AuditEvent.objects.create(action="login_failed", username=f"guess{i % 2}")
    AuditEvent.objects.create(action="upload", username="sec-curator")
    client = client_for("curator", world)
    page = client.get(reverse("audit-log"), {"action": "login_failed", "user": "guess1"})
    assert page.status_code == 200
    events = list(page.context["page"])
    assert len(events) == 30 and {e.username for e in events} == {"guess1"}
    first = client.get(reverse("audit-log"), {"action": "login_failed"})
    assert first.context["page"].paginator.num_pages == 2
    assert "action=login_failed&amp;user=&amp;page=2" in first.content.decode()
    uploads = client.get(reverse("audit-log"), {"action": "upload"}).context["page"]
    assert [e.username for e in uploads] == ["sec-curator"]
