"""Images leaving the library, announced to the apps above it once per delete, not once
per image.

``assets_deleting`` is sent for every image a delete removes, exactly once, inside the
delete's transaction and before its rows (and their cascades) go: one send with every id
for a queryset's delete (the admin's "delete selected" at any size), one id for anything
else (an image's own delete, a Collector over a few). An app above that keeps something
about images (metadata's job counts) adjusts it for the whole batch in a few statements;
Django's pre_delete, sent per object, would have cost it queries per image.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db.models.signals import pre_delete
from django.dispatch import Signal

# Arguments: asset_ids (a list of primary keys), using (the database alias).
assets_deleting = Signal()

# The queryset whose delete is running and the ids already announced for it: its
# pre_delete for those ids says nothing more.
_announced: ContextVar[tuple[object, frozenset[int]] | None] = ContextVar(
    "mediaopt_assets_announced", default=None
)


@contextmanager
def announced(*, origin: object, asset_ids: list[int], using: str, sender: type) -> Iterator[None]:
    """Announce ``asset_ids`` (all of them, once) before ``origin``'s delete runs inside."""
    assets_deleting.send(sender=sender, asset_ids=asset_ids, using=using)
    token = _announced.set((origin, frozenset(asset_ids)))
    try:
        yield
    finally:
        _announced.reset(token)


def announce_one(*, sender: type, instance, using: str, origin=None, **kwargs) -> None:
    """pre_delete of one image: announced, unless its queryset's delete announced it."""
    batch = _announced.get()
    if batch is not None and batch[0] is origin and instance.pk in batch[1]:
        return
    assets_deleting.send(sender=sender, asset_ids=[instance.pk], using=using)


def connect(*, model: type) -> None:
    pre_delete.connect(announce_one, sender=model, dispatch_uid="mediaopt.assets_deleting")
