"""What the frame-exact clip player reads of a clip: the one builder of that payload, for every
page and API that plays a clip (the grading page and API, trainee practice, the clip page and
the field guide).

Blind by construction: media and geometry only. The payload of a clip an expert has not
answered yet carries nothing about its votes, distribution, retirement or any prediction, so
any caller may hand it out before an answer.
"""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import Clip


class ClipPlayerSerializer(serializers.ModelSerializer):
    """A clip as its player shows it (the API's shape, snake_case): nothing about votes."""

    clip_id = serializers.CharField(source="external_id")
    fps = serializers.SerializerMethodField()
    filmstrip_url = serializers.SerializerMethodField()
    crop_url = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()
    video_width = serializers.IntegerField(source="video.width", allow_null=True)
    video_height = serializers.IntegerField(source="video.height", allow_null=True)

    class Meta:
        model = Clip
        fields = [
            "id",
            "clip_id",
            "n_frames",
            "crop_size",
            "fps",
            "filmstrip_url",
            "crop_url",
            "preview_url",
            "track",
            "video_width",
            "video_height",
        ]
        read_only_fields = fields

    def get_fps(self, clip: Clip) -> float:
        return clip.video.fps or 15.0

    def get_filmstrip_url(self, clip: Clip) -> str:
        return clip.filmstrip_file.url

    def get_crop_url(self, clip: Clip) -> str:
        return clip.crop_file.url

    def get_preview_url(self, clip: Clip) -> str:
        return clip.video.preview.url if clip.video.preview else ""


def clip_player(clip: Clip) -> dict[str, object]:
    """The player's options as a page embeds them for player.js (camelCase), from the one
    payload above."""
    data = ClipPlayerSerializer(clip).data
    return {
        "filmstrip": data["filmstrip_url"],
        "nFrames": data["n_frames"],
        "size": data["crop_size"],
        "fps": data["fps"],
        "preview": data["preview_url"],
        "track": data["track"],
        "videoWidth": data["video_width"],
        "videoHeight": data["video_height"],
    }
