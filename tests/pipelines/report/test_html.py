"""The HTML report: every section, untrusted data escaped, and a real headless Chromium rendering it."""

import csv
import io
import os
import shutil
import subprocess

import pytest

from pipelines import cli
from tests.helpers import sample_lines

pytestmark = pytest.mark.e2e

INJECTED = "<script>alert(1)</script>"
ATTRIBUTE = '" onmouseover="alert(2)'
DEAD = "<img src=x onerror=alert(3)>,1,2"
SECTIONS = ["summary", "dead-letters", "features", "skew", "labels", "duplicates", "lineage"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    header, lines = sample_lines(300)
    columns = header.split(",")
    rows = [next(csv.reader([line])) for line in lines]
    for row in rows[:20]:
        row[columns.index("company")] = INJECTED
    rows[30][columns.index("payment_type")] = ATTRIBUTE
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    path = folder / "trips.csv"
    path.write_text(buffer.getvalue() + DEAD + "\n")
    out = folder / "out"
    assert cli.main(["run", "--input", str(path), "--output", str(out)]) == 0
    annotations = folder / "labels.csv"
    annotations.write_text(
        "item,annotator,label\n"
        + "".join(
            f"i{i},{a},{'yes' if (i + a_index) % 3 else 'no'}\n"
            for i in range(30)
            for a_index, a in enumerate(["ann", "bob", "<b>eve</b>"])
        )
    )
    labels = folder / "labels"
    assert cli.main(["labels", "--annotations", str(annotations), "--output", str(labels)]) == 0
    assert cli.main(["report", str(out), "--labels", str(labels)]) == 0
    return out


def test_run_writes_the_report_with_every_section(report_dir):
    page = (report_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f"<section id='{section}'>" in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    assert page.count("<script>") == 1  # ours, at the end


def test_untrusted_values_are_escaped(report_dir):
    page = (report_dir / "report.html").read_text()
    assert INJECTED not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert ATTRIBUTE not in page and "&quot; onmouseover=&quot;alert(2)" in page
    assert "<img" not in page and "&lt;img src=x onerror=alert(3)&gt;" in page
    assert "<b>eve</b>" not in page and "&lt;b&gt;eve&lt;/b&gt;" in page


def test_label_section_has_measures_heatmap_and_quality(report_dir):
    page = (report_dir / "report.html").read_text()
    labels = page[page.index("<section id='labels'>") : page.index("<section id='duplicates'>")]
    for text in ("Fleiss' kappa", "Krippendorff", "HLP (vs the other annotators)", "Annotator × annotator"):
        assert text in labels
    assert labels.count("<rect") == 9  # 3 x 3 annotators


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium():
    if _chromium() is None and os.geteuid() == 0:  # the test setup installs Debian's chromium when missing
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            capture_output=True,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        )
    if _chromium() is None:
        pytest.skip("chromium is not installed and could not be installed (needs root and Debian's packages)")
    return _chromium()


def _headless(chromium: str, profile, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.browser
def test_the_report_renders_in_headless_chromium_without_javascript_errors(report_dir, chromium, tmp_path):
    url = (report_dir / "report.html").as_uri()
    dom = _headless(chromium, tmp_path / "a", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-rendered="yes"' in dom.stdout  # our script ran to the end
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout and dom.stdout.count("<script>") == 1
    screenshot = tmp_path / "report.png"
    shot = _headless(chromium, tmp_path / "b", "--window-size=1300,2400", f"--screenshot={screenshot}", url)
    assert shot.returncode == 0
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    errors = [
        line for line in dom.stderr.splitlines() + shot.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
    ]
    assert errors == []
