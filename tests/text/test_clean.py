import json
import zipfile

import pytest

from shared_data import SHARED_DATA
from lmforge.config import CleanConfig, DataConfig
from lmforge.errors import ConfigError, DataError
from lmforge.text.clean import PRESETS, Cleaner
from lmforge.text.pipeline import clean
from lmforge.text.report import Tally

NLTK_DATA = SHARED_DATA / "nltk_data"


def cleaned(text: str, *steps: str, tally: Tally | None = None, **options) -> str:
    return Cleaner.from_config(CleanConfig(steps=list(steps), **options)).clean_text(text, tally)


@pytest.fixture
def no_nltk(monkeypatch, tmp_path):
    """No NLTK data anywhere nltk would look."""
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("sys.prefix", str(tmp_path))
    monkeypatch.setattr("sys.base_prefix", str(tmp_path))
    monkeypatch.setattr("lmforge.text.wordlists.nltk_data_dirs", lambda: [tmp_path / "none"])


@pytest.fixture
def nltk_english(monkeypatch):
    if not (NLTK_DATA / "corpora" / "stopwords.zip").is_file():
        pytest.skip("shared NLTK stop words not present")
    monkeypatch.setenv("NLTK_DATA", str(NLTK_DATA))


# ---- html ----

def test_html_keeps_text_drops_script_and_style_decodes_entities():
    page = ("<!DOCTYPE html><html><head><title>T</title><style>p {color: red}</style></head><body>"
            "<h1>Title</h1><p>Fish &amp; chips &eacute;t&eacute; &#x263A;</p><script>var x = '<p>no</p>';</script>"
            "<ul><li>one<li>two</ul><noscript>enable js</noscript></body></html>")
    assert cleaned(page, "html") == "Title\nFish & chips été ☺\n\none\ntwo"


def test_html_nested_and_malformed_markup_never_fails():
    assert cleaned("<div><p>unclosed <b>bold <i>both</div></span> tail &amp", "html") == "unclosed bold both tail &"
    assert cleaned("<table><tr><td>a<td>b</table><div><div><div>deep</div></div></div>", "html") == "a\nb\n\ndeep"
    assert cleaned("<p>only <script>code()</script>", "html") == "only"
    tally = Tally()
    assert cleaned("<p><script>all script</script></p>", "html", tally=tally) == ""
    assert tally["html"].removed == 1


def test_plain_text_with_angle_brackets_is_not_parsed_as_html():
    code = "if a<b and c>d: print(x<y)"
    assert cleaned(code, "html") == code
    assert cleaned("AT&T and R&D &amp; more", "html") == "AT&T and R&D & more"  # entities still decoded


# a page whose body is known, around it a cookie banner, a navigation menu and a footer
BODY = ["The lighthouse at Marrow Point was built in 1871 from granite quarried on the island itself, and its lamp "
        "was first lit on a winter evening when the harbour was already frozen.",
        "For sixty years the keepers climbed its one hundred and twelve steps every four hours to wind the clockwork "
        "that turned the lens, and their logbooks record every ship that passed.",
        "The light was automated in 1931, and the keepers' cottage is now a small museum where visitors can read "
        "those logbooks and see the original brass mechanism."]
BOILERPLATE = ["We use cookies to improve your experience.", "Accept all cookies", "Home", "News", "About us",
               "Privacy Policy", "© 2026 Coast Media. All rights reserved."]
PAGE = ("<!DOCTYPE html><html><head><title>Marrow Point</title><script>track()</script></head><body>"
        '<div class="cookie-banner"><p>We use cookies to improve your experience.</p><button>Accept all cookies</button></div>'
        '<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/about">About us</a></li></ul></nav>'
        "<article><h1>Marrow Point</h1>" + "".join(f"<p>{p.replace(chr(39), '&#39;')}</p>" for p in BODY) + "</article>"
        '<footer><a href="/privacy">Privacy Policy</a><p>&copy; 2026 Coast Media. All rights reserved.</p></footer>'
        "</body></html>")


def test_html_main_keeps_the_body_and_drops_navigation_footer_and_cookie_banner():
    tally = Tally()
    main = cleaned(PAGE, "html", tally=tally, html_extract="main")
    assert all(p in main for p in BODY) and not [b for b in BOILERPLATE if b in main], main
    assert "track()" not in main and tally["html"].changed == 1
    text = cleaned(PAGE, "html")  # the default keeps every visible word
    assert all(p in text for p in BODY) and all(b in text for b in BOILERPLATE)


def test_html_main_removes_a_page_without_main_content_and_counts_it():
    page = '<html><body><div><a href="/next">Next page</a></div></body></html>'
    tally = Tally()
    assert cleaned(page, "html", tally=tally, html_extract="main") == "" and tally["html"].removed == 1
    assert cleaned(page, "html") == "Next page"


def test_html_main_gives_fragments_and_plain_text_the_text_extraction():
    # a fragment has no page around its content to tell boilerplate by (trafilatura returns nothing for these)
    for fragment in ["<p>Hello   <b>there</b></p>", "<ul><li>one<li>two</ul>", "AT&T &amp; more", "if a<b and c>d"]:
        assert cleaned(fragment, "html", html_extract="main") == cleaned(fragment, "html")


def test_html_extract_takes_text_or_main_only():
    from lmforge.config import load_config

    with pytest.raises(ConfigError, match="clean.html_extract"):
        load_config(None, ["clean.html_extract=readability"])


# ---- unicode ----

def test_unicode_repairs_mojibake_controls_and_line_breaks():
    assert cleaned("sÃ³ Ã©tÃ© â€œquotedâ€\x9d", "unicode") == "só été “quoted”"
    assert cleaned("line one\r\nline two\x07\x1b[31m red", "unicode") == "line one\nline two red"


def test_unicode_normal_forms():
    assert cleaned("e\u0301te\u0301", "unicode") == "été"  # NFC composes
    assert cleaned("ﬁne ＡＢＣ", "unicode") == "ﬁne ＡＢＣ"  # NFC keeps compatibility forms
    assert cleaned("ﬁne ＡＢＣ", "unicode", unicode_form="NFKC") == "fine ABC"


@pytest.mark.parametrize("text", [
    "日本語のテキストです。句読点も。",  # CJK
    "مرحبا بالعالم، كيف حالك؟",  # right-to-left Arabic
    "שָׁלוֹם עוֹלָם",  # Hebrew with points
    "Emoji stay 😀👍🏽 and flags 🇫🇷 too",
    "Straße, naïve café — “curly” quotes ‘stay’",
])
def test_lm_preset_leaves_clean_text_of_any_script_alone(text):
    assert cleaned(text, *PRESETS["lm"]) == text


# ---- whitespace, case, punctuation, numbers, masks ----

def test_whitespace():
    assert cleaned("  a \u00a0 b\t\tc  \n\n\n\n d \n", "whitespace") == "a b c\n\nd"


def test_lowercase_and_punctuation():
    assert cleaned("Don't STOP—well-known (x)!", "lowercase", "punctuation") == "dont stop well known x"
    assert cleaned("«Bonjour», dit-il… 😀 $5", "punctuation") == "Bonjour dit il 😀 5"


def test_numbers_as_token_or_zeros():
    text = "In 1,984 there were 3.5 cats on floor 1st, mp3 and COVID-19"
    assert cleaned(text, "numbers") == "In xxnum there were xxnum cats on floor 1st, mp3 and COVID-xxnum"
    assert cleaned(text, "numbers", numbers="zero") == "In 0,000 there were 0.0 cats on floor 0st, mp0 and COVID-00"


def test_mask_urls_and_emails_counted():
    tally = Tally()
    text = "See https://example.com/a?b=1, www.example.org. or mail jane.doe+x@mail.example.co.uk!"
    assert cleaned(text, "mask", tally=tally) == "See xxurl, xxurl. or mail xxemail!"
    assert tally["mask"].counts == {"urls": 2, "emails": 1}


def test_masks_survive_lowercase_and_punctuation():
    out = cleaned("Visit HTTP://X.COM/Y now, 42 times", "mask", "numbers", "lowercase", "punctuation")
    assert out == "visit xxurl now xxnum times"


# ---- word steps ----

@pytest.fixture(scope="module")
def speller():
    # edit distance 1 loads the dictionary in a second rather than several
    return Cleaner.from_config(CleanConfig(steps=["spelling"], spelling_max_edit=1))


def test_spelling_corrects_only_unknown_lowercase_words_and_counts(speller):
    tally = Tally()
    out = speller.clean_text("The speling of Valkyria is corect, xxnum and teh cat.", tally)
    assert out == "The spelling of Valkyria is correct, xxnum and the cat."
    assert tally["spelling"].counts["corrections"] == 3


def test_spelling_is_english_only():
    with pytest.raises(ConfigError, match="clean.language"):
        Cleaner.from_config(CleanConfig(steps=["spelling"], language="de"))


def test_stopwords_nltk_english(nltk_english):
    cleaner = Cleaner.from_config(CleanConfig(steps=["stopwords"]))
    assert cleaner.notes["stopwords"].endswith("stopwords.zip:stopwords/english")
    assert cleaner.clean_text("The cat, which I don’t like, sat on the mat") == "cat, like, sat mat"


def test_stopwords_fall_back_to_stopwordsiso_and_say_so(no_nltk):
    cleaner = Cleaner.from_config(CleanConfig(steps=["stopwords"]))
    assert "stopwordsiso en" in cleaner.notes["stopwords"] and "NLTK's list was not found" in cleaner.notes["stopwords"]
    assert cleaner.clean_text("the cat sat") == "cat sat"
    with pytest.raises(ConfigError, match="NLTK's English stop words not found"):
        Cleaner.from_config(CleanConfig(steps=["stopwords"], stopwords="nltk"))


def test_stopwords_from_a_zipped_nltk_folder(no_nltk, monkeypatch, tmp_path):
    root = tmp_path / "nd"
    (root / "corpora").mkdir(parents=True)
    with zipfile.ZipFile(root / "corpora" / "stopwords.zip", "w") as z:
        z.writestr("stopwords/english", "cat\nmat\n")
    monkeypatch.setattr("lmforge.text.wordlists.nltk_data_dirs", lambda: [root])
    assert cleaned("the cat sat on the mat", "stopwords") == "the sat on the"


def test_stopwords_custom_file_and_other_languages(tmp_path):
    words = tmp_path / "stop.txt"
    words.write_text("Sat\n\nmat\n")
    assert cleaned("The cat sat on the mat.", "stopwords", stopwords_file=str(words)) == "The cat on the ."
    assert cleaned("der Hund und die Katze", "stopwords", language="de") == "Hund Katze"
    with pytest.raises(ConfigError, match="stopwords_file"):
        cleaned("x", "stopwords", stopwords_file=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="stopwordsiso has no list"):
        cleaned("x", "stopwords", language="xx")


def test_lemmas_and_stems():
    assert cleaned("the geese were running better", "lemma") == "the goose be run good"
    assert cleaned("der Hunde Häuser", "lemma", language="de") == "der Hund Haus"
    assert cleaned("running cats generously", "stem") == "run cat generous"
    with pytest.raises(ConfigError, match="PyStemmer has no stemmer"):
        cleaned("x", "stem", language="xx")


# ---- guards, presets ----

def test_guards_drop_binary_documents_and_nul_characters():
    tally = Tally()
    cleaner = Cleaner.from_config(CleanConfig(preset="lm"))
    assert cleaner.clean_text(bytes(range(256)).decode("latin-1") * 4, tally) == ""
    assert cleaner.clean_text("\ufffd\ufffd\x00\x01 PNG \ufffd" * 50, tally) == ""
    assert cleaner.clean_text("a\x00b and a stray \ufffd", tally) == "ab and a stray \ufffd"
    assert (tally["binary"].removed, tally["nul"].changed) == (2, 1)


TRICKY = [
    "<p>Hello <b>world</b> &amp; friends</p><script>x()</script>",
    "sÃ³  mojibake\r\n\r\n\r\n\tand tabs",
    "Plain text, already clean.",
    "日本語 مرحبا 😀 “quotes” — dashes",
    "The geese were running; they don't stop at 3.5 km/h! See https://x.org",
]


@pytest.mark.parametrize("preset", ["lm", "classic"])
def test_presets_are_idempotent(preset, nltk_english):
    cleaner = Cleaner.from_config(CleanConfig(preset=preset))
    for text in TRICKY:
        once = cleaner.clean_text(text)
        assert cleaner.clean_text(once) == once


def test_classic_preset(nltk_english):
    out = Cleaner.from_config(CleanConfig(preset="classic")).clean_text(TRICKY[4])
    assert out == "goose run stop 3 5 kilometer h see https x org"


def test_an_unknown_step_is_a_config_error():
    from lmforge.config import load_config

    with pytest.raises(ConfigError, match="clean.steps"):
        load_config(None, ["clean.steps=[html,frobnicate]"])


# ---- files ----

def test_clean_file_to_jsonl_with_report(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"text": "<p>Hello   <b>there</b></p>", "label": "pos", "id": 1},
        {"text": "<script>only()</script>", "label": "neg", "id": 2},
        {"text": "   ", "label": "neg", "id": 3},
        {"text": "plain", "label": "neg", "id": 4},
    ]) + "\n")
    out = tmp_path / "out" / "clean.jsonl"
    report = clean(src, out, CleanConfig(preset="lm"), workers=1, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"text": "Hello there", "label": "pos", "id": 1}, {"text": "plain", "label": "neg", "id": 4}]
    assert (report.documents_in, report.documents_out) == (3, 2)
    assert report.read["empty_documents"] == 1
    saved = json.loads((tmp_path / "out" / "clean.report.json").read_text())
    assert saved["steps"]["html"]["changed"] == 1 and saved["steps"]["html"]["removed"] == 1
    assert saved["steps"]["html"]["examples"][0] == {"before": "<p>Hello   <b>there</b></p>", "after": "Hello   there"}
    assert saved["bytes_in"] > saved["bytes_out"] > 0 and saved["throughput"]["docs_per_s"] > 0
    md = (tmp_path / "out" / "clean.report.md").read_text()
    assert "| html | 1 | 1 |" in md and "(removed)" in md


def test_bad_input_is_counted_never_fatal(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"caf\xe9 au lait\nnul\x00byte\n\n<div><p>broken <b>html</div></i>\n")
    (folder / "b.jsonl").write_text('{"text": "fine"}\nnot json\n[1, 2]\n{"other": "x"}\n{"text": 5}\n{"text": ""}\n')
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 64)
    out = tmp_path / "out.txt"
    report = clean(str(folder), out, CleanConfig(preset="lm"), DataConfig(txt_documents="line"), workers=1,
                   progress=False)
    assert out.read_text() == "caf\ufffd au lait\n\nnulbyte\n\nbroken html\n\nfine\n"
    assert report.read["invalid_utf8_replaced_chars"] == 1
    assert report.read["empty_documents"] == 2  # the blank line and the empty jsonl text
    assert report.read["malformed_records"] == 4 and "b.jsonl line 2: not valid JSON" in report.read["malformed_where"][0]
    assert report.steps["nul"].changed == 1
    report = clean(str(blob), tmp_path / "blob.jsonl", CleanConfig(), workers=1, progress=False)
    assert report.steps["binary"].removed == 1 and report.documents_out == 0


def test_a_long_single_line_is_cleaned_in_pieces_and_joins_back(tmp_path):
    words = " ".join(f"word{i}\t" for i in range(400_000))  # about 4.6 MB on one line: five pieces
    src = tmp_path / "long.txt"
    src.write_text(words + "\n" + "short line\n")
    out = tmp_path / "long.jsonl"
    report = clean(src, out, CleanConfig(preset="lm"), DataConfig(txt_documents="line"), workers=2, progress=False)
    rows = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert rows == [" ".join(f"word{i}" for i in range(400_000)), "short line"]
    assert report.documents_in == 2 and report.steps["whitespace"].changed >= 5


def test_missing_input_and_unwritable_output_fail_before_any_work(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("text\n")
    with pytest.raises(DataError, match="no such file"):
        clean(tmp_path / "missing.txt", tmp_path / "o.jsonl", progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot write there"):
        clean(src, blocker / "o.jsonl", progress=False)
    with pytest.raises(DataError, match="must end in"):
        clean(src, tmp_path / "o.csv", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "in.txt"]


@pytest.mark.slow
def test_a_100_mb_line_streams_in_bounded_memory(tmp_path):
    import resource
    import subprocess
    import sys

    src = tmp_path / "line.txt"
    with open(src, "w") as f:
        for i in range(8_200_000):
            f.write(f"<b>w{i % 97}</b>  word{i}\t" if i % 10 == 0 else f"word{i} ")
        f.write("\n")
    assert src.stat().st_size > 100_000_000
    out = tmp_path / "line.out.txt"
    subprocess.run([sys.executable, "-m", "lmforge", "clean", str(src), str(out), "data.txt_documents=line",
                    "--no-progress"], check=True, capture_output=True)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest single process
    text = out.read_text()
    assert text.count("\n") == 1 and "<b>" not in text and "  " not in text and "\t" not in text
    assert peak_mb < 400, peak_mb
