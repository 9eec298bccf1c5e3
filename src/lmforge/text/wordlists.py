"""Word lists: stop words (NLTK's English list, stopwordsiso's for many languages, or the user's own file),
and NLTK's WordNet, where METEOR and EDA find synonyms.

NLTK's stop words are read straight from its folders (NLTK_DATA, then the places nltk itself looks), plain
or zipped, without importing nltk. lmforge ships no list of its own: NLTK's states no licence, so where it
is missing, English falls back to stopwordsiso's MIT-licensed list (1,298 words, far more aggressive than
NLTK's 179), and the report says which list was used. WordNet is read with nltk's own reader from the same
folders; `find_wordnet` gives None where it is not installed.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.config import CleanConfig
from lmforge.errors import ConfigError

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader


def nltk_data_dirs() -> list[Path]:
    """Where nltk looks for its data, in its order (nltk.data.path without importing nltk)."""
    env = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    prefixes = [sys.prefix, getattr(sys, "base_prefix", sys.prefix)]
    return [Path(p) for p in [*env, str(Path.home() / "nltk_data"),
                              *(os.path.join(pre, sub) for pre in prefixes
                                for sub in ("nltk_data", "share/nltk_data", "lib/nltk_data")),
                              "/usr/share/nltk_data", "/usr/local/share/nltk_data",
                              "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]]


def _words(text: str) -> frozenset[str]:
    return frozenset(w.strip().lower() for w in text.splitlines() if w.strip())


def nltk_english() -> tuple[frozenset[str], str] | None:
    """NLTK's English stop words and the file they came from, or None where NLTK's data is not installed."""
    for root in nltk_data_dirs():
        plain = root / "corpora" / "stopwords" / "english"
        if plain.is_file():
            return _words(plain.read_text(encoding="utf-8")), str(plain)
        zipped = root / "corpora" / "stopwords.zip"
        if zipped.is_file():
            try:
                with zipfile.ZipFile(zipped) as z:
                    return _words(z.read("stopwords/english").decode("utf-8")), f"{zipped}:stopwords/english"
            except (KeyError, zipfile.BadZipFile, OSError):
                continue
    return None


def load_stopwords(cfg: CleanConfig) -> tuple[frozenset[str], str]:
    """The stop words the config names (lowercase) and a line saying where they came from."""
    if cfg.stopwords_file:
        path = Path(cfg.stopwords_file)
        try:
            return _words(path.read_text(encoding="utf-8")), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"clean.stopwords_file: {path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    fallback = ""
    if cfg.stopwords != "iso" and cfg.language == "en":
        found = nltk_english()
        if found is not None:
            return found
        if cfg.stopwords == "nltk":
            raise ConfigError("clean.stopwords=nltk: NLTK's English stop words not found (looked in NLTK_DATA, "
                              "~/nltk_data and nltk's other folders; nltk.download('stopwords') installs them); "
                              "or set clean.stopwords=iso")
        fallback = ", as NLTK's list was not found"
    elif cfg.stopwords == "nltk":
        raise ConfigError(f"clean.stopwords=nltk: lmforge reads NLTK's English list only; "
                          f"use clean.stopwords=iso for {cfg.language!r}")
    import stopwordsiso

    if not stopwordsiso.has_lang(cfg.language):
        raise ConfigError(f"clean.language: stopwordsiso has no list for {cfg.language!r}")
    words = frozenset(w.lower() for w in stopwordsiso.stopwords(cfg.language))
    return words, f"stopwordsiso {cfg.language} ({len(words)} words{fallback})"


def find_wordnet() -> WordNetCorpusReader | None:
    """NLTK's WordNet from $NLTK_DATA or nltk's default folders; None when it is not installed."""
    import nltk

    # nltk reads NLTK_DATA once, at import; reading it again here honours a value set later. Being on
    # nltk.data.path is also what authorises a folder for nltk's path-safety checks.
    for folder in reversed(os.environ.get("NLTK_DATA", "").split(os.pathsep)):
        if folder and folder not in nltk.data.path:
            nltk.data.path.insert(0, folder)
    return _load_wordnet(tuple(nltk.data.path))


@functools.lru_cache(maxsize=4)
def _load_wordnet(paths: tuple[str, ...]) -> WordNetCorpusReader | None:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    for resource in ("corpora/wordnet/", "corpora/wordnet.zip/wordnet/"):  # unpacked, or as nltk.download leaves it
        try:
            root = nltk.data.find(resource, paths=list(paths))
        except LookupError:
            continue
        with warnings.catch_warnings():  # it warns that multilingual WordNet is absent; METEOR needs English only
            warnings.simplefilter("ignore")
            return WordNetCorpusReader(root, None)
    return None
