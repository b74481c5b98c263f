from django.db import migrations, models


class Migration(migrations.Migration):
    """A prediction's metadata: the clip's pixel size and, when it lies far outside the pixel
    sizes the model was trained on, the warning that says so (issue 18)."""

    dependencies = [
        ("modeling", "0003_trainingrun_retirement_prior"),
    ]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="metadata",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
