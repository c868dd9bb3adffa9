"""Two columns revisions.py keeps on the image for the library's filters at scale, filled from the revisions."""

from django.db import migrations, models
from django.db.models import Max, Min, OuterRef, Subquery

BATCH = 10_000


def fill(apps, schema_editor):
    """The two columns from the revisions they summarise, in batches of ids (short
    transactions at a million images)."""
    MediaAsset = apps.get_model("mediaopt", "MediaAsset")
    MetadataRevision = apps.get_model("metadata", "MetadataRevision")
    bounds = MediaAsset.objects.aggregate(lo=Min("pk"), hi=Max("pk"))
    if bounds["lo"] is None:
        return
    latest_ai = (
        MetadataRevision.objects.filter(asset=OuterRef("pk"), kind="generated")
        .exclude(language="")
        .order_by("-number")
        .values("language")[:1]
    )
    for start in range(bounds["lo"], bounds["hi"] + 1, BATCH):
        batch = MediaAsset.objects.filter(pk__gte=start, pk__lt=start + BATCH)
        batch.filter(current_revision__number__gt=1).update(revised=True)
        batch.filter(
            pk__in=MetadataRevision.objects.filter(kind="generated")
            .exclude(language="")
            .values("asset_id")
        ).update(ai_language=Subquery(latest_ai))


class Migration(migrations.Migration):

    dependencies = [
        ('mediaopt', '0005_alt_text_index'),
        ('metadata', '0016_notices'),
    ]

    atomic = False  # each batch commits on its own

    operations = [
        # ALTER TABLE ... ADD COLUMN on both databases: Django's AddField copies an SQLite
        # table for a NOT NULL column, which at a million images takes minutes and drops
        # the search index's triggers (0004) with the old table.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="mediaasset",
                    name="ai_language",
                    field=models.CharField(
                        blank=True, db_default="", editable=False, max_length=35
                    ),
                ),
                migrations.AddField(
                    model_name="mediaasset",
                    name="revised",
                    field=models.BooleanField(db_default=False, editable=False),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE mediaopt_mediaasset"
                    " ADD COLUMN ai_language varchar(35) DEFAULT '' NOT NULL",
                    "ALTER TABLE mediaopt_mediaasset DROP COLUMN ai_language",
                ),
                migrations.RunSQL(
                    "ALTER TABLE mediaopt_mediaasset ADD COLUMN revised bool DEFAULT false NOT NULL",
                    "ALTER TABLE mediaopt_mediaasset DROP COLUMN revised",
                ),
            ],
        ),
        migrations.AddIndex(
            model_name='mediaasset',
            index=models.Index(condition=models.Q(('revised', True)), fields=['created_at', 'id'], name='asset_revised_created'),
        ),
        migrations.AddIndex(
            model_name='mediaasset',
            index=models.Index(fields=['ai_language'], name='asset_ai_language'),
        ),
            migrations.RunPython(fill, migrations.RunPython.noop),
    ]
