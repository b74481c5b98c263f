from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0013_rater_model_refit"),
    ]

    operations = [
        migrations.CreateModel(
            name="RetirementPolicy",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("run_id", models.PositiveIntegerField(blank=True, null=True)),
                ("run_name", models.CharField(blank=True, max_length=120)),
                ("prior_weight", models.FloatField(default=0.0)),
                ("prior_fit", models.JSONField(blank=True, default=dict)),
                ("rule", models.JSONField(blank=True, default=dict)),
                ("changed_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("id", 1)), name="retirement_policy_one_row")
                ],
            },
        ),
        migrations.CreateModel(
            name="RetirementPrior",
            fields=[
                (
                    "clip",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="retirement_prior",
                        serialize=False,
                        to="annotation.clip",
                    ),
                ),
                ("run_id", models.PositiveIntegerField()),
                ("p_a", models.FloatField()),
                ("p_b", models.FloatField()),
                ("p_c", models.FloatField()),
                ("p_d", models.FloatField()),
                ("p_e", models.FloatField()),
            ],
        ),
    ]
