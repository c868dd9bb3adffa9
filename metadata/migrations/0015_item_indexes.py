"""Fewer indexes for a pending item to enter: the job FK's own index goes (the claim index
starts with job_id), the lease index and the revision FK's index become partial (claimed
items; items with a revision). The new indexes are built before the old ones go, and the
FKs' indexes are dropped by name (found by introspection) rather than by AlterField,
which on SQLite would copy the whole table twice."""

import django.db.models.deletion
from django.db import migrations, models


def _single_column_indexes(schema_editor, columns):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "metadata_jobitem")
    return [
        name
        for name, info in constraints.items()
        if info["index"]
        and name != "jobitem_revision"  # the partial one this migration makes
        and not info["unique"]
        and not info["primary_key"]
        and info["columns"] in [[column] for column in columns]
    ]


def drop_fk_indexes(apps, schema_editor):
    for name in _single_column_indexes(schema_editor, ["job_id", "revision_id"]):
        schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def make_fk_indexes(apps, schema_editor):
    for column in ("job_id", "revision_id"):
        if not _single_column_indexes(schema_editor, [column]):
            schema_editor.execute(
                f"CREATE INDEX {schema_editor.quote_name('metadata_jobitem_' + column)}"
                f" ON metadata_jobitem ({schema_editor.quote_name(column)})"
            )


class Migration(migrations.Migration):
    dependencies = [
        ("metadata", "0014_job_preparing"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="jobitem",
            index=models.Index(
                condition=models.Q(("state", "claimed")),
                fields=["lease_expires_at"],
                name="jobitem_claimed_lease",
            ),
        ),
        migrations.AddIndex(
            model_name="jobitem",
            index=models.Index(
                condition=models.Q(("revision__isnull", False)),
                fields=["revision"],
                name="jobitem_revision",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="jobitem",
                    name="job",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="metadata.regenerationjob",
                    ),
                ),
                migrations.AlterField(
                    model_name="jobitem",
                    name="revision",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="metadata.metadatarevision",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_fk_indexes, make_fk_indexes)],
        ),
        migrations.RemoveIndex(
            model_name="jobitem",
            name="jobitem_lease",
        ),
    ]
