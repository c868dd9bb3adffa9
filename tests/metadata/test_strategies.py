import pytest

from mediaopt.library.fields import FIELDS, Source
from metadata.models import Strategy
from metadata.schema import Metadata
from metadata.strategies import plan


def current(**values):
    vals = {name: "" for name in FIELDS}
    srcs = {name: "" for name in FIELDS}
    for name, (value, source) in values.items():
        vals[name], srcs[name] = value, source
    return vals, srcs


def run(values, result, *, new_source=Source.AI, decorative=False, **options):
    vals, srcs = current(**values)
    return plan(
        current_values=vals,
        current_sources=srcs,
        current_is_decorative=decorative,
        result=result,
        new_source=new_source,
        **options,
    )


def test_fill_empty_writes_empty_and_heuristic_fields_only():
    result = Metadata(values={"alt_text": "New alt", "title": "New title", "caption": "New cap"})
    p = run(
        {"alt_text": ("Guess", Source.HEURISTIC), "title": ("Kept", Source.EMBEDDED)},
        result,
    )
    assert {k: (c.value, c.source) for k, c in p.changes.items()} == {
        "alt_text": ("New alt", Source.AI),
        "caption": ("New cap", Source.AI),
    }


def test_overwrite_keeps_manual_fields_unless_forced():
    result = Metadata(values={"alt_text": "New alt", "title": "New title"})
    existing = {"alt_text": ("Mine", Source.MANUAL), "title": ("Old", Source.AI)}
    assert set(run(existing, result, strategy=Strategy.OVERWRITE).changes) == {"title"}
    forced = run(existing, result, strategy=Strategy.OVERWRITE, force=True)
    assert set(forced.changes) == {"alt_text", "title"}


def test_per_field_strategy_applies_each_fields_own_rule():
    result = Metadata(values={"alt_text": "New alt", "title": "New title"})
    existing = {"alt_text": ("Old alt", Source.AI), "title": ("Old title", Source.AI)}
    p = run(
        existing,
        result,
        strategy=Strategy.PER_FIELD,
        per_field={"alt_text": Strategy.OVERWRITE, "title": Strategy.FILL_EMPTY},
    )
    assert set(p.changes) == {"alt_text"}


def test_heuristic_never_replaces_a_better_source_even_when_overwriting():
    result = Metadata(values={"alt_text": "Guess", "title": "Guess"})
    existing = {"alt_text": ("From AI", Source.AI), "title": ("Old guess", Source.HEURISTIC)}
    p = run(existing, result, new_source=Source.HEURISTIC, strategy=Strategy.OVERWRITE)
    assert set(p.changes) == {"title"}


def test_only_requested_fields_change():
    result = Metadata(values={"alt_text": "A", "title": "T", "keywords": "a, b, c"})
    assert set(run({}, result, fields=("title",)).changes) == {"title"}


def test_empty_new_value_never_erases_a_current_one():
    result = Metadata(values={"title": ""})
    p = run({"title": ("Old", Source.AI)}, result, strategy=Strategy.OVERWRITE)
    assert p.is_empty


@pytest.mark.parametrize("strategy", [Strategy.FILL_EMPTY, Strategy.OVERWRITE])
def test_decorative_verdict_empties_alt_text_and_marks_the_asset(strategy):
    result = Metadata(values={"alt_text": ""}, is_decorative=True)
    p = run({"alt_text": ("Guess", Source.HEURISTIC)}, result, strategy=strategy)
    assert p.changes["alt_text"].value == ""
    assert p.changes["alt_text"].source == Source.NONE
    assert p.is_decorative is True


def test_decorative_verdict_does_not_touch_kept_alt_text():
    result = Metadata(values={"alt_text": ""}, is_decorative=True)
    p = run({"alt_text": ("Mine", Source.MANUAL)}, result, strategy=Strategy.OVERWRITE)
    assert p.is_empty
