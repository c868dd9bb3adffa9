from django.apps import AppConfig


class LibraryConfig(AppConfig):
    """The media library: images, their files and facts, and their current metadata.

    The label is the project's name, as it was when the library lived in the project
    package: table names, migrations, permissions and admin URLs stay as they are.
    """

    name = "mediaopt.library"
    label = "mediaopt"
    verbose_name = "Media library"

    def ready(self) -> None:
        from mediaopt.library import deletion

        deletion.connect(model=self.get_model("MediaAsset"))
