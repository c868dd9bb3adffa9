"""The bulk confirmation page's choices, turned into bulk.BulkOptions."""

from __future__ import annotations

from django import forms

from mediaopt.library.fields import FIELDS, LABELS
from metadata import bulk
from metadata.models import Settings, Strategy

PER_FIELD_CHOICES = [
    (Strategy.FILL_EMPTY.value, "Fill if empty"),
    (Strategy.OVERWRITE.value, "Overwrite"),
]
SHORTFALL_CHOICES = [
    (bulk.PARTIAL, "Process what the credits allow, newest uploads first, then pause"),
    (bulk.DONT_START, "Don't start"),
]


class BulkOptionsForm(forms.Form):
    # Not "fields": a form keeps its fields in self.fields.
    metadata_fields = forms.MultipleChoiceField(
        label="Fields",
        choices=[(name, LABELS[name]) for name in FIELDS],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one field."},
    )
    strategy = forms.ChoiceField(choices=Strategy.choices, widget=forms.RadioSelect)
    language = forms.CharField(
        max_length=35, help_text="Language of the generated text, e.g. en, de, pt-BR."
    )
    force = forms.BooleanField(label="Also replace fields edited by hand", required=False)
    on_shortfall = forms.ChoiceField(
        label="If the credits will not cover it",
        choices=SHORTFALL_CHOICES,
        widget=forms.RadioSelect,
        required=False,
        initial=bulk.PARTIAL,
    )

    def __init__(self, *args, row: Settings, **kwargs) -> None:
        defaults = bulk.BulkOptions.defaults(row)
        kwargs.setdefault(
            "initial",
            {
                "metadata_fields": list(defaults.fields),
                "strategy": defaults.strategy,
                "language": defaults.language,
                "force": False,
                "on_shortfall": bulk.PARTIAL,
            },
        )
        super().__init__(*args, **kwargs)
        for name in FIELDS:
            self.fields[f"per_{name}"] = forms.ChoiceField(
                label=f"{LABELS[name]}: strategy",
                choices=PER_FIELD_CHOICES,
                initial=Strategy.FILL_EMPTY.value,
                required=False,
            )

    def per_field_rows(self) -> list[forms.BoundField]:
        return [self[f"per_{name}"] for name in FIELDS]

    def options(self) -> bulk.BulkOptions:
        data = self.cleaned_data
        chosen = set(data["metadata_fields"])
        return bulk.BulkOptions(
            fields=tuple(name for name in FIELDS if name in chosen),
            strategy=data["strategy"],
            per_field={
                name: data.get(f"per_{name}") or Strategy.FILL_EMPTY.value for name in FIELDS
            },
            force=data["force"],
            language=data["language"].strip(),
        )

    def shortfall(self) -> str:
        return self.cleaned_data.get("on_shortfall") or bulk.PARTIAL
