from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# Import every view now, while the server starts, not during a user's first request: the
# modeling views bring PyTorch in (seconds), which would stall the first requests of each
# worker. With `gunicorn --preload` this happens once, before the workers fork.
get_resolver().url_patterns  # noqa: B018 (evaluated for its import side effect)
