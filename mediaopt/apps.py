from django.apps import AppConfig


class MediaoptConfig(AppConfig):
    name = "mediaopt"
    verbose_name = "Media library"
