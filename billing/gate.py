"""May this installation use AI for this work, and how.

Plans, feature flags, bundled credits and customers' own keys arrive with the credits
issue; until then the answer rests on whether a server key is configured.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.conf import settings


class WorkKind(enum.StrEnum):
    UPLOAD = "upload"
    IMPORT = "import"
    SINGLE = "single"
    BULK = "bulk"


class Mode(enum.StrEnum):
    AI_BUNDLED = "ai_bundled"
    AI_BYOK = "ai_byok"
    HEURISTIC = "heuristic"
    REFUSED = "refused"


@dataclass(frozen=True)
class Decision:
    mode: Mode
    reason: str
    api_key: str = ""

    @property
    def uses_ai(self) -> bool:
        return self.mode in {Mode.AI_BUNDLED, Mode.AI_BYOK}


def decide(*, work: WorkKind, images: int = 1) -> Decision:
    if settings.OPENAI_API_KEY:
        return Decision(
            mode=Mode.AI_BUNDLED,
            reason="AI with the server's OpenAI key.",
            api_key=settings.OPENAI_API_KEY,
        )
    return Decision(
        mode=Mode.HEURISTIC,
        reason=(
            "No OpenAI API key is configured: metadata comes from text embedded in the "
            "files and telling file names only."
        ),
    )
