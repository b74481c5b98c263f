"""python manage.py run_demo: the web server (gunicorn) and a Celery worker, together.

Ctrl-C stops both. Used by `make demo`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from frontend.management.commands.seed_demo import demo_logins


class Command(BaseCommand):
    help = "Run gunicorn and a Celery worker for the demo; Ctrl-C stops both."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: object, **options: object) -> None:
        bind = f"{options['host']}:{options['port']}"
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo",
             "-Q", "celery,training", "-l", "INFO", "--without-gossip", "--without-mingle"]
        )  # fmt: skip
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--preload", "-b", bind, "-w", "2",
             "--threads", "4", "--access-logfile", "-"]
        )  # fmt: skip
        self.stdout.write(self.style.SUCCESS(f"MERSV demo at http://{bind}/"))
        self.stdout.write(demo_logins())
        self.stdout.write(f"data in {settings.VAR_DIR}; Ctrl-C stops web and worker")
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and worker.poll() is None and web.poll() is None:
                time.sleep(0.5)
        finally:
            for proc in (web, worker):
                if proc.poll() is None:
                    proc.terminate()
            for proc in (web, worker):
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
