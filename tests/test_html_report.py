"""`cfzoo detect --report`: a self-contained HTML page, opened in a real headless Chromium (from the system
packages: apt-get install chromium) to check what it renders."""

import base64
import html
import io
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.files import file_sha256
from cfzoo.images import save_png
from cfzoo.manipulations import apply_manipulation
from cfzoo.zoo.registry import load_registry

MODELS = ["spam-jpeg70", "bayar2016-jpeg70", "cozzolino2017-jpeg70"]
ODD_NAME = "<img src=x onerror=alert(1)> & co.png"  # markup in a file name must show as text, not become markup


@pytest.fixture(scope="module")
def report(photo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    save_png(photo, folder / "astronaut.png")
    save_png(apply_manipulation("jpeg70", photo), folder / "astronaut-jpeg70.png")
    save_png(photo[::-1], folder / ODD_NAME)
    (folder / "truncated.png").write_bytes((folder / "astronaut.png").read_bytes()[:2000])
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(
        app, ["detect", str(folder), "-t", "jpeg70", "--report", str(out), "--providers", "cpu"]
    )
    assert result.exit_code == 1, result.output  # the truncated file fails; the others are analysed
    assert f"report: {out}" in result.stderr and "1 of 4 inputs failed" in result.stderr
    return folder, out


def test_the_page_needs_nothing_but_itself(models, report):
    _, out = report
    page = out.read_text()
    assert page.count('src="data:image/jpeg;base64,') == 3 * (
        1 + 3
    )  # three photos: a thumbnail and three heatmaps each
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page), "every image is inline, nothing is fetched"
    assert "<script" not in page
    assert [path.name for path in out.parent.iterdir()] == ["report.html"], "no partial file is left behind"


def test_headless_chromium_renders_the_verdicts_the_rule_and_the_ids(models, report, headless):
    folder, out = report
    dumped = headless("--dump-dom", out.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert "<title>cfzoo detect report</title>" in dom and "manipulated when more than 75% of the patches" in dom
    for model in MODELS:
        assert f"<code>{model}</code>" in dom
    sections = re.findall(r'<section class="photo" id="image-(\d+)">(.*?)</section>', dom, re.S)
    assert [number for number, _ in sections] == ["1", "2", "3", "4"]
    by_name = {re.search(r"<h2>\d+\. (.*?)</h2>", body).group(1): body for _, body in sections}
    compressed = by_name[html.escape(str(folder / "astronaut-jpeg70.png"), quote=False)]
    assert re.findall(r'<td class="(manipulated|pristine|uncertain)">', compressed).count("manipulated") >= 2
    pristine = by_name[html.escape(str(folder / "astronaut.png"), quote=False)]
    assert re.findall(r'<td class="(manipulated|pristine|uncertain)">', pristine).count("pristine") >= 2
    assert html.escape(str(folder / ODD_NAME), quote=False) in by_name and "<img src=x" not in dom
    assert "could not be analysed" in by_name[html.escape(str(folder / "truncated.png"), quote=False)]
    assert "3 images analysed" in dom and "1 could not be" in dom


def test_the_page_is_evidence_for_a_case_file(models, report, headless):
    """The sha256 of every image and model, one stated colour scale with its legend, heatmaps in a grid that lines
    up with the verdicts, the families not run with how to get them, images flagged in the summary, and the time
    the page was written."""
    folder, out = report
    dom = headless("--dump-dom", out.as_uri()).stdout
    for name in ("astronaut.png", "astronaut-jpeg70.png", "truncated.png"):
        assert f'sha256 <code class="hash">{file_sha256(folder / name)}</code>' in dom, name
    for model in MODELS:
        entry = load_registry().get(model)
        assert re.search(rf"<code>{model}</code>.*?<code class=\"hash\">{entry.files['detector'].sha256}</code>", dom)
    legend = re.search(r'<p id="legend">(.*?)</p>', dom, re.S).group(1)
    assert "one scale for every heatmap" in legend and "data:image/png;base64," in legend and "threshold" in legend
    bar = re.search(r'src="data:image/png;base64,([^"]+)"', legend).group(1)
    colours = np.asarray(Image.open(io.BytesIO(base64.b64decode(bar))).convert("RGB")).astype(int)[0]
    assert colours[0, 2] > colours[0, 0] and colours[-1, 0] > colours[-1, 2], "blue at 0, red at 1"
    compressed = re.search(
        r'id="image-\d+">\s*<h2>\d+\. [^<]*astronaut-jpeg70.png</h2>(.*?)</section>', dom, re.S
    ).group(1)
    grid = re.search(r'<table class="heatmaps">(.*?)</table>', compressed, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", grid, re.S)
    assert re.findall(r"<th>(.*?)</th>", rows[0]) == ["task", "spam", "bayar2016", "cozzolino2017"]
    assert rows[1].startswith("<td>jpeg70</td>") and rows[1].count("<figure>") == 3
    assert all(caption.startswith("jpeg70 / ") for caption in re.findall(r"<figcaption>(.*?)</figcaption>", rows[1]))
    assert "not run: xception: no model here" in dom and "cfzoo pull -f xception -t jpeg70" in dom
    summary = re.search(r'<h2 id="summary">Summary</h2>(.*?)</body>', dom, re.S).group(1)
    assert "1 flagged</strong>" in summary and "astronaut-jpeg70.png</a></td><td>jpeg70</td>" in summary
    started = re.search(r"Started (\S+ \S+)", dom).group(1)
    written = re.search(r'<p class="small" id="written">Written (\S+ \S+) ', dom).group(1)
    assert started <= written


def test_the_screenshot_shows_the_photos_and_coloured_verdicts(models, report, headless, tmp_path):
    _, out = report
    shot = tmp_path / "page.png"
    taken = headless("--window-size=1100,1400", f"--screenshot={shot}", out.as_uri())
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)

    def share(colour) -> float:
        return float(np.mean(np.abs(pixels - np.array(colour)).sum(axis=2) <= 6))

    assert share((0xFD, 0xE2, 0xE1)) > 0.001 and share((0xE3, 0xF4, 0xE6)) > 0.001  # manipulated and pristine cells
    assert pixels[:, :400].std() > 30, "the thumbnails render (not blank)"


def test_a_report_that_cannot_be_written_is_refused_before_any_work(models, tmp_path, photo):
    save_png(photo, tmp_path / "a.png")
    (tmp_path / "taken.html").mkdir()
    runner = CliRunner()
    for destination, message in (
        (tmp_path / "r.txt", "--report .* must end in .html"),
        (tmp_path / "taken.html", "is a folder"),
    ):
        result = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "-t", "jpeg70", "--report", str(destination)])
        assert result.exit_code == 1 and re.search(message, result.stderr) and "Traceback" not in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png", "taken.html"] and not any(
        (tmp_path / "taken.html").iterdir()
    )


def test_the_page_leads_each_image_with_its_conclusion(photo, tmp_path, headless):
    """With every detector (no --task), each image's section opens with the conclusion model's answer, the page names
    that model with its sha256, and the summary counts the conclusions."""
    from cfzoo.zoo.conclusions import DEFAULT_CONCLUSION, ConclusionRegistry

    filtered = save_png(apply_manipulation("median7", photo), tmp_path / "astronaut-median7.png")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["-q", "detect", str(filtered), "--report", str(out), "--providers", "cpu"])
    assert result.exit_code == 0, result.output
    dom = headless("--dump-dom", out.as_uri()).stdout
    conclusion = re.search(r'<p class="conclusion (\w+)"><strong>Conclusion:</strong> (.*?)</p>', dom)
    assert conclusion.group(1) == "confident" and conclusion.group(2).startswith(
        "most likely: Median filtering, 7x7 (p = "
    )
    entry = ConclusionRegistry.load().get(DEFAULT_CONCLUSION)
    assert re.search(rf'id="conclusion-model".*?<code class="hash">{entry.file.sha256}</code>', dom, re.S)
    assert '<p id="conclusions">Conclusions: median7 1.</p>' in dom
    assert dom.count("<td>Median filtering, 7x7</td>") == 1  # the folded table of every class's probability
