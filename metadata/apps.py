from django.apps import AppConfig
from django.db.models.signals import post_migrate

RECOVER_SCHEDULE = "mediaopt.recover"
PRUNE_SCHEDULE = "mediaopt.prune_revisions"
CACHE_TABLE = "mediaopt.cache_table"


def create_cache_table(*, using: str = "default", **kwargs) -> None:
    """The database cache's table (when the cache is the database), after each migrate.

    django-q2's cluster keeps its stats in the cache: without the table it logs an error
    twice a second, so ``migrate`` alone must leave it in place. createcachetable skips a
    table that exists and caches that are not in the database.
    """
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


def create_recover_schedule(*, using: str = "default", **kwargs) -> None:
    """The every-minute jobs.recover() schedule, created or corrected after each migrate.

    A post_migrate handler rather than a data migration: transactional tests flush tables,
    and this runs again after each flush.
    """
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=RECOVER_SCHEDULE,
        defaults={
            "func": "metadata.tasks.recover",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            # With two clusters, django-q2 runs a schedule without a cluster nowhere
            # (cluster_name "bulk" differs from the name): give it the bulk cluster.
            "cluster": "bulk",
        },
    )


def create_prune_schedule(*, using: str = "default", **kwargs) -> None:
    """The daily revisions.prune() schedule (retention from the settings page), created
    or corrected after each migrate, like the recover schedule."""
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=PRUNE_SCHEDULE,
        defaults={
            "func": "metadata.tasks.prune_revisions",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "cluster": "bulk",
        },
    )


class MetadataConfig(AppConfig):
    name = "metadata"
    verbose_name = "Metadata"

    def ready(self) -> None:
        # After django_q's own migrations exist; sender=self runs each once per migrate.
        post_migrate.connect(create_recover_schedule, sender=self, dispatch_uid=RECOVER_SCHEDULE)
        post_migrate.connect(create_prune_schedule, sender=self, dispatch_uid=PRUNE_SCHEDULE)
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid=CACHE_TABLE)
