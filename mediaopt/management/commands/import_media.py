import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from mediaopt import ingest
from metadata import generation
from metadata.models import Settings


def files_under(paths: list[str]) -> list[Path]:
    """Files named, and every file below the folders named, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder")
    return found


class Command(BaseCommand):
    help = "Import image files or folders (recursively) and generate their metadata."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="Files or folders.")
        parser.add_argument(
            "--no-generate", action="store_true", help="Import only; write no metadata."
        )
        parser.add_argument(
            "--json", action="store_true", help="Print imported, duplicates and rejected."
        )

    def handle(self, *args, paths, no_generate, json: bool, **options):
        files = files_under(paths)
        generate = not no_generate and Settings.objects.current().generate_on_upload
        report = {"imported": [], "duplicates": [], "rejected": [], "generation_failed": []}
        gen_options = generation.GenerationOptions.from_settings(
            Settings.objects.current(), work=generation.gate.WorkKind.IMPORT
        )
        show_bar = not json and options.get("verbosity", 1) > 0
        for path in tqdm(files, unit="file", disable=not show_bar, file=self.stderr):
            outcome = ingest.import_file(source=path, original_name=path.name)
            entry = {**outcome.as_dict(), "path": str(path)}
            if outcome.status == ingest.IMPORTED:
                report["imported"].append(entry)
                if generate:
                    result = generation.generate(asset=outcome.asset, options=gen_options)
                    entry["generated"] = result.ok and result.revision is not None
                    if not result.ok:
                        entry["reason"] = result.reason
                        report["generation_failed"].append(entry)
            elif outcome.status == ingest.DUPLICATE:
                report["duplicates"].append(entry)
            else:
                report["rejected"].append(entry)

        if json:
            self.stdout.write(_json_dumps(report))
            return
        self.stdout.write(
            f"{len(report['imported'])} imported, {len(report['duplicates'])} duplicates, "
            f"{len(report['rejected'])} rejected."
        )
        for entry in report["duplicates"]:
            self.stdout.write(f"  duplicate {entry['path']}: {entry['reason']}")
        for entry in report["rejected"]:
            self.stdout.write(self.style.WARNING(f"  rejected {entry['path']}: {entry['reason']}"))
        for entry in report["generation_failed"]:
            self.stdout.write(
                self.style.WARNING(f"  no metadata for {entry['path']}: {entry['reason']}")
            )


def _json_dumps(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
