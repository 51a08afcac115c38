"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package, which
``.ci/run`` installs when missing) loads a copy of the report with a probe script appended and
writes what it saw into the page; every image must decode and render with a non-zero size,
the page must log nothing to the console, and it must reference nothing outside itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from bench import suite as suite_mod
from bench.plan import build_plan
from bench.report import write_report
from bench.runner import execute
from bench.store import Store

pytestmark = pytest.mark.slow

SUITE = """
name: browser
seeds: [0, 1]
training: {epochs: 3, batch_size: 32, lr: 0.01}
schemes:
  grid: {lr: [0.01, 0.001]}
datasets: [iris]
models:
  - {name: native, adapter: native, hidden: [3], grid: 3}
  - {name: mlp, adapter: mlp, budget: {match: native, tolerance: 0.2}}
"""

#: appended to a copy of the report: what the page rendered, as JSON in a <pre>
PROBE = """
<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(img => {
    const box = img.getBoundingClientRect();
    return {src: img.src.slice(0, 40), complete: img.complete, natural: img.naturalWidth,
            width: box.width, height: box.height};
  });
  const pre = document.createElement("pre");
  pre.id = "kanbench-probe";
  pre.textContent = JSON.stringify({images});
  document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium here: install Debian's package (apt-get install -y chromium); "
                    ".ci/run installs it when it can")
    return path


def test_the_html_report_renders_every_image_without_console_errors(write_suite, tmp_path):
    browser = _chromium()
    path = write_suite(SUITE)
    plan = build_plan(suite_mod.load(path), path)
    with Store(tmp_path / "s.sqlite") as store:
        execute(plan, store)
    _, html = write_report(tmp_path / "s.sqlite", tmp_path / "reports", "browser")
    page = html.read_text(encoding="utf-8")
    # self-contained: no local file referenced, nothing loaded from the web (a plain link to
    # a web page, <a href="https://...">, loads nothing)
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:|#|https?://)""", page)
    assert not re.search(r"""(?:src\s*=\s*["']|<link[^>]+href\s*=\s*["']|url\()https?://""",
                         page)
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'<pre id="kanbench-probe">(.*?)</pre>', out.stdout, re.S)
    assert found, "the probe did not run: " + out.stdout[-500:]
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    images = seen["images"]
    assert images and len(images) == page.count("<img")  # every figure of the page
    for img in images:
        assert img["complete"] and img["natural"] > 0, img  # decoded
        assert img["width"] > 0 and img["height"] > 0, img  # laid out with a size
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
