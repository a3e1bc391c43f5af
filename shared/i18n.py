"""User-facing text in the seed's language (Chinese) with English on request.

A `Message` holds both translations; `pick_language` reads `Accept-Language`.
`error_code` values stay stable English identifiers whatever the language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Language = Literal["zh", "en"]
DEFAULT_LANGUAGE: Language = "zh"


@dataclass(frozen=True)
class Message:
    zh: str
    en: str

    def render(self, language: Language, **params: Any) -> str:
        """The text in `language`; a parameter that is itself a Message (a reason in words)
        is rendered in the same language."""
        text = self.en if language == "en" else self.zh
        if not params:
            return text
        return text.format(
            **{
                name: value.render(language) if isinstance(value, Message) else value
                for name, value in params.items()
            }
        )


def pick_language(accept_language: str | None) -> Language:
    """The best of zh/en for an `Accept-Language` header; Chinese unless English is preferred."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    best: tuple[float, Language] | None = None
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary not in ("zh", "en") or quality <= 0:
            continue
        # Earlier entries win ties, as the header's order expresses preference.
        score = quality - position * 1e-6
        if best is None or score > best[0]:
            best = (score, "en" if primary == "en" else "zh")
    return best[1] if best else DEFAULT_LANGUAGE


class LocalizedError(Exception):
    """An error whose text the caller renders in the reader's language."""

    def __init__(self, message: Message, **params: Any) -> None:
        self.message = message
        self.params = params
        super().__init__(self.render("en"))

    def render(self, language: Language) -> str:
        return self.message.render(language, **self.params)
