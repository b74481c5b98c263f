"""python manage.py login_unlock USERNAME [--address ADDRESS]: clear an account's failed-login
counters (audited as `login_unlock`, naming the system account that ran the command)."""

from __future__ import annotations

import ipaddress

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.access.audit import os_user_name
from annotation.access.login_throttle import login_unlock


class Command(BaseCommand):
    help = "Let an account log in again at once: clear its failed-login delays."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--address", help="only the delays of this client address (and the address's own)"
        )

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["username"])
        address = options.get("address")
        if address is not None:
            try:
                address = str(ipaddress.ip_address(str(address)))
            except ValueError:
                raise CommandError(f"--address {address!r} is not an IP address") from None
        cleared = login_unlock(
            username=username, address=address, via="login_unlock", actor=os_user_name()
        )
        self.stdout.write(f"{username}: {cleared} failed-login counter(s) cleared")
