from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from annotation.ingest.kinematics import KINEMATICS_KEYS
from annotation.ingest.selectors import video_partly_failed, video_target_results
from annotation.models import Clip, Video, VideoAttempt


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
    targets = serializers.JSONField(
        required=False,
        help_text='[{"x": 100.5, "y": 80, "external_id": "c1"}]; leave it out to upload first '
        "and tag the targets on the server-made first frame (POST /api/videos/ID/ingest/)",
    )

    def validate_targets(self, value: object) -> list[dict]:
        if value in (None, "", []):
            return []
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


class VideoAttemptSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", default=None)

    class Meta:
        model = VideoAttempt
        fields = [
            "number",
            "status",
            "targets",
            "target_results",
            "error",
            "clip_ids",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class VideoDetailSerializer(VideoSerializer):
    """One video with its first frame, candidate heads and attempt history (curators)."""

    first_frame_url = serializers.SerializerMethodField()
    first_frame_overview_url = serializers.SerializerMethodField()
    attempts = VideoAttemptSerializer(many=True, read_only=True)
    partly_failed = serializers.SerializerMethodField(
        help_text="Ready with the clips it has, but some targets were lost (target_results)"
    )
    target_results = serializers.SerializerMethodField(
        help_text="Per target: result clip, short_clip, lost (error says why), dropped or queued"
    )

    class Meta(VideoSerializer.Meta):
        fields = [
            *VideoSerializer.Meta.fields,
            "first_frame_url",
            "first_frame_overview_url",
            "first_frame_error",
            "candidates",
            "attempts",
            "partly_failed",
            "target_results",
        ]
        read_only_fields = fields

    def get_target_results(self, video: Video) -> list[dict[str, Any]]:
        return video_target_results(video)

    def get_partly_failed(self, video: Video) -> bool:
        return video_partly_failed(video)

    def get_first_frame_url(self, video: Video) -> str | None:
        return video.first_frame.url if video.first_frame else None

    def get_first_frame_overview_url(self, video: Video) -> str | None:
        return video.first_frame_overview.url if video.first_frame_overview else None


class VideoIngestSerializer(serializers.Serializer):
    """The targets to track (head centres in frame 0, px of the full frame; any precision)."""

    targets = TargetSerializer(many=True, allow_empty=False)


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
