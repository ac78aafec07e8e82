"""The dataset report: one self-contained HTML file (no network, no other file).

It holds the statistics with their plots (tag frequency bars, caption length in CLIP tokens,
tags per image, the score histograms of the checks) as inline SVG, and each check's findings
with thumbnails (small JPEGs embedded as data URIs), paged in the browser by a few lines of
script. Thumbnails are embedded for the first ``MAX_THUMBS`` findings; later ones are listed by
path, so the file stays a few megabytes even for a large dataset.
"""

from __future__ import annotations

# ruff: noqa: PTH112, PTH118, PTH120
import base64
import html
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from tagger.dataset.checks import CheckResult
from tagger.dataset.stats import DatasetStats
from tagger.safeio import atomic_write_text

MAX_THUMBS = 1500
THUMB_SIDE = 112
TOP_TAGS = 40
CHECK_TITLES = {
    "duplicates": "Exact duplicates",
    "near_duplicates": "Near duplicates (perceptual hash)",
    "broken": "Broken or unreadable images",
    "small": "Small images",
    "aspect": "Extreme aspect ratios",
    "text": "Images with text (OCR)",
    "clip_duplicates": "Near duplicates (CLIP)",
    "outliers": "Outliers (CLIP)",
    "mismatch": "Caption does not match the image",
    "captions": "Caption files",
}
SCORE_TITLES = {
    "aspect": "Aspect ratio (long / short side)",
    "text": "Fraction of the image covered by text",
    "outliers": "CLIP distance from the centroid",
    "mismatch": "Image-text score of the caption",
}


def esc(value: object) -> str:
    """HTML-escaped text.

    >>> esc("<a & b>")
    '&lt;a &amp; b&gt;'
    """
    return html.escape(str(value), quote=True)


def bar_chart(items: Sequence[tuple[str, int]], width: int = 640, row: int = 16) -> str:
    """A horizontal bar chart as inline SVG (one bar per ``(label, value)``).

    >>> "<rect" in bar_chart([("solo", 3), ("1girl", 1)])
    True
    """
    if not items:
        return "<p class='empty'>nothing to show</p>"
    label_width = min(260, 8 + 7 * max(len(label) for label, _ in items))
    peak = max(value for _, value in items) or 1
    room = width - label_width - 60
    parts = [
        f"<svg class='chart' role='img' width='{width}' height='{row * len(items) + 4}' "
        f"viewBox='0 0 {width} {row * len(items) + 4}' xmlns='http://www.w3.org/2000/svg'>"
    ]
    for i, (label, value) in enumerate(items):
        y = i * row + 2
        length = max(1, round(room * value / peak))
        parts.append(
            f"<text x='{label_width - 6}' y='{y + row - 4}' text-anchor='end'>{esc(label)}</text>"
            f"<rect x='{label_width}' y='{y}' width='{length}' height='{row - 3}'>"
            f"<title>{esc(label)}: {value}</title></rect>"
            f"<text x='{label_width + length + 4}' y='{y + row - 4}'>{value}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    bins: Sequence[tuple[float, int]], label: str, width: int = 640, height: int = 160
) -> str:
    """A vertical histogram as inline SVG (``(bin start, count)`` pairs, ascending)."""
    if not bins:
        return "<p class='empty'>nothing to show</p>"
    peak = max(count for _, count in bins) or 1
    step = (width - 40) / len(bins)
    parts = [
        f"<svg class='chart' role='img' aria-label='{esc(label)}' width='{width}' "
        f"height='{height + 24}' viewBox='0 0 {width} {height + 24}' "
        "xmlns='http://www.w3.org/2000/svg'>"
    ]
    for i, (start, count) in enumerate(bins):
        bar = max(1, round((height - 10) * count / peak)) if count else 0
        x = 30 + i * step
        parts.append(
            f"<rect x='{x:.1f}' y='{height - bar}' width='{max(1.0, step - 2):.1f}' "
            f"height='{bar}'><title>{esc(_number(start))}: {count}</title></rect>"
        )
        if i % max(1, len(bins) // 8) == 0:
            parts.append(f"<text x='{x:.1f}' y='{height + 16}'>{esc(_number(start))}</text>")
    parts.append(f"<text x='2' y='12'>{peak}</text></svg>")
    return "".join(parts)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def value_bins(values: Sequence[float], count: int = 30) -> list[tuple[float, int]]:
    """Equal-width bins over the values' range.

    >>> value_bins([0.0, 0.5, 1.0], 2)
    [(0.0, 1), (0.5, 2)]
    """
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [(round(low, 4), len(values))]
    width = (high - low) / count
    counts = [0] * count
    for value in values:
        counts[min(count - 1, int((value - low) / width))] += 1
    return [(round(low + i * width, 4), n) for i, n in enumerate(counts)]


def _thumb(path: str) -> str:
    """A data URI of the image's thumbnail, or "" when it does not decode."""
    from tagger.dataset.thumbs import make_thumbnail
    from tagger.errors import ImageLoadError

    try:
        data = make_thumbnail(path, THUMB_SIDE)
    except (ImageLoadError, OSError):
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _stats_section(stats: DatasetStats) -> str:
    data = stats.to_dict(top=TOP_TAGS)
    tokens = data["tokens"]
    exact = "" if tokens["exact"] else " (estimated: no CLIP tokenizer was found)"
    lines = [
        "<section id='stats'><h2>Statistics</h2>",
        f"<p class='counts'>{data['images']} images, {data['captioned']} with a caption, "
        f"{data['unique_tags']} distinct tags, {data['untagged']['count']} without tags, "
        f"{tokens['over_limit']['count']} captions over {tokens['limit']} CLIP tokens, "
        f"{data['once']['count']} tags on one image only.</p>",
        f"<h3>Most frequent tags (images per tag, top {TOP_TAGS})</h3>",
        bar_chart([(t, n) for t, n in data["frequency"]]),
        f"<h3>Caption length in CLIP tokens{exact}</h3>",
        histogram([(s, n) for s, n in tokens["histogram"]], "caption length"),
        "<h3>Tags per image</h3>",
        histogram([(n, c) for n, c in data["tags_per_image"]], "tags per image"),
    ]
    if len(data["per_folder"]) > 1:
        lines.append(
            "<h3>Per folder</h3><table><tr><th>folder</th><th>images</th>"
            "<th>most frequent tags</th></tr>"
        )
        for folder, info in data["per_folder"].items():
            best = ", ".join(f"{t} ({n})" for t, n in info["frequency"][:8])
            lines.append(
                f"<tr><td>{esc(folder or '.')}</td><td>{info['images']}</td>"
                f"<td>{esc(best)}</td></tr>"
            )
        lines.append("</table>")
    lists = [
        ("Images without tags", data["untagged"]),
        (f"Captions over {tokens['limit']} tokens", tokens["over_limit"]),
        ("Tags on one image only", data["once"]),
        ("Captions repeating a tag", data["repeated_tags"]),
        ("Captions without an image", data["orphan_captions"]),
        ("Captions that cannot be read", data["unreadable_captions"]),
    ]
    for title, info in lists:
        if info["count"]:
            items = "".join(
                f"<li>{esc(item if isinstance(item, str) else ' — '.join(map(str, item)))}</li>"
                for item in info["examples"]
            )
            lines.append(f"<h3>{esc(title)}: {info['count']}</h3><ul class='paths'>{items}</ul>")
    if data["variants"]:
        items = "".join(
            f"<li>{esc(' | '.join(forms))}</li>" for forms in list(data["variants"].values())[:50]
        )
        lines.append(f"<h3>Tags written several ways</h3><ul class='paths'>{items}</ul>")
    lines.append("</section>")
    return "\n".join(lines)


def _scores_section(result: CheckResult) -> str:
    if not result.scores:
        return ""
    parts = ["<section id='scores'><h2>Score histograms</h2>"]
    for key, values in result.scores.items():
        parts.append(f"<h3>{esc(SCORE_TITLES.get(key, key))}</h3>")
        parts.append(histogram(value_bins(values), key))
    parts.append("</section>")
    return "\n".join(parts)


def _findings_data(result: CheckResult, base: str) -> dict[str, list[dict[str, Any]]]:
    """Per check, its findings with thumbnails (the first MAX_THUMBS overall)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    embedded = 0
    for finding in result.findings:
        item = finding.to_dict()
        if embedded < MAX_THUMBS:
            item["thumb"] = _thumb(os.path.join(base, finding.path))
            embedded += 1
        grouped.setdefault(finding.check, []).append(item)
    return grouped


SCRIPT = """
const data = JSON.parse(document.getElementById('findings-data').textContent);
const pageSize = %d;
function render(check, page) {
  const items = data[check] || [];
  const box = document.querySelector(`[data-check="${check}"] .items`);
  const pages = Math.max(1, Math.ceil(items.length / pageSize));
  page = Math.min(Math.max(0, page), pages - 1);
  box.replaceChildren();
  for (const f of items.slice(page * pageSize, (page + 1) * pageSize)) {
    const card = document.createElement('figure');
    card.className = 'finding';
    if (f.thumb) {
      const img = document.createElement('img');
      img.src = f.thumb; img.alt = f.path;
      card.append(img);
    } else {
      const none = document.createElement('div');
      none.className = 'nothumb'; none.textContent = 'no preview';
      card.append(none);
    }
    const cap = document.createElement('figcaption');
    const group = f.group === null ? '' : `[${f.group}] `;
    cap.textContent = `${group}${f.path}: ${f.detail}`;
    card.append(cap);
    box.append(card);
  }
  const nav = document.querySelector(`[data-check="${check}"] .pager`);
  nav.querySelector('.page').textContent = `page ${page + 1} of ${pages}`;
  nav.dataset.page = page;
}
for (const section of document.querySelectorAll('[data-check]')) {
  const check = section.dataset.check;
  const nav = section.querySelector('.pager');
  nav.querySelector('.prev').onclick = () => render(check, Number(nav.dataset.page) - 1);
  nav.querySelector('.next').onclick = () => render(check, Number(nav.dataset.page) + 1);
  render(check, 0);
}
"""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px;
  color: #1d2330; background: #fbfbfd; padding: 0 16px; }
h1 { font-size: 22px; } h2 { border-bottom: 1px solid #d5d9e2; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav.toc a { margin-right: 12px; }
svg.chart { display: block; font-size: 11px; }
svg.chart rect { fill: #4b6cb7; } svg.chart text { fill: #333; }
table { border-collapse: collapse; } td, th { border: 1px solid #d5d9e2; padding: 3px 8px;
  text-align: left; vertical-align: top; }
ul.paths { columns: 2; font-family: ui-monospace, monospace; font-size: 12px; }
.items { display: flex; flex-wrap: wrap; gap: 10px; }
figure.finding { margin: 0; width: 170px; background: #fff; border: 1px solid #d5d9e2;
  border-radius: 6px; padding: 6px; }
figure.finding img { max-width: 100%; max-height: 112px; display: block; margin: auto; }
.nothumb { height: 60px; display: flex; align-items: center; justify-content: center;
  color: #888; background: #eee; }
figcaption { font-size: 11px; word-break: break-all; margin-top: 4px; }
.pager { margin: 8px 0; } .pager button { margin-right: 6px; }
.skipped { color: #8a5a00; } .empty { color: #777; }
"""


def render_report(
    stats: DatasetStats,
    result: CheckResult,
    *,
    title: str = "Dataset report",
    base: str = "",
    page_size: int = 48,
) -> str:
    """The report's HTML text."""
    base = base or result.root
    grouped = _findings_data(result, base if os.path.isdir(base) else os.path.dirname(base))
    toc = ["<a href='#stats'>Statistics</a>"]
    if result.scores:
        toc.append("<a href='#scores'>Scores</a>")
    sections = []
    for name in result.checks:
        anchor = f"check-{name}"
        found = grouped.get(name, [])
        title_text = CHECK_TITLES.get(name, name)
        toc.append(f"<a href='#{anchor}'>{esc(title_text)} ({len(found)})</a>")
        if name in result.skipped:
            sections.append(
                f"<section id='{anchor}'><h2>{esc(title_text)}</h2>"
                f"<p class='skipped'>Skipped: {esc(result.skipped[name])}</p></section>"
            )
            continue
        sections.append(
            f"<section id='{anchor}' data-check='{esc(name)}'><h2>{esc(title_text)}: "
            f"{len(found)}</h2><div class='pager'><button class='prev'>previous</button>"
            f"<button class='next'>next</button><span class='page'></span></div>"
            f"<div class='items'></div></section>"
        )
    payload = json.dumps(grouped, ensure_ascii=False).replace("</", "<\\/")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return "\n".join(
        [
            "<!DOCTYPE html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{esc(title)}</h1>",
            f"<p>{esc(result.root)} — {result.images} images checked, "
            f"{len(result.findings)} findings — {esc(when)}</p>",
            f"<nav class='toc'>{' '.join(toc)}</nav>",
            _stats_section(stats),
            _scores_section(result),
            *sections,
            f"<script type='application/json' id='findings-data'>{payload}</script>",
            f"<script>{SCRIPT % page_size}</script>",
            "</body></html>",
        ]
    )


def write_report(
    path: str | os.PathLike[str],
    stats: DatasetStats,
    result: CheckResult,
    *,
    paths: Sequence[str | os.PathLike[str]] = (),
    page_size: int = 48,
) -> None:
    """Write the report through the safe writer."""
    base = os.fspath(paths[0]) if paths else result.root
    text = render_report(stats, result, base=base, page_size=page_size)
    atomic_write_text(path, text)
