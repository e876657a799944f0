"""Voice and language tables, and how voices map to espeak-ng and the synthetic engine."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from emulator import voices


def test_voice_lists() -> None:
    assert voices.CLASSIC_VOICES == ("Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr")
    assert len(voices.HD_VOICES) == len(set(voices.HD_VOICES)) == 30
    assert set(voices.CLASSIC_VOICES) <= set(voices.HD_VOICES)
    assert voices.DEFAULT_VOICE in voices.CLASSIC_VOICES


def test_language_codes() -> None:
    assert len(voices.LANGUAGE_CODES) == len(set(voices.LANGUAGE_CODES)) == 30
    for code in ("en-US", "de-DE", "fr-FR", "ja-JP", "cmn-CN", "ar-XA", "hi-IN"):
        assert code in voices.LANGUAGE_CODES
    assert voices.is_known_language("en-us") and not voices.is_known_language("xx-YY")
    assert not voices.is_known_language(None)


def test_genders_follow_the_published_voices() -> None:
    for name in ("Aoede", "Kore", "Leda", "Zephyr"):
        assert voices.voice_profile(name).gender == "female"
    for name in ("Charon", "Fenrir", "Orus", "Puck"):
        assert voices.voice_profile(name).gender == "male"
    assert sum(g == "female" for g in voices.VOICE_GENDER.values()) == 14


def test_profiles_are_distinct_deterministic_and_case_insensitive() -> None:
    profiles = [voices.voice_profile(v) for v in voices.HD_VOICES]
    assert len({(p.espeak_variant, p.espeak_pitch) for p in profiles}) == 30
    assert len({p.f0_hz for p in profiles}) == 30
    assert voices.voice_profile("kore") == voices.voice_profile("Kore")
    assert voices.voice_profile(None) == voices.voice_profile("") == voices.voice_profile(voices.DEFAULT_VOICE)
    assert voices.voice_profile("Not-A-Voice") == voices.voice_profile("Not-A-Voice")
    assert voices.canonical_voice(" zephyr ") == "Zephyr" and voices.canonical_voice("nope") is None
    for p in profiles:
        low, high = (165, 240) if p.gender == "female" else (85, 140)
        assert low <= p.f0_hz <= high
        assert 0 <= p.espeak_pitch <= 99


def test_language_mapping_falls_back_to_english() -> None:
    assert voices.espeak_language("en-US") == "en-us"
    assert voices.espeak_language("EN_gb") == "en-gb"
    assert voices.espeak_language("de-DE") == "de"
    assert voices.espeak_language("cmn-CN") == "cmn"
    assert voices.espeak_language("zh-TW") == "cmn"
    assert voices.espeak_language("pt-PT") == "pt"
    assert voices.espeak_language("tlh-KX") == "en-us"
    assert voices.espeak_language(None) == "en-us"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not on PATH (apt-get install -y espeak-ng)")
def test_every_mapping_names_an_installed_espeak_voice() -> None:
    listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=True).stdout
    languages = {line.split()[1] for line in listing.splitlines()[1:]}
    variants = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    variant_files = {line.split()[-1].removeprefix("!v/") for line in variants.splitlines()[1:]}
    for code in voices.LANGUAGE_CODES:
        assert voices.espeak_language(code) in languages, code
    for name in voices.HD_VOICES:
        assert voices.voice_profile(name).espeak_variant in variant_files, name
