from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from annotation.access.login_throttle import locked_message


class VideoUploadForm(forms.Form):
    """Upload first: the targets are tagged afterwards on the server-made first frame, so a
    large file is sent once, whatever the curator gets wrong while tagging."""

    file = forms.FileField(help_text="An MP4 or AVI full-field microscope video.")
    patient_code = forms.RegexField(
        regex=r"^[A-Za-z0-9_.-]{1,64}$",
        help_text="Pseudonymous patient code: letters, digits, _ . - (no names).",
    )
    pixel_size_um = forms.FloatField(min_value=0.001, max_value=100, initial=0.5)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.MAX_UPLOAD_MB * 1024 * 1024
        if upload.size > limit:
            raise forms.ValidationError(f"the file is larger than {settings.MAX_UPLOAD_MB} MB")
        return upload


class VideoTargetsForm(forms.Form):
    """The targets tagged on a video's first frame (a JSON list the page's canvas writes)."""

    targets = forms.CharField(
        widget=forms.HiddenInput,
        help_text="Click the target sperm on the first frame (several clicks tag several).",
    )

    def clean_targets(self) -> list[dict]:
        raw = self.cleaned_data["targets"]
        try:
            items = json.loads(raw)
        except ValueError:
            raise forms.ValidationError("targets must be a JSON list of {x, y}") from None
        if not isinstance(items, list) or not items:
            raise forms.ValidationError("tag at least one target sperm on the first frame")
        targets = []
        for item in items:
            try:
                x, y = float(item["x"]), float(item["y"])
            except (TypeError, KeyError, ValueError):
                raise forms.ValidationError("each target needs numeric x and y") from None
            targets.append({"x": x, "y": y, "external_id": ""})
        return targets


class LoginForm(AuthenticationForm):
    """Django's login form; a throttled attempt says how long to wait instead of "wrong
    password" (`annotation.access.login_throttle`)."""

    def get_invalid_login_error(self) -> forms.ValidationError:
        locked_s = getattr(self.request, "mersv_login_locked_s", None)
        if locked_s:
            return forms.ValidationError(locked_message(locked_s), code="locked")
        return super().get_invalid_login_error()
