"""The bulk confirmation page's choices, turned into bulk.BulkOptions, and the language
field every form that asks for a language uses."""

from __future__ import annotations

from django import forms

from mediaopt.library.fields import FIELDS, LABELS
from metadata import bulk, language
from metadata.models import Settings, Strategy

PER_FIELD_CHOICES = [
    (Strategy.FILL_EMPTY.value, "Fill if empty"),
    (Strategy.OVERWRITE.value, "Overwrite"),
]
SHORTFALL_CHOICES = [
    (bulk.PARTIAL, "Process what the credits allow, newest uploads first, then pause"),
    (bulk.DONT_START, "Don't start"),
]


class LanguageTagField(forms.CharField):
    """A BCP 47 language tag, validated and written the standard way ("pt_br" -> "pt-BR")."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", 35)
        kwargs.setdefault(
            "help_text", "A language tag: en, de, fr, ja, pt-BR… The text is written in it."
        )
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return value
        try:
            return language.normalize_tag(value)
        except ValueError as error:
            raise forms.ValidationError(str(error), code="language") from error


def language_help(tag: str) -> str:
    """The field's help with the tag's name, e.g. "… Now: German (de)"."""
    try:
        return f"A language tag: en, de, fr, ja, pt-BR… Now: {language.display_name(tag)}."
    except ValueError:
        return "A language tag: en, de, fr, ja, pt-BR…"


class BulkOptionsForm(forms.Form):
    # Not "fields": a form keeps its fields in self.fields.
    metadata_fields = forms.MultipleChoiceField(
        label="Fields",
        choices=[(name, LABELS[name]) for name in FIELDS],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one field."},
    )
    strategy = forms.ChoiceField(choices=Strategy.choices, widget=forms.RadioSelect)
    language = LanguageTagField()
    focus_keywords = forms.CharField(
        required=False,
        max_length=200,
        help_text="Optional: words the text should use where they fit, e.g. a brand or place.",
    )
    review = forms.BooleanField(
        label="Let me review the results before they are written",
        required=False,
        help_text="Each result waits on the review screen; approving costs nothing more.",
    )
    force = forms.BooleanField(label="Also replace fields edited by hand", required=False)
    on_shortfall = forms.ChoiceField(
        label="If the credits will not cover it",
        choices=SHORTFALL_CHOICES,
        widget=forms.RadioSelect,
        required=False,
        initial=bulk.PARTIAL,
    )

    def __init__(self, *args, row: Settings, stored: dict | None = None, **kwargs) -> None:
        defaults = bulk.BulkOptions.defaults(row)
        # A draft may carry options already (the rest of a trial): those are preselected.
        stored = stored or {}
        kwargs.setdefault(
            "initial",
            {
                "metadata_fields": stored.get("fields", list(defaults.fields)),
                "strategy": stored.get("strategy", defaults.strategy),
                "language": stored.get("language", defaults.language),
                "focus_keywords": stored.get("focus_keywords", ""),
                "review": stored.get("review", defaults.review),
                "force": stored.get("force", False),
                "on_shortfall": bulk.PARTIAL,
                **{
                    f"per_{name}": value
                    for name, value in (stored.get("per_field") or {}).items()
                    if value
                },
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["language"].help_text = language_help(defaults.language)
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
            language=data["language"],
            focus_keywords=data.get("focus_keywords", "").strip(),
            review=data.get("review", False),
        )

    def shortfall(self) -> str:
        return self.cleaned_data.get("on_shortfall") or bulk.PARTIAL
