from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("modeling", "0002_config_kinematics_features"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="retirement_prior_fit",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="trainingrun",
            name="retirement_prior_weight",
            field=models.FloatField(blank=True, null=True),
        ),
    ]
