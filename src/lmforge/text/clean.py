"""Text cleaning: optional, ordered steps over a stream of documents, each counted (docs/cleaning.md).

Steps (`clean.steps`, or a preset): `html` (text of HTML, script and style dropped, entities decoded;
selectolax; with `html_extract=main`, a page's main content without its boilerplate, by trafilatura),
`unicode` (mojibake and control characters repaired with ftfy, then NFC or NFKC), `whitespace`, `lowercase`,
`punctuation`, `numbers`, `mask` (URLs and e-mail addresses), `spelling` (symspellpy, only words outside its
dictionary), `stopwords`, `lemma` (simplemma), `stem` (PyStemmer). Presets: `lm` keeps everything a language
model learns from; `classic` prepares bag-of-words features.

Two guards run first whatever the steps: a document that looks binary (over 10% undecodable bytes or
control characters) is removed, and NUL characters are dropped.

Each step returns its input object unchanged when it has nothing to do, and the costly ones look before
they work: ftfy runs only on text that has something it could fix, so the `lm` preset streams at
many MB/s per core.
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Callable

from lmforge.config import CleanConfig
from lmforge.errors import ConfigError
from lmforge.text.records import Doc
from lmforge.text.report import StepTally, Tally

PRESETS: dict[str, tuple[str, ...]] = {
    "lm": ("html", "unicode", "whitespace"),
    # stop words go before punctuation so that "don't" still matches the list
    "classic": ("html", "unicode", "lowercase", "stopwords", "punctuation", "lemma", "whitespace"),
}
GUARDS = ("binary", "nul")
Step = Callable[[str, StepTally], str]


# ---- guards -------------------------------------------------------------------------------------------

_BINARY_SAMPLE = 4096
_BINARY_SHARE = 0.1
_BINARY_MIN = 8  # a stray NUL in a short line is not a binary file
_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1f\ufffd]")  # control characters but \t \n \v \f \r; U+FFFD


def drop_binary(text: str, tally: StepTally) -> str:
    """Remove a document whose start is over 10% undecodable bytes or control characters."""
    sample = text[:_BINARY_SAMPLE]
    if _NOT_TEXT.search(sample) and len(_NOT_TEXT.findall(sample)) > max(_BINARY_SHARE * len(sample), _BINARY_MIN):
        return ""
    return text


def drop_nul(text: str, tally: StepTally) -> str:
    return text.replace("\x00", "") if "\x00" in text else text


# ---- html ---------------------------------------------------------------------------------------------

_ELEMENTS = ("a|abbr|address|article|aside|audio|b|blockquote|body|button|caption|center|code|dd|details|div|dl|"
             "dt|em|fieldset|figcaption|figure|font|footer|form|h[1-6]|head|header|html|i|iframe|label|li|main|"
             "nav|noscript|ol|option|p|pre|q|s|script|section|select|small|span|strong|style|sub|summary|sup|"
             "table|tbody|td|template|textarea|tfoot|th|thead|title|tr|u|ul|video")
# HTML is recognised by a closing tag of a known element, a line-breaking tag, a doctype or a comment, so
# plain text such as "if a<b and c>d" is never parsed as markup.
_HTML = re.compile(rf"</(?:{_ELEMENTS})\s*>|<(?:br|hr|p|li|div|img)\b[^<>]*>|<!doctype|<!--", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_DROPPED_ELEMENTS = ["script", "style", "noscript", "template"]
# a line break before each of these keeps paragraphs, list items and cells apart in the text
_BLOCKS = ("address,article,aside,blockquote,br,caption,dd,details,div,dl,dt,fieldset,figcaption,figure,footer,"
           "form,h1,h2,h3,h4,h5,h6,header,hr,li,main,nav,ol,p,pre,section,summary,table,td,th,tr,ul")
_BLANK_RUNS = re.compile(r"\n[^\S\n]*\n(?:[^\S\n]*\n)+")


def strip_html(text: str, tally: StepTally) -> str:
    """The visible text of an HTML document (script, style dropped; entities decoded; blocks on own lines)."""
    if _HTML.search(text) is None:
        return html.unescape(text) if "&" in text and _ENTITY.search(text) else text
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    tree.strip_tags(_DROPPED_ELEMENTS)
    for node in tree.css(_BLOCKS):
        node.insert_before("\n")
    body = tree.body
    out = body.text() if body is not None else ""
    return _BLANK_RUNS.sub("\n\n", out).strip()


# a whole page, not a fragment: main-content extraction needs the page around the content to tell them apart,
# and trafilatura returns nothing for a short fragment
_PAGE = re.compile(r"<!doctype|<html\b|<body\b", re.IGNORECASE)


def main_content(text: str, tally: StepTally) -> str:
    """The main content of an HTML page, boilerplate (navigation, header, footer, cookie banner, link
    lists) removed by trafilatura; "" (the document removed) where it finds none. Fragments and plain text
    get strip_html."""
    if _HTML.search(text) is None or _PAGE.search(text) is None:
        return strip_html(text, tally)
    from trafilatura import extract

    # favor_precision, as FineWeb's extractor (datatrove) sets it: on built pages it left a half of the
    # boilerplate the defaults leave, for the same body kept (docs/BENCHMARKS.md). No deduplicate: its cache
    # spans documents, so a document's output would depend on the ones before it, their order and the workers.
    return extract(text, favor_precision=True, deduplicate=False) or ""


# ---- unicode ------------------------------------------------------------------------------------------

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


@cache
def _ftfy_triggers() -> re.Pattern:
    """Characters that some ftfy fix (other than mojibake) would change: controls, C1, line separators,
    surrogates, terminal escapes."""
    from ftfy.chardata import CONTROL_CHARS

    chars = "".join(map(chr, CONTROL_CHARS)) + "\r\x1b\x85\u2028\u2029"
    return re.compile("[" + re.escape(chars) + "\x80-\x9f\ud800-\udfff]")


def _may_have_mojibake(text: str) -> bool:
    """ftfy's own mojibake test, run only on the few characters around each non-ASCII stretch (its
    patterns span at most four characters and always hold a non-ASCII one); 5 MB/s becomes hundreds."""
    from ftfy.badness import is_bad

    if text.isascii():
        return False
    return is_bad("\n".join(text[max(0, m.start() - 4):m.end() + 4] for m in _NON_ASCII_RUN.finditer(text)))


class RepairUnicode:
    """Fix mojibake, control characters and line separators (ftfy), then normalise to NFC or NFKC."""

    def __init__(self, form: str):
        from ftfy import TextFixerConfig

        self.form = form
        # HTML is the html step's job; quotes, ligatures and widths carry meaning a model may want (NFKC
        # folds the last two when asked)
        self.fixer = TextFixerConfig(unescape_html=False, fix_latin_ligatures=False, fix_character_width=False,
                                     uncurl_quotes=False, normalization=None, explain=False)

    def __call__(self, text: str, tally: StepTally) -> str:
        if _ftfy_triggers().search(text) or _may_have_mojibake(text):
            import ftfy

            text = ftfy.fix_text(text, self.fixer)
        if not unicodedata.is_normalized(self.form, text):
            text = unicodedata.normalize(self.form, text)
        return text


# ---- whitespace, case, punctuation, numbers, masks ---------------------------------------------------

# every character str.isspace() accepts but " " and "\n", spelled out: a negated class (\S) scans 10x slower
_OTHER_SPACE = re.compile("[\t\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_SPACES = re.compile(" {2,}")


def normalise_whitespace(text: str, tally: StepTally) -> str:
    """One space between words, none at line ends, at most one blank line, none at the ends."""
    if _OTHER_SPACE.search(text):
        text = _OTHER_SPACE.sub(" ", text)
    if "  " in text:
        text = _SPACES.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = "\n".join(line.strip(" ") for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


def lowercase(text: str, tally: StepTally) -> str:
    return text.lower()


_APOSTROPHES = re.compile(r"(?<=\w)['’ʼ](?=\w)")


@cache
def _punctuation() -> re.Pattern:
    """Unicode punctuation (categories P*) and the ASCII symbols of string.punctuation; emoji and other
    symbols stay, as they carry meaning for bag-of-words features."""
    chars = {chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")}
    chars.update("$+<=>^`|~")
    return re.compile("[" + re.escape("".join(sorted(chars))) + "]+")


def remove_punctuation(text: str, tally: StepTally) -> str:
    """Drop apostrophes inside words (don't -> dont), turn other punctuation into spaces."""
    text = _APOSTROPHES.sub("", text)
    return normalise_whitespace(_punctuation().sub(" ", text), tally)


_NUMBER = re.compile(r"(?<![^\W\d_])\d+(?:[.,]\d+)*(?![^\W\d_])")  # not inside a word such as 1st or mp3
_NONZERO_DIGIT = re.compile(r"[^\D0]")


class NormaliseNumbers:
    def __init__(self, mode: str, token: str):
        self.mode, self.token = mode, token

    def __call__(self, text: str, tally: StepTally) -> str:
        if self.mode == "zero":
            return _NONZERO_DIGIT.sub("0", text)
        return _NUMBER.sub(self.token, text)


_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")


class MaskContacts:
    """Replace URLs and e-mail addresses by tokens (privacy, and fewer one-off words)."""

    def __init__(self, url_token: str, email_token: str):
        self.url_token, self.email_token = url_token, email_token

    def __call__(self, text: str, tally: StepTally) -> str:
        if "://" in text or "www." in text.lower():
            text, urls = _URL.subn(self.url_token, text)
            if urls:
                tally.counts["urls"] += urls
        if "@" in text:
            text, emails = _EMAIL.subn(self.email_token, text)
            if emails:
                tally.counts["emails"] += emails
        return text


# ---- word steps ---------------------------------------------------------------------------------------

_WORD = re.compile(r"(\w+(?:['’]\w+)*)")  # split() with this gives the words at odd positions


def _map_words(text: str, fn: Callable[[list[str]], list[str]]) -> str:
    parts = _WORD.split(text)
    parts[1::2] = fn(parts[1::2])
    return "".join(parts)


@cache
def _symspell(max_edit: int):
    """symspellpy with its bundled 82,765-word English frequency dictionary; loading takes seconds, so
    once per process (workers forked after it share it)."""
    from importlib.resources import files

    from symspellpy import SymSpell

    sym = SymSpell(max_dictionary_edit_distance=max_edit, prefix_length=7)
    sym.load_dictionary(str(files("symspellpy") / "frequency_dictionary_en_82_765.txt"), term_index=0, count_index=1)
    return sym


class CorrectSpelling:
    """Replace each lowercase word outside the dictionary by its most frequent closest word. Capitalised
    unknown words are most often names, so they are left alone, as are the mask and number tokens."""

    _MEMO = 1 << 16

    def __init__(self, cfg: CleanConfig):
        if cfg.language != "en":
            raise ConfigError(f"clean.language: the spelling step has an English dictionary only, not {cfg.language!r}")
        self.max_edit = cfg.spelling_max_edit
        self.keep = {cfg.number_token, cfg.url_token, cfg.email_token}
        self.memo: dict[str, str] = {}
        _symspell(self.max_edit)  # load now: a bad install fails before any work, and workers inherit it

    def _correct(self, word: str) -> str:
        if word not in self.memo:
            from symspellpy import Verbosity

            found = _symspell(self.max_edit).lookup(word, Verbosity.TOP, max_edit_distance=self.max_edit)
            if len(self.memo) >= self._MEMO:
                self.memo.clear()
            self.memo[word] = found[0].term if found else word
        return self.memo[word]

    def __call__(self, text: str, tally: StepTally) -> str:
        known = _symspell(self.max_edit).words

        def fix(words: list[str]) -> list[str]:
            out = []
            for w in words:
                if len(w) > 2 and w.isalpha() and w.islower() and w not in known and w not in self.keep:
                    fixed = self._correct(w)
                    if fixed != w:
                        tally.counts["corrections"] += 1
                        w = fixed
                out.append(w)
            return out

        return _map_words(text, fix)


class RemoveStopwords:
    def __init__(self, words: frozenset[str]):
        self.words = words

    def __call__(self, text: str, tally: StepTally) -> str:
        parts = _WORD.split(text)
        words = parts[1::2]
        kept = ["" if w.lower().replace("’", "'") in self.words else w for w in words]
        removed = kept.count("")
        if not removed:
            return text
        tally.counts["words_removed"] += removed
        parts[1::2] = kept
        return normalise_whitespace("".join(parts), tally)


class Lemmatise:
    """simplemma's dictionary lemma of each word (English lemmas come out lowercase)."""

    def __init__(self, language: str):
        import simplemma

        try:
            simplemma.lemmatize("test", lang=language)
        except ValueError:
            raise ConfigError(f"clean.language: simplemma has no lemmas for {language!r}") from None
        self.language = language

    def __call__(self, text: str, tally: StepTally) -> str:
        from simplemma import lemmatize

        # a lemma of a lowercase word stays lowercase (simplemma capitalises some names: wikipedia -> Wikipedia)
        return _map_words(text, lambda words: [lemmatize(w, lang=self.language).lower() if w.islower()
                                               else lemmatize(w, lang=self.language) for w in words])


class Stem:
    """Snowball stems (PyStemmer); they assume lowercase words, so lowercase first."""

    def __init__(self, language: str):
        import Stemmer

        try:
            self.stemmer = Stemmer.Stemmer(language)
        except KeyError:
            raise ConfigError(f"clean.language: PyStemmer has no stemmer for {language!r}") from None
        self.language = language

    def __reduce__(self):  # the C stemmer does not pickle; a spawned worker builds its own
        return Stem, (self.language,)

    def __call__(self, text: str, tally: StepTally) -> str:
        return _map_words(text, self.stemmer.stemWords)


def build_step(name: str, cfg: CleanConfig, notes: dict) -> Step:
    """The step called `name` (a guard or a CleanStep), set up from cfg; what it loaded (the stop-word
    list) goes into notes."""
    if name == "stopwords":
        from lmforge.text.wordlists import load_stopwords

        words, notes["stopwords"] = load_stopwords(cfg)
        return RemoveStopwords(words)
    makers: dict[str, Callable[[], Step]] = {
        "binary": lambda: drop_binary, "nul": lambda: drop_nul,
        "html": lambda: main_content if cfg.html_extract == "main" else strip_html,
        "unicode": lambda: RepairUnicode(cfg.unicode_form), "whitespace": lambda: normalise_whitespace,
        "lowercase": lambda: lowercase, "punctuation": lambda: remove_punctuation,
        "numbers": lambda: NormaliseNumbers(cfg.numbers, cfg.number_token),
        "mask": lambda: MaskContacts(cfg.url_token, cfg.email_token), "spelling": lambda: CorrectSpelling(cfg),
        "lemma": lambda: Lemmatise(cfg.language), "stem": lambda: Stem(cfg.language),
    }
    return makers[name]()


@dataclass
class Cleaner:
    """The guards and the configured steps, in order; built once, then applied to documents or pieces."""

    names: tuple[str, ...]
    steps: tuple[Step, ...]
    notes: dict

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "Cleaner":
        names = (*GUARDS, *(cfg.steps if cfg.steps is not None else PRESETS[cfg.preset]))
        notes: dict = {"steps": list(names)}
        return cls(names, tuple(build_step(n, cfg, notes) for n in names), notes)

    def clean_text(self, text: str, tally: Tally | None = None) -> str:
        """The cleaned text ("" where a step removed the document)."""
        tally = tally if tally is not None else Tally()
        for name, step in zip(self.names, self.steps):
            before = text
            text = step(text, tally[name])
            if text is not before and text != before:
                if not text or text.isspace():
                    tally[name].note_removed(before)
                    return ""
                tally[name].note_changed(before, text)
        return text

    def clean_piece(self, doc: Doc, tally: Tally) -> str:
        """Clean one piece of a document. A long document is cut at whitespace, which the reader leaves at
        the end of the earlier piece (`records.docs_of_pieces`); it is kept, so that the cleaned pieces
        still join into words and lines."""
        text = self.clean_text(doc.text, tally)
        if text and not doc.last and doc.text[-1:].isspace() and not text[-1:].isspace():
            text += "\n" if "\n" in doc.text[len(doc.text.rstrip()):] else " "
        return text
