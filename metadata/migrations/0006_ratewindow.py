# Written by hand (only the RateWindow model): other pending model changes get their own
# migration.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metadata", "0005_run_regeneration_permission"),
    ]

    operations = [
        migrations.CreateModel(
            name="RateWindow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=64)),
                ("window_start", models.BigIntegerField()),
                ("requests", models.PositiveIntegerField(default=0)),
                ("tokens", models.PositiveBigIntegerField(default=0)),
                ("blocked_until", models.FloatField(default=0.0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("key", "window_start"), name="rate_window_per_key"
                    )
                ],
            },
        ),
    ]
