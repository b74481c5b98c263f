"""python manage.py add_user USERNAME --role ROLE (password from MERSV_PASSWORD or a prompt)."""

from __future__ import annotations

import getpass
import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.access.accounts import user_create
from annotation.access.audit import audit_actor, os_user_name
from annotation.access.roles import ROLES, UnknownRoleError
from annotation.errors import ServiceError


class Command(BaseCommand):
    help = "Create a user in one role: expert, curator, trainee or admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, help=f"one of: {', '.join(ROLES)}")

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["username"])
        role = str(options["role"])
        if role not in ROLES:
            raise CommandError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
        password = os.environ.get("MERSV_PASSWORD")
        if not password:
            password = getpass.getpass(f"Password for {username}: ")
            if password != getpass.getpass("Again: "):
                raise CommandError("the two passwords differ")
        try:
            # No account runs a command: the audit log names the system user who ran it.
            with audit_actor(via="add_user", os_user=os_user_name()):
                user_create(username=username, role=role, password=password)
        except (ServiceError, UnknownRoleError) as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError("password refused: " + " ".join(exc.messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"created {role} {username}"))
