import os

from django.core.management.base import BaseCommand

from mediaopt import supervisor


class Command(BaseCommand):
    help = "Run the web server (gunicorn) and the two task clusters together until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--threads", type=int, default=4)

    def handle(self, *args, host, port, web_workers, threads, **options):
        children = [
            supervisor.web_child(host=host, port=port, workers=web_workers, threads=threads),
            # Two queues, each with its own cluster: a click never waits behind a big job.
            supervisor.cluster_child("bulk"),
            supervisor.cluster_child("interactive", "interactive"),
        ]
        self.stdout.write(f"mediaopt on http://{host}:{port}/admin/  (Ctrl-C stops it)")
        raise SystemExit(supervisor.Supervisor(children, log=self.stdout.write).run())
