from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metadata", "0013_claim_index_serves_order"),
    ]

    operations = [
        migrations.AlterField(
            model_name="regenerationjob",
            name="state",
            field=models.CharField(
                choices=[
                    ("draft", "Draft"),
                    ("preparing", "Preparing"),
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("paused", "Paused"),
                    ("completed", "Completed"),
                    ("cancelled", "Cancelled"),
                    ("failed", "Failed"),
                ],
                default="draft",
                max_length=16,
            ),
        ),
    ]
