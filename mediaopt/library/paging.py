"""The library list's paginator: a count that stops at a cap.

An exact COUNT(*) over a million images reads every row (every matching row, for a
filter or a search) on each page view. Counting over ``LIMIT cap + 1`` reads at most that
many and says "more than 10,000" above it; pages past the cap stay reachable by number,
and the page links end in "…" instead of a last page nobody counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator

COUNT_CAP = 10_000


class CappedPaginator(Paginator):
    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        """The exact number up to the cap, ``cap + 1`` above it (one query:
        ``SELECT COUNT(*) FROM (SELECT id … LIMIT cap + 1)``, without the list's order or
        its annotations, which a count does not need)."""
        rows = self.object_list
        if hasattr(rows, "for_count"):  # the library's queryset: a common search's index
            rows = rows.for_count()
        return rows.order_by().values("pk")[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        """More rows than the cap: the count is a bound, not the number."""
        return self.count > self.cap

    @property
    def shown_count(self) -> str:
        """The count in words for the page: "1,234" or "more than 10,000"."""
        return f"more than {self.cap:,}" if self.capped else f"{self.count:,}"

    def validate_number(self, number: object) -> int:
        if not self.capped:
            return super().validate_number(number)
        # Above the cap there is no last page to check against: any page from 1 on.
        try:
            value = int(number)  # type: ignore[call-overload]
        except (TypeError, ValueError) as error:
            raise PageNotAnInteger("That page number is not an integer") from error
        if value < 1:
            raise EmptyPage("That page number is less than 1")
        return value

    def page(self, number: object) -> Page:
        if not self.capped:
            return super().page(number)
        value = self.validate_number(number)
        bottom = (value - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], value, self)

    def get_elided_page_range(
        self, number: int | str = 1, *, on_each_side: int = 3, on_ends: int = 2
    ) -> Iterator[str | int]:
        """Django's page links; above the cap, the first pages, those around ``number``
        and the next ones, then "…" where the last page would be."""
        if not self.capped:
            yield from super().get_elided_page_range(
                number, on_each_side=on_each_side, on_ends=on_ends
            )
            return
        current = self.validate_number(number)
        if current > 1 + on_ends + on_each_side:
            yield from range(1, on_ends + 1)
            yield self.ELLIPSIS
            yield from range(current - on_each_side, current + on_each_side + 1)
        else:
            yield from range(1, current + on_each_side + 1)
        yield self.ELLIPSIS
