"""Which fields a generated result may change.

Rules, in order:
- only the fields the run asked for;
- a field edited by hand is kept unless the run forces it;
- a heuristic value never replaces a value from a better source (AI, embedded, manual);
- "fill empty" writes a field that is empty or holds only a heuristic guess
  (a heuristic value counts as empty, so AI can improve it later);
- "overwrite" writes every allowed field;
- an empty new value never erases a current one, except the intentionally empty alt text
  of a decorative image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mediaopt.library.fields import FIELDS, Source
from metadata.models import Strategy
from metadata.schema import Metadata


@dataclass(frozen=True)
class FieldChange:
    value: str
    source: str


@dataclass(frozen=True)
class Plan:
    changes: dict[str, FieldChange] = field(default_factory=dict)
    is_decorative: bool | None = None  # None: leave as it is

    @property
    def is_empty(self) -> bool:
        return not self.changes and self.is_decorative is None


def field_strategy(name: str, *, strategy: str, per_field: Mapping[str, str] | None) -> str:
    if strategy == Strategy.PER_FIELD:
        return (per_field or {}).get(name, Strategy.FILL_EMPTY)
    return strategy


def may_write(
    *, current_value: str, current_source: str, new_source: str, strategy: str, force: bool
) -> bool:
    if current_source == Source.MANUAL and current_value and not force:
        return False
    if new_source == Source.HEURISTIC:
        return not current_value or current_source in {Source.HEURISTIC, Source.NONE}
    if strategy == Strategy.OVERWRITE:
        return True
    return not current_value or current_source == Source.HEURISTIC


def plan(
    *,
    current_values: Mapping[str, str],
    current_sources: Mapping[str, str],
    current_is_decorative: bool,
    result: Metadata,
    new_source: str,
    fields: tuple[str, ...] = FIELDS,
    strategy: str = Strategy.FILL_EMPTY,
    per_field: Mapping[str, str] | None = None,
    force: bool = False,
) -> Plan:
    changes: dict[str, FieldChange] = {}
    is_decorative: bool | None = None
    for name in fields:
        if name not in result.values:
            continue
        new_value = result.values[name]
        decorative_alt = name == "alt_text" and result.is_decorative
        if not new_value and not decorative_alt:
            continue
        allowed = may_write(
            current_value=current_values[name],
            current_source=current_sources[name],
            new_source=new_source,
            strategy=field_strategy(name, strategy=strategy, per_field=per_field),
            force=force,
        )
        # A decorative image's empty alt text still "fills" an empty field.
        if decorative_alt and current_is_decorative and not current_values[name]:
            allowed = False
        if not allowed:
            continue
        if name == "alt_text" and result.is_decorative != current_is_decorative:
            is_decorative = result.is_decorative
        source = new_source if new_value else Source.NONE
        if new_value == current_values[name] and source == current_sources[name]:
            continue
        changes[name] = FieldChange(value=new_value, source=source)
    return Plan(changes=changes, is_decorative=is_decorative)
