from django.apps import AppConfig
from django.db.models.signals import post_migrate

RECOVER_SCHEDULE = "mediaopt.recover"
PRUNE_SCHEDULE = "mediaopt.prune_revisions"
LINT_SCHEDULE = "mediaopt.lint_library"
CACHE_TABLE = "mediaopt.cache_table"


def create_cache_table(*, using: str = "default", **kwargs) -> None:
    """The database cache's table (when the cache is the database), after each migrate.

    django-q2's cluster keeps its stats in the cache: without the table it logs an error
    twice a second, so ``migrate`` alone must leave it in place. createcachetable skips a
    table that exists and caches that are not in the database.
    """
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


def _schedules() -> dict[str, dict]:
    from django_q.models import Schedule

    # With two clusters, django-q2 runs a schedule without a cluster nowhere (cluster_name
    # "bulk" differs from the name): each names the bulk cluster.
    return {
        # Expired leases back, lost runners replaced: every minute.
        RECOVER_SCHEDULE: {
            "func": "metadata.tasks.recover",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
        },
        # Retention from the settings page.
        PRUNE_SCHEDULE: {"func": "metadata.tasks.prune_revisions", "schedule_type": Schedule.DAILY},
        # Rules added later reach old values; the settings page shows the counts.
        LINT_SCHEDULE: {"func": "metadata.tasks.lint_library", "schedule_type": Schedule.DAILY},
    }


def create_schedules(*, using: str = "default", **kwargs) -> None:
    """The app's schedules, created or corrected after each migrate.

    A post_migrate handler rather than a data migration: transactional tests flush tables,
    and this runs again after each flush.
    """
    from django_q.models import Schedule

    for name, fields in _schedules().items():
        Schedule.objects.using(using).update_or_create(
            name=name, defaults={"repeats": -1, "cluster": "bulk", **fields}
        )


def forget_items_of_deleted_assets(*, asset_ids: list[int], **kwargs) -> None:
    """Images deleted from the library take their job items with them (a cascade): their
    jobs stop counting them, in the delete's transaction, a batch at a time
    (mediaopt.library.deletion announces them; metadata.counts.deleted)."""
    from metadata import counts

    counts.deleted(asset_ids=asset_ids)


class MetadataConfig(AppConfig):
    name = "metadata"
    verbose_name = "Metadata"

    def ready(self) -> None:
        # After django_q's own migrations exist; sender=self runs each once per migrate.
        post_migrate.connect(create_schedules, sender=self, dispatch_uid="mediaopt.schedules")
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid=CACHE_TABLE)
        from mediaopt.library.deletion import assets_deleting

        assets_deleting.connect(forget_items_of_deleted_assets, dispatch_uid="mediaopt.job_counts")
