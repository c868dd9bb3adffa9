"""The metadata app's admin, one module per screen. Importing the package (Django's
admin autodiscovery does) registers every model admin of these modules."""

from metadata.admin import jobs, media, review, revisions, settings  # noqa: F401
