"""python manage.py seed_demo: synthetic clips, 40 experts' votes and one demo user per role.

The data go through the real import path (datasets.importer). A second run reuses what exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from annotation.access.accounts import user_create
from annotation.access.roles import ROLES

DEMO_PASSWORD = "mersv-demo-2024"  # noqa: S105  local demo accounts, printed on purpose
DEMO_VERSION = "demo-v1"
DEMO_BACKBONE = "slowfast"  # the cheapest small preset to train on a CPU
DEMO_EPOCHS = 6
DEMO_PRACTICE_SET = "demo practice"


class Command(BaseCommand):
    help = "Load the demo data set (synthetic MERSV) and create one demo user per role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clips", type=int, default=36)
        parser.add_argument("--votes-per-clip", type=int, default=20)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: object, **options: Any) -> None:
        from simulator.synthetic import SyntheticConfig, generate_dataset

        data_dir = Path(settings.VAR_DIR) / "demo-data"
        if not (data_dir / "ratings.csv").exists():
            self.stdout.write(f"generating {options['clips']} synthetic clips in {data_dir} ...")
            generate_dataset(
                data_dir,
                SyntheticConfig(
                    n_clips=int(options["clips"]),
                    votes_per_clip=int(options["votes_per_clip"]),
                    seed=int(options["seed"]),
                    n_frames=24,
                ),
                progress=True,
            )
        call_command("import_dataset", str(data_dir), stdout=self.stdout)
        User = get_user_model()
        for role in ROLES:
            username = f"demo-{role}"
            if not User.objects.filter(username=username).exists():
                user_create(username=username, role=role, password=DEMO_PASSWORD, validate=False)
        self._seed_practice_set()
        self._seed_field_guide()
        self._seed_model()
        self.stdout.write(self.style.SUCCESS("demo data ready"))
        self.stdout.write(demo_logins())

    def _seed_model(self) -> None:
        """A small trained model on the demo version (reused when one exists), so trainee
        feedback and sample triage show model predictions at once."""
        from modeling.models import JobStatus, TrainingRun

        done = TrainingRun.objects.filter(
            version__name=DEMO_VERSION, status=JobStatus.SUCCEEDED
        ).exists()
        if done:
            return
        self.stdout.write("training a small demo model (a minute or two on a laptop CPU) ...")
        call_command(
            "train", "--dataset", DEMO_VERSION, "--backbone", DEMO_BACKBONE, "--loss", "emd",
            "--epochs", str(DEMO_EPOCHS), "--optimizer", "adam", "--name", "demo-model",
            "--no-progress", stdout=self.stdout,
        )  # fmt: skip

    def _seed_practice_set(self) -> None:
        """A frozen version of the demo clips and a practice set of its settled ones, for
        trainee practice (reused when they exist). The imported votes retire the clips they settle
        first: a practice set takes only clips out of the expert queue for good."""
        call_command("retire_settled", stdout=self.stdout)
        from annotation.models import Clip

        if not Clip.objects.filter(retired_at__isnull=False).exists():
            # Few demo votes settle no clip: the demo closes half of its clips to the expert
            # queue for practice (the other half stays open for the demo expert to grade).
            clips = list(Clip.objects.order_by("external_id").values_list("pk", flat=True))
            Clip.objects.filter(pk__in=clips[: len(clips) // 2]).update(retired_at=timezone.now())
        call_command(
            "build_dataset", DEMO_VERSION, "--no-progress", "--if-missing", stdout=self.stdout
        )
        call_command(
            "open_practice_set", DEMO_PRACTICE_SET, DEMO_VERSION, "--if-missing", stdout=self.stdout
        )

    def _seed_field_guide(self) -> None:
        """Reference clips for the grading page's field guide: per grade, up to two settled
        clips whose panel's most common grade it is, chosen as demo-curator (once)."""
        from annotation.grades import GRADES
        from annotation.grading.field_guide import reference_clip_add
        from annotation.models import Clip, ReferenceClip

        if ReferenceClip.objects.exists():
            return
        curator = get_user_model().objects.get(username="demo-curator")
        chosen: dict[str, int] = dict.fromkeys(GRADES, 0)
        for clip in Clip.objects.filter(retired_at__isnull=False).order_by("external_id"):
            counts = [getattr(clip, f"votes_{g.lower()}") for g in GRADES]
            if not sum(counts):
                continue
            grade = GRADES[counts.index(max(counts))]
            if chosen[grade] < 2:
                reference_clip_add(curator=curator, clip=clip, grade=grade)
                chosen[grade] += 1
        self.stdout.write(f"field guide: {sum(chosen.values())} reference clips")


def demo_logins() -> str:
    lines = ["Demo logins (password for all: " + DEMO_PASSWORD + "):"]
    lines += [f"  demo-{role:8s}" for role in ROLES]
    return "\n".join(lines)
