"""Live API voice names and language codes, and how the emulator renders each.

The lists are the public Live API ones (the voices the Live API documents, and the
30 codes of the ``SpeechConfig.languageCode`` comment / Live docs "supported languages").  The server
validates ``speechConfig`` against them; :mod:`emulator.speech` maps each voice to an
espeak-ng variant and pitch (and a fundamental frequency for the synthetic engine)
with :func:`voice_profile`, and each language code to an espeak-ng voice with
:func:`espeak_language`.  Everything here is pure data or a pure function of it, so
the same voice always sounds the same.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

Gender = Literal["female", "male"]

DEFAULT_VOICE = "Puck"
DEFAULT_LANGUAGE = "en-US"

# The eight classic prebuilt Live voices.
CLASSIC_VOICES: tuple[str, ...] = ("Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr")

# The 30 HD (Chirp 3 HD) voices of the native-audio models, alphabetical.
HD_VOICES: tuple[str, ...] = (
    "Achernar", "Achird", "Algenib", "Algieba", "Alnilam", "Aoede", "Autonoe", "Callirrhoe",
    "Charon", "Despina", "Enceladus", "Erinome", "Fenrir", "Gacrux", "Iapetus", "Kore",
    "Laomedeia", "Leda", "Orus", "Pulcherrima", "Puck", "Rasalgethi", "Sadachbia",
    "Sadaltager", "Schedar", "Sulafat", "Umbriel", "Vindemiatrix", "Zephyr", "Zubenelgenubi",
)  # fmt: skip

# Every voice name the emulator accepts (the classic ones are a subset of the HD list).
ALL_VOICES: tuple[str, ...] = HD_VOICES

# Genders as published for the Chirp 3 HD voices (the classic eight as the docs describe them).
_FEMALE: frozenset[str] = frozenset({
    "Achernar", "Aoede", "Autonoe", "Callirrhoe", "Despina", "Erinome", "Gacrux", "Kore",
    "Laomedeia", "Leda", "Pulcherrima", "Sulafat", "Vindemiatrix", "Zephyr",
})  # fmt: skip
VOICE_GENDER: dict[str, Gender] = {v: ("female" if v in _FEMALE else "male") for v in HD_VOICES}

# The 30 BCP-47 codes accepted by Live ``speechConfig.languageCode``.
LANGUAGE_CODES: tuple[str, ...] = (
    "de-DE", "en-AU", "en-GB", "en-IN", "en-US", "es-US", "fr-FR", "hi-IN", "pt-BR", "ar-XA",
    "es-ES", "fr-CA", "id-ID", "it-IT", "ja-JP", "tr-TR", "vi-VN", "bn-IN", "gu-IN", "kn-IN",
    "ml-IN", "mr-IN", "ta-IN", "te-IN", "nl-NL", "ko-KR", "cmn-CN", "pl-PL", "ru-RU", "th-TH",
)  # fmt: skip

# Live language code -> espeak-ng voice (language) name.  Regions espeak-ng lacks map to
# the nearest one it has (en-AU/en-IN -> en-gb, fr-CA -> fr-fr).
_ESPEAK_BY_CODE: dict[str, str] = {
    "de-de": "de", "en-au": "en-gb", "en-gb": "en-gb", "en-in": "en-gb", "en-us": "en-us",
    "es-us": "es-419", "fr-fr": "fr-fr", "hi-in": "hi", "pt-br": "pt-br", "ar-xa": "ar",
    "es-es": "es", "fr-ca": "fr-fr", "id-id": "id", "it-it": "it", "ja-jp": "ja", "tr-tr": "tr",
    "vi-vn": "vi", "bn-in": "bn", "gu-in": "gu", "kn-in": "kn", "ml-in": "ml", "mr-in": "mr",
    "ta-in": "ta", "te-in": "te", "nl-nl": "nl", "ko-kr": "ko", "cmn-cn": "cmn", "pl-pl": "pl",
    "ru-ru": "ru", "th-th": "th",
}  # fmt: skip

# Primary language subtag -> espeak-ng voice, for codes outside the Live list (zh-TW, pt-PT ...).
_ESPEAK_BY_PRIMARY: dict[str, str] = {
    "ar": "ar", "bg": "bg", "bn": "bn", "ca": "ca", "cmn": "cmn", "cs": "cs", "da": "da",
    "de": "de", "el": "el", "en": "en-us", "es": "es", "et": "et", "fa": "fa", "fi": "fi",
    "fr": "fr-fr", "gu": "gu", "he": "he", "hi": "hi", "hr": "hr", "hu": "hu", "id": "id",
    "is": "is", "it": "it", "ja": "ja", "kn": "kn", "ko": "ko", "lt": "lt", "lv": "lv",
    "ml": "ml", "mr": "mr", "ms": "ms", "nb": "nb", "nl": "nl", "no": "nb", "pa": "pa",
    "pl": "pl", "pt": "pt", "ro": "ro", "ru": "ru", "sk": "sk", "sl": "sl", "sr": "sr",
    "sv": "sv", "sw": "sw", "ta": "ta", "te": "te", "th": "th", "tr": "tr", "uk": "uk",
    "ur": "ur", "vi": "vi", "yue": "yue", "zh": "cmn",
}  # fmt: skip

# espeak-ng voice variants (``-v lang+variant``) per gender: the ones pocketsphinx's English
# model recognised best (word recall 0.4-0.9 on short commands at pitch 45-60, against 0.1-0.3
# for Alicia/Andrea/Annie/steph*/Michael and 0.2-0.45 for f3/f4).
_FEMALE_VARIANTS: tuple[str, ...] = ("anika", "f5", "f1", "f2")
_MALE_VARIANTS: tuple[str, ...] = ("m3", "m6", "m1", "m5", "adam")


@dataclass(frozen=True)
class VoiceProfile:
    """How one Live voice is rendered: espeak-ng variant/pitch/speed and a synthetic f0."""

    name: str
    gender: Gender
    espeak_variant: str  # appended to the language: ``-v en-us+f3``
    espeak_pitch: int  # espeak-ng ``-p`` (0-99, default 50)
    espeak_speed_wpm: int  # espeak-ng ``-s``
    f0_hz: float  # fundamental of the synthetic engine


def canonical_voice(name: str | None) -> str | None:
    """The canonical spelling of a known voice name (case-insensitive), else None."""
    if not name:
        return None
    return _BY_LOWER.get(name.strip().lower())


def is_known_voice(name: str | None) -> bool:
    return canonical_voice(name) is not None


def voice_profile(name: str | None) -> VoiceProfile:
    """The rendering profile of ``name``.

    The n-th voice of a gender (in :data:`HD_VOICES` order) gets variant ``n mod len(variants)``,
    espeak pitch ``base + 2n`` and synthetic f0 ``base + step*n``, so every known voice is distinct.
    A missing name means :data:`DEFAULT_VOICE`; unknown names get a stable hash-derived profile.
    """
    canonical = canonical_voice(name) if (name or "").strip() else DEFAULT_VOICE
    if canonical is not None:
        gender = VOICE_GENDER[canonical]
        n = _GENDER_INDEX[canonical]
        key = canonical
    else:
        key = (name or "").strip()
        h = zlib.crc32(key.encode("utf-8"))
        gender = "female" if h & 1 else "male"
        n = (h >> 1) % 16
    if gender == "female":
        variant, pitch, f0 = _FEMALE_VARIANTS[n % len(_FEMALE_VARIANTS)], 38 + 2 * n, 180.0 + 4.0 * n
    else:
        variant, pitch, f0 = _MALE_VARIANTS[n % len(_MALE_VARIANTS)], 22 + 2 * n, 95.0 + 2.5 * n
    return VoiceProfile(key, gender, variant, pitch, 160 + (3 * n) % 21, f0)


def espeak_language(language_code: str | None) -> str:
    """The espeak-ng voice for a BCP-47 code; unknown or missing codes fall back to en-us."""
    if not language_code:
        return "en-us"
    code = language_code.strip().replace("_", "-").lower()
    if code in _ESPEAK_BY_CODE:
        return _ESPEAK_BY_CODE[code]
    return _ESPEAK_BY_PRIMARY.get(code.split("-", 1)[0], "en-us")


def is_known_language(language_code: str | None) -> bool:
    """Whether ``language_code`` is one of the 30 Live codes (case-insensitive)."""
    if not language_code:
        return False
    return language_code.strip().lower() in _LANG_LOWER


_BY_LOWER: dict[str, str] = {v.lower(): v for v in HD_VOICES}
_GENDER_INDEX: dict[str, int] = {
    v: [u for u in HD_VOICES if VOICE_GENDER[u] == VOICE_GENDER[v]].index(v) for v in HD_VOICES
}
_LANG_LOWER: frozenset[str] = frozenset(c.lower() for c in LANGUAGE_CODES)
