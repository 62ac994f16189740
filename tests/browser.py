"""Open a report in headless Chromium and measure what a reader sees: whether every image loaded,
whether anything is wider than the window, what each experiment's first screen holds; with a
screenshot of the page's first screen and of each experiment's."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROBE = """<script>
window.addEventListener('load', () => {
  const top = e => e.getBoundingClientRect().top + window.scrollY;
  const imgs = [...document.images];
  const visible = [...document.querySelectorAll('body *')].filter(e => e.getClientRects().length);
  const sections = [...document.querySelectorAll('section.experiment')].map(s => {
    const img = s.querySelector('img'), h = s.querySelector('h2');
    return {id: s.id, first_image_below_title: img ? top(img) - top(h) : null,
            verdict: (s.querySelector('.verdict-line') || {}).textContent || null,
            audit_cells: s.querySelectorAll('table.audit td.cell').length};
  });
  const out = {viewport: window.innerWidth, page_width: document.documentElement.scrollWidth,
    images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    too_wide: visible.filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                     .slice(0, 10).map(e => `${e.tagName}.${e.className} in #${(e.closest('section') || {}).id}: ` +
                       e.textContent.trim().slice(0, 40)),
    headline: (document.querySelector('#headline .verdict-line') || {}).textContent || null,
    counts: [...document.querySelectorAll('#headline table.counts tr')].map(
      r => [...r.children].map(c => c.textContent.trim())),
    sections};
  const pre = document.createElement('pre');
  pre.id = 'clrepro-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-dev-shm-usage", *args],
                          capture_output=True, text=True, timeout=180)


def inspect(page: Path, artefacts: Path, width: int = 1400, height: int = 1000) -> dict:
    """What the page shows at ``width`` x ``height`` px; screenshots into ``artefacts``."""
    if chromium() is None:
        if os.environ.get("CLREPRO_REQUIRE_BROWSER"):
            pytest.fail("no Chromium found (CLREPRO_REQUIRE_BROWSER is set)")
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    artefacts.mkdir(parents=True, exist_ok=True)
    probed = artefacts / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    size = f"--window-size={width},{height}"
    proc = _run([size, "--virtual-time-budget=20000", "--dump-dom", probed.as_uri()])
    match = re.search(r'<pre id="clrepro-probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert match, f"Chromium gave no measurement: {proc.stderr[-2000:]}"
    import html
    result = json.loads(html.unescape(match.group(1)))
    _run([size, f"--screenshot={artefacts / 'first-screen.png'}", page.as_uri()])
    for s in result["sections"]:      # the section alone, from its title: its first screen
        alone = artefacts / f"{s['id']}.html"
        alone.write_text(page.read_text().replace(
            "</head>", f"<style>body > *:not(#{s['id']}) {{display: none !important}}</style></head>"))
        _run([size, f"--screenshot={artefacts / (s['id'] + '.png')}", alone.as_uri()])
        alone.unlink()
    return result
