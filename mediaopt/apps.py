from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project itself, installed only for its management commands (serve, seed_demo);
    it has no models."""

    name = "mediaopt"
    label = "mediaopt_project"
    verbose_name = "mediaopt"
