"""Main-content extraction: how much body text each HTML extractor keeps, how much boilerplate it removes, and
how fast it runs, side by side on pages built with known body and known boilerplate (issue 18, item 7).

Each page holds 1 to 8 real paragraphs (WikiText-2 and SQuAD dev contexts from ../shared/data; a quarter of
the pages hold only one or two) in a body container of one of four kinds (<article>, <main>, a div with a
content class, a div with a meaningless id), with a title and sometimes a byline and subheading (neither
counted), some words of a paragraph inside an inline link, some paragraphs (15%) as a list of their
sentences; on 15% of the pages the paragraphs are text between
<br><br> instead of <p> elements. Around it, a seeded draw of boilerplate blocks,
each in one of three markups (the semantic element, a div with a telling class, a bare div): a site header,
a navigation menu (a ul of links, links separated by pipes, or a table), breadcrumbs, a cookie banner (at
the top or the bottom), a sidebar of link lists, related articles, share buttons, a newsletter box and a
footer with link lists and a copyright line.

Measures, per extractor:
  body kept         share of body sentences (5+ words) found whole in the output (whitespace collapsed)
                    (and of the body sentences in lists)
  pages lost        pages with body sentences of which none was kept
  boilerplate gone  share of boilerplate strings (each link text, banner sentence, button, copyright line)
                    absent from the output; a string counts as present when it occurs more often in the
                    output than in the page's body and title (so "News" inside a body sentence is not held
                    against the extractor); no boilerplate string holds another; also per kind of block
  pages/s           extraction only (the last rows: the whole lm preset, html, unicode and whitespace), the pages cut into five rounds with every extractor run on each round
                    in turn, so that a change of load on a shared machine falls on all of them alike

    .venv/bin/python benchmarks/html_extract.py [--pages 1500] [--seed 0]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Callable

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# ---- body text ----------------------------------------------------------------------------------------

def paragraphs() -> list[str]:
    """Prose paragraphs of 80 to 1,500 characters: WikiText-2 lines and SQuAD dev contexts."""
    wiki = "".join((SHARED / "wikitext-2" / "raw" / f"wiki.{s}.raw").read_text(encoding="utf-8") for s in ("valid", "test"))
    pool = [p.strip() for p in wiki.splitlines() if not p.strip().startswith("=")]
    squad = json.loads((SHARED / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    pool += [p["context"].strip() for a in squad["data"] for p in a["paragraphs"]]
    return [p for p in dict.fromkeys(pool) if 80 <= len(p) <= 1500]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_SPACES = re.compile(r"\s+")


def norm(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def sentences(paragraph: str) -> list[str]:
    return [s for s in map(norm, _SENTENCE_END.split(paragraph)) if len(s.split()) >= 5]


# ---- boilerplate --------------------------------------------------------------------------------------

# (site name, owner): the footer names the owner, so that the header's site name is tested on its own
SITES = [("The Riverside Gazette", "Riverside Media Group"), ("Northfield Daily Ledger", "Ledger Publishing Ltd"),
         ("Open Research Review", "ORR Foundation"), ("Harbour Town Chronicle", "Chronicle Press"),
         ("The Weekly Compass", "Compass Holdings"), ("Atlas Knowledge Hub", "Atlas Learning Inc")]
TAGLINES = ["Independent journalism since 1894", "News, views and the stories behind them",
            "Your trusted source for local news", "Explaining the world, one story at a time"]
SECTIONS = ["Home", "News", "World", "Politics", "Business", "Technology", "Science", "Health", "Sports",
            "Opinion", "Culture", "Travel", "Food & Drink", "Podcasts", "Video", "Weather", "Archive",
            "Subscribe", "Log in", "About us", "Contact", "Events", "Jobs", "Mailing lists"]
# no boilerplate string holds another one, so that each is counted on its own
CRUMBS = ["Front page", "Regional", "Features", "Long reads", "Explainers", "Research notes", "In depth"]
TAGS = ["climate change", "local elections", "space exploration", "music festivals", "public transport",
        "housing market", "school funding", "wildlife"]
FOOTER_LINKS = ["Privacy Policy", "Terms of Use", "Cookie Settings", "Accessibility Statement", "Advertise with us",
                "Sitemap", "Help Centre", "Corrections", "Work for us", "Reach the newsroom", "RSS feeds",
                "Manage subscription"]
COOKIE_TEXTS = ["We use cookies and similar technologies to improve your experience, analyse traffic and show personalised ads.",
                "This website stores cookies on your computer to provide more personalised services to you.",
                "By clicking Accept all, you agree to the storing of cookies on your device to enhance site navigation.",
                "We and our partners process personal data such as your IP address for measurement and advertising."]
COOKIE_BUTTONS = ["Accept all cookies", "Reject non-essential", "Manage preferences", "Cookie policy"]
SIDEBAR_HEADS = ["Most read", "Popular posts", "Trending now", "Editor's picks"]
RELATED_HEADS = ["Related articles", "You may also like", "More from this section", "Recommended for you"]
SHARES = ["Share on Facebook", "Share on X", "Share on LinkedIn", "Email this article", "Print this page",
          "Copy link"]
NEWSLETTER = ["Sign up for our morning briefing", "Get the day's top stories delivered to your inbox every morning.",
              "Sign me up", "You can unsubscribe at any time."]
AUTHORS = ["Jane Holloway", "Marcus Ebert", "Priya Natarajan", "Tom O'Neill", "Sofia Lindqvist"]


class PageBuilder:
    """Seeded pages with known body paragraphs and known boilerplate strings."""

    def __init__(self, pool: list[str], seed: int):
        self.pool, self.rng = pool, random.Random(seed)
        # link titles of sidebars and related articles: the first words of paragraphs never used as body
        self.titles = [" ".join(p.split()[:self.rng.randint(5, 9)]).rstrip(",;:") for p in pool[-3000:]]
        self.body_pool = pool[:-3000]

    def wrap(self, kind: str, classes: list[str], inner: str, element: str) -> str:
        style = self.rng.randrange(3)
        if style == 0:
            return f"<{element}>{inner}</{element}>"
        if style == 1:
            return f'<div class="{self.rng.choice(classes)}">{inner}</div>'
        return f'<div id="b{self.rng.randrange(1000)}">{inner}</div>'

    def links(self, texts: list[str]) -> str:
        style = self.rng.randrange(3)
        if style == 0:
            return "<ul>" + "".join(f'<li><a href="/{i}">{html.escape(t)}</a></li>' for i, t in enumerate(texts)) + "</ul>"
        if style == 1:
            return " | ".join(f'<a href="/{i}">{html.escape(t)}</a>' for i, t in enumerate(texts))
        return "<table><tr>" + "".join(f'<td><a href="/{i}">{html.escape(t)}</a></td>' for i, t in enumerate(texts)) + "</tr></table>"

    def link_titles(self, k: int) -> list[str]:
        """k titles no other block of the page uses."""
        picked = self.rng.sample([i for i in range(len(self.titles)) if i not in self.used], k)
        self.used.update(picked)
        return [self.titles[i] for i in picked]

    def block(self, kind: str, site: tuple[str, str]) -> tuple[str, list[str]]:
        r = self.rng
        site, owner = site
        if kind == "header":
            tag = r.choice(TAGLINES)
            inner = f'<a href="/" class="logo">{html.escape(site)}</a><p class="tagline">{tag}</p>'
            return self.wrap(kind, ["site-header", "masthead", "top-bar"], inner, "header"), [site, tag]
        if kind == "nav":
            items = r.sample(SECTIONS, r.randint(5, 12))
            return self.wrap(kind, ["menu", "navbar", "main-navigation", "nav-links"], self.links(items), "nav"), items
        if kind == "breadcrumbs":
            items = r.sample(CRUMBS, 3)
            inner = " &gt; ".join(f'<a href="/{i}">{html.escape(t)}</a>' for i, t in enumerate(items))
            return self.wrap(kind, ["breadcrumb", "breadcrumbs", "crumbs"], inner, "nav"), items
        if kind == "cookie":
            text, buttons = r.choice(COOKIE_TEXTS), r.sample(COOKIE_BUTTONS, r.randint(2, 3))
            inner = f"<p>{html.escape(text)}</p>" + "".join(f"<button>{b}</button>" for b in buttons)
            cls = r.choice(["cookie-banner", "cookie-consent", "gdpr-notice", "consent-popup"])
            return (f'<div class="{cls}" role="dialog">{inner}</div>' if r.random() < 0.7
                    else f'<div id="b{r.randrange(1000)}">{inner}</div>'), [text, *buttons]
        if kind == "sidebar":
            head, items = r.choice(SIDEBAR_HEADS), self.link_titles(r.randint(4, 8))
            inner = f"<h3>{head}</h3>{self.links(items)}"
            if r.random() < 0.5:
                tags = r.sample(TAGS, 5)
                inner += "<h3>Tags</h3>" + " ".join(f'<a href="/t/{i}">{html.escape(t)}</a>' for i, t in enumerate(tags))
                items = [*items, "Tags", *tags]
            return self.wrap(kind, ["sidebar", "widget-area", "side-column"], inner, "aside"), [head, *items]
        if kind == "related":
            head, items = r.choice(RELATED_HEADS), self.link_titles(r.randint(3, 6))
            inner = f"<h2>{head}</h2>{self.links(items)}"
            return self.wrap(kind, ["related-posts", "related", "more-stories"], inner, "section"), [head, *items]
        if kind == "share":
            items = r.sample(SHARES, r.randint(3, 5))
            return self.wrap(kind, ["share-buttons", "social-share", "sharing"], self.links(items), "div"), items
        if kind == "newsletter":
            head, text, button, small = NEWSLETTER
            inner = (f"<h3>{html.escape(head)}</h3><p>{html.escape(text)}</p><form><input type=email placeholder=Email>"
                     f"<button>{button}</button></form><small>{small}</small>")
            return self.wrap(kind, ["newsletter-signup", "subscribe-box", "promo"], inner, "aside"), list(NEWSLETTER)
        assert kind == "footer"
        items = r.sample(FOOTER_LINKS, r.randint(4, 9))
        copyright_line = f"© {r.randint(2005, 2026)} {owner}. All rights reserved."
        inner = self.links(items) + f"<p>{html.escape(copyright_line)}</p>"
        return self.wrap(kind, ["site-footer", "footer", "bottom-links"], inner, "footer"), [*items, copyright_line]

    def page(self) -> dict:
        r = self.rng
        n = r.randint(1, 2) if r.random() < 0.25 else r.randint(3, 8)
        paras = r.sample(self.body_pool, n)
        title = " ".join(paras[0].split()[:r.randint(4, 8)]).rstrip(",;:")
        site = r.choice(SITES)
        self.used: set[int] = set()
        body_html, listed = [], []
        old_school = r.random() < 0.15  # paragraphs as text between <br><br>, no <p>
        for i, p in enumerate(paras):
            words = html.escape(p).split(" ")
            if len(words) > 12 and r.random() < 0.3:  # an inline link inside a body sentence is body text
                at = r.randrange(1, len(words) - 4)
                words[at:at + 3] = [f'<a href="/w/{i}">{" ".join(words[at:at + 3])}</a>']
            if not old_school and len(sentences(p)) >= 3 and r.random() < 0.15:  # a list of body sentences
                body_html.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in _SENTENCE_END.split(p)) + "</ul>")
                listed += sentences(p)
            else:
                body_html.append(f"{' '.join(words)}<br><br>" if old_school else f"<p>{' '.join(words)}</p>")
            if i == 1 and n > 3 and not old_school and r.random() < 0.5:
                body_html.append(f"<h2>{html.escape(' '.join(paras[2].split()[:4]))}</h2>")
        byline = f'<p class="byline">By {r.choice(AUTHORS)}, {r.randint(1, 28)} March 2026</p>' if r.random() < 0.6 else ""
        content = f"<h1>{html.escape(title)}</h1>{byline}{''.join(body_html)}"
        container = r.randrange(4)
        content = (f"<article>{content}</article>", f"<main>{content}</main>",
                   f'<div class="{r.choice(["post-content", "entry-content", "article-body"])}">{content}</div>',
                   f'<div id="c{r.randrange(1000)}">{content}</div>')[container]
        kinds = [k for k, p in (("header", 0.8), ("nav", 0.9), ("breadcrumbs", 0.4), ("sidebar", 0.6), ("related", 0.6),
                                ("share", 0.5), ("newsletter", 0.3), ("footer", 0.9), ("cookie", 0.5)) if r.random() < p]
        blocks = {k: self.block(k, site) for k in kinds}
        order = [k for k in ("header", "nav", "breadcrumbs") if k in blocks]
        middle = [content] + [blocks[k][0] for k in ("share", "related") if k in blocks]
        side = [blocks[k][0] for k in ("sidebar", "newsletter") if k in blocks]
        main = "".join(middle) + "".join(side) if r.random() < 0.6 else "".join(side) + "".join(middle)
        parts = [blocks[k][0] for k in order] + [f'<div class="wrapper">{main}</div>']
        parts += [blocks["footer"][0]] if "footer" in blocks else []
        if "cookie" in blocks:
            parts.insert(0 if r.random() < 0.5 else len(parts), blocks["cookie"][0])
        page = (f"<!DOCTYPE html><html><head><title>{html.escape(title)} | {html.escape(site[0])}</title>"
                f"<style>body {{margin: 0}}</style><script>window.dataLayer = [];</script></head>"
                f"<body>{''.join(parts)}</body></html>")
        return {"html": page, "body": paras, "title": title, "listed": listed,
                "boilerplate": [(k, s) for k in kinds for s in blocks[k][1]]}


# ---- extractors ---------------------------------------------------------------------------------------

def extractors() -> dict[str, Callable[[str], str]]:
    from resiliparse.extract.html2text import extract_plain_text
    import trafilatura

    from lmforge.config import CleanConfig
    from lmforge.text.clean import Cleaner

    def lmforge(mode: str, **kw) -> Callable[[str], str]:
        return Cleaner.from_config(CleanConfig(html_extract=mode, **kw)).clean_text

    found = {"selectolax text (lmforge html step, html_extract=text)": lmforge("text", steps=["html"]),
             "resiliparse main_content": lambda h: extract_plain_text(h, main_content=True, alt_texts=False,
                                                                       list_bullets=False),
             "trafilatura (defaults, with fallbacks)": lambda h: trafilatura.extract(h) or "",
             "trafilatura fast=True (no fallbacks)": lambda h: trafilatura.extract(h, fast=True) or "",
             "trafilatura favor_precision": lambda h: trafilatura.extract(h, favor_precision=True) or ""}
    found["lmforge html step, html_extract=main"] = lmforge("main", steps=["html"])
    found["lmforge --preset lm, html_extract=text"] = lmforge("text", preset="lm")
    found["lmforge --preset lm, html_extract=main"] = lmforge("main", preset="lm")
    return found


# ---- measures -----------------------------------------------------------------------------------------

def score(page: dict, out: str) -> tuple[int, int, int, Counter, Counter]:
    """(body sentences, kept, kept of those in lists) and per kind (boilerplate strings, removed)."""
    text = norm(out)
    body = [s for p in page["body"] for s in sentences(p)]
    kept = sum(s in text for s in body)
    listed_kept = sum(s in text for s in page["listed"])
    reference = norm(" ".join(page["body"]) + " " + page["title"])
    total, removed = Counter(), Counter()
    for kind, s in page["boilerplate"]:
        s = norm(s)
        total[kind] += 1
        # substrings, not words: text extraction runs inline elements together ("Accept allReject")
        removed[kind] += text.count(s) <= reference.count(s)
    return len(body), kept, listed_kept, total, removed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    builder = PageBuilder(paragraphs(), args.seed)
    pages = [builder.page() for _ in range(args.pages)]
    mb = sum(len(p["html"].encode()) for p in pages) / 1e6
    found = extractors()
    outs: dict[str, list[str]] = {name: [] for name in found}
    seconds = Counter()
    for fn in found.values():  # imports and first-call set-up are not timed
        fn(pages[0]["html"])
    step = -(-len(pages) // args.rounds)
    for start in range(0, len(pages), step):
        chunk = pages[start:start + step]
        for name, fn in found.items():
            t = time.perf_counter()
            got = [fn(p["html"]) for p in chunk]
            seconds[name] += time.perf_counter() - t
            outs[name] += got

    kinds = ["header", "nav", "breadcrumbs", "cookie", "sidebar", "related", "share", "newsletter", "footer"]
    n_body = sum(len(sentences(p)) for page in pages for p in page["body"])
    n_listed = sum(len(page["listed"]) for page in pages)
    print(f"{len(pages)} pages ({mb:.1f} MB of HTML, {n_body} body sentences ({n_listed} in lists), "
          f"{sum(len(p['boilerplate']) for p in pages)} boilerplate strings; seed {args.seed})\n")
    print("| extractor | body sentences kept | of them in lists | pages with no body kept "
          "| short pages (1-2 paragraphs): body kept "
          "| boilerplate strings removed | " + " | ".join(kinds) + " | pages/s | speed vs selectolax |")
    print("|---|" + "---:|" * (7 + len(kinds)))
    reference_rate = None
    for name in found:
        body = kept = listed_kept = lost = short_body = short_kept = 0
        total, removed = Counter(), Counter()
        for page, out in zip(pages, outs[name]):
            b, k, lk, t, r = score(page, out)
            body, kept, listed_kept, lost = body + b, kept + k, listed_kept + lk, lost + (b > 0 and k == 0)
            if len(page["body"]) <= 2:
                short_body, short_kept = short_body + b, short_kept + k
            total.update(t)
            removed.update(r)
        rate = len(pages) / seconds[name]
        reference_rate = reference_rate or rate
        per_kind = " | ".join(f"{removed[k] / total[k]:.0%}" if total[k] else "–" for k in kinds)
        print(f"| {name} | {kept / body:.1%} | {listed_kept / n_listed:.1%} | {lost} | {short_kept / short_body:.1%} "
              f"| {sum(removed.values()) / sum(total.values()):.1%} | {per_kind} | {rate:,.0f} | {rate / reference_rate:.2f}x |")


if __name__ == "__main__":
    main()
