from __future__ import annotations

from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation: patients, videos, clips, ratings"

    def ready(self) -> None:
        from django.core import checks
        from django.db.models.signals import post_migrate

        from annotation.access.audit import receivers_connect
        from annotation.access.roles import role_groups_ensure
        from annotation.access.tokens import receivers_connect as token_receivers_connect
        from annotation.ingest.sandbox_check import register as sandbox_check_register
        from annotation.storage_cors import storage_cors_check

        receivers_connect()
        token_receivers_connect()  # a password change or deactivation revokes the API tokens
        sandbox_check_register()  # `check --deploy` warns when decoding cannot be isolated
        # ... and when browsers could not upload straight to the bucket (its CORS rules).
        checks.register(storage_cors_check, checks.Tags.security, deploy=True)

        # Groups and their permissions exist on every database after migrate.
        post_migrate.connect(lambda sender, **kwargs: role_groups_ensure(), sender=self)
