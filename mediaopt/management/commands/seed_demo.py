from django.core.management.base import BaseCommand

from mediaopt import demo
from mediaopt.library import ingest
from mediaopt.library.models import MediaAsset
from metadata import intake, runner
from metadata.models import JobKind


class Command(BaseCommand):
    help = "Create the demo admin login and, in an empty library, a few demo images."

    def handle(self, *args, **options):
        username, password = demo.ensure_admin()
        password = password or demo.saved_password()
        if not MediaAsset.objects.exists():
            imported = []
            for image in demo.DEMO_IMAGES:
                outcome = intake.import_file(source=demo.draw(image), original_name=image.name)
                if outcome.asset and outcome.status == ingest.IMPORTED:
                    imported.append(outcome.asset)
            job = intake.draft_for_new_assets(
                kind=JobKind.IMPORT, asset_ids=[asset.pk for asset in imported]
            )
            if job is not None:
                # Inline, before the clusters start: a newcomer's first page already
                # shows the demo images with their metadata.
                runner.run_inline(job)
                self.stdout.write(
                    f"Imported {len(imported)} demo images; metadata written by job #{job.pk}."
                )
            else:
                self.stdout.write(f"Imported {len(imported)} demo images.")
        if password:
            self.stdout.write(self.style.SUCCESS(f"Demo login: {username} / {password}"))
        else:
            self.stdout.write(f"Demo login: {username} (password set earlier; not stored here)")
