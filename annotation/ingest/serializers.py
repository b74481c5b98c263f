from __future__ import annotations

import json

from rest_framework import serializers

from annotation.ingest.kinematics import KINEMATICS_KEYS
from annotation.models import Clip, Video


class TargetSerializer(serializers.Serializer):
    x = serializers.FloatField(min_value=0)
    y = serializers.FloatField(min_value=0)
    external_id = serializers.RegexField(
        r"^[A-Za-z0-9_.-]{1,64}$", required=False, allow_blank=True, default=""
    )


class VideoUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    patient_code = serializers.RegexField(r"^[A-Za-z0-9_.-]{1,64}$")
    pixel_size_um = serializers.FloatField(min_value=0.001, max_value=100)
    targets = serializers.JSONField(help_text='[{"x": 100.5, "y": 80, "external_id": "c1"}]')

    def validate_targets(self, value: object) -> list[dict]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise serializers.ValidationError("targets must be a JSON list") from None
        if not isinstance(value, list) or not value:
            raise serializers.ValidationError("give at least one target as [{x, y}]")
        if len(value) > 50:
            raise serializers.ValidationError("at most 50 targets per video")
        items = TargetSerializer(data=value, many=True)
        items.is_valid(raise_exception=True)
        return list(items.validated_data)


class VideoSerializer(serializers.ModelSerializer):
    patient_code = serializers.CharField(source="patient.code", read_only=True)
    clip_ids = serializers.SerializerMethodField()

    class Meta:
        model = Video
        fields = [
            "id",
            "patient_code",
            "original_name",
            "status",
            "error",
            "fps",
            "width",
            "height",
            "frame_count",
            "sha256",
            "pixel_size_um",
            "targets",
            "created_at",
            "started_at",
            "finished_at",
            "clip_ids",
        ]
        read_only_fields = fields

    def get_clip_ids(self, video: Video) -> list[str]:
        return [c.external_id for c in video.clips.all()]


class KinematicsSerializer(serializers.Serializer):
    """One float per measure of ``annotation.ingest.kinematics.KINEMATICS_KEYS``, in its order."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {key: serializers.FloatField() for key in KINEMATICS_KEYS}


class ClipMediaMixin(serializers.Serializer):
    crop_url = serializers.SerializerMethodField()
    filmstrip_url = serializers.SerializerMethodField()

    def get_crop_url(self, clip: Clip) -> str:
        return clip.crop_file.url

    def get_filmstrip_url(self, clip: Clip) -> str:
        return clip.filmstrip_file.url


class ClipCuratorSerializer(ClipMediaMixin, serializers.ModelSerializer):
    """Everything about a clip, votes included: for curators and admins only."""

    clip_id = serializers.CharField(source="external_id")
    patient_code = serializers.CharField(source="video.patient.code")
    kinematics = KinematicsSerializer(source="kinematics_dict")
    vote_counts = serializers.SerializerMethodField()

    class Meta:
        model = Clip
        fields = [
            "id",
            "clip_id",
            "video",
            "patient_code",
            "n_frames",
            "crop_size",
            "track",
            "kinematics",
            "vote_counts",
            "votes_total",
            "retired_at",
            "crop_url",
            "filmstrip_url",
            "created_at",
        ]
        read_only_fields = fields

    def get_vote_counts(self, clip: Clip) -> dict[str, int]:
        return dict(zip("ABCDE", clip.vote_counts, strict=True))
