"""LaTeX / HTML leaderboards and the plots: pdflatex compiles hostile labels, the HTML page sorts in
a headless Chromium without a single request, and every plot has the artists it should."""
from __future__ import annotations

import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_results import _rec

from bench.cli import main
from bench.store import RunStore, default_url
from results import load_results, summarize
from results.html import to_html
from results.latex import latex_escape, to_latex
from results.plots import (
    cd_diagram,
    cd_score_tables,
    cost_scatter,
    figure_data_uri,
    figure_to_svg,
    nemenyi_cliques,
    routing_plot,
    seed_plot,
)

HOSTILE = r"a_b%c&d#e$f{g}h~i^j\k|l[m]n<o>p"


@pytest.fixture
def store(tmp_path):
    s = RunStore(default_url(tmp_path / "runs"))
    for ds, shift in (("toy", 0.0), ("other", -0.05)):
        for i, acc in enumerate([0.80, 0.90, 0.85]):
            s.put(_rec(f"{ds}a{i}", "alpha", i, acc + shift, dataset=ds, config_id=f"{ds}-a",
                       label_fields={"note": HOSTILE}))
        for i, acc in enumerate([0.60, 0.70]):
            s.put(_rec(f"{ds}b{i}", "beta", i, acc + shift, dataset=ds, config_id=f"{ds}-b", label_fields={"note": "x"}))
        for i, acc in enumerate([0.75, 0.70]):
            s.put(_rec(f"{ds}c{i}", "gamma", i, acc + shift, dataset=ds, config_id=f"{ds}-c", label_fields={"note": "y"}))
    return s


def _summary(store):
    return summarize(load_results(store, headline_only=True), "test")


def _sig(summary):
    beta = summary.loc[(summary["method"] == "beta") & (summary["metric"] == "accuracy")]
    marks = {(r.dataset, r.task, r.metric, r.config_id) for r in beta.itertuples()}
    return types.SimpleNamespace(marks=marks, footnote="Wilcoxon signed-rank vs the best, Holm-corrected, p < 0.05 & 5%")


# --- LaTeX -------------------------------------------------------------------------------------

def test_markdown_escapes_dollar_signs():
    """$...$ renders as math on GitHub and in KaTeX-enabled viewers: a label must stay text."""
    from results.claims import _md
    from results.leaderboard import md_escape

    for escape in (md_escape, _md):
        out = escape("cost $5$ and $x^2$")
        assert "$" not in out.replace("\\$", "") and out.count("\\$") == 4, out


def test_latex_escape_neutralises_every_special_character():
    out = latex_escape(HOSTILE + "\n~^é☃")
    for bad in ("_", "%", "&", "#", "$", "{g}", "~i", "^j", "|", "[m]"):
        assert bad not in out.replace(r"\_", "").replace(r"\%", "").replace(r"\&", "").replace(r"\#", "").replace(
            r"\$", "").replace(r"\{", "").replace(r"\}", "").replace("{}", "").replace("{[}", "").replace("{]}", "")
    # outside the escapes, no brace, backslash or special remains
    residue = re.sub(r"\\[A-Za-z]+\{\}|\\[_%&#${}]|\{[\[\]]\}|-\{\}", "", out)
    assert not re.search(r"[\\{}$&#%^_~|\[\]]", residue), residue
    assert "\n" not in out and "?" in out and "e" in out   # é -> e, the snowman -> ?


def test_latex_bold_best_underline_second_and_marks(store):
    summary, commons = _summary(store)
    tex = to_latex(summary, commons, "test", _sig(summary))
    toy = tex[tex.index("toy, task"):] if "toy, task" in tex else tex
    assert tex.startswith("\\documentclass") and "\\usepackage{booktabs}" in tex and tex.endswith("\\end{document}\n")
    assert r"\textbf{\boldmath 0.850 $\pm$ 0.050}" in tex            # alpha best accuracy on toy
    assert r"\underline{0.725 $\pm$ 0.035}" in tex                   # gamma second
    assert r"0.650 $\pm$ 0.071$^{\dagger}$" in tex and "Holm-{}corrected" in tex   # beta marked, footnote
    assert "5\\%" in tex and "2--3 seeds" in tex
    assert "default hyperparameters" in toy and "test split" in toy
    assert HOSTILE not in tex and latex_escape(HOSTILE) in tex
    fragment = to_latex(summary, commons, "test", standalone=False, layout="grouped")
    assert "\\documentclass" not in fragment and "\\cmidrule" in fragment and "\\dagger" not in fragment


def test_latex_direction_and_no_ranking_without_direction():
    rows = [("d", "t", "loss", c, c, c, m, 0.1, 3, h, "defaults") for c, m, h in
            (("a", 0.1, False), ("b", 0.2, False), ("c", 0.3, False))]
    rows += [("d", "t", "score", c, c, c, m, 0.1, 3, np.nan, "8 trials") for c, m in (("a", 0.5), ("b", 0.6))]
    summary = pd.DataFrame(rows, columns=["dataset", "task", "metric", "config_id", "label", "method", "mean", "std",
                                          "n", "higher", "budget"])
    tex = to_latex(summary, {}, "val")
    assert r"\textbf{\boldmath 0.100 $\pm$ 0.100}" in tex and r"\underline{0.200 $\pm$ 0.100}" in tex
    assert r"\textbf{\boldmath 0.500" not in tex and r"\underline{0.600" not in tex   # no direction: no ranking
    assert "unequal: not a fair comparison" in tex and "val split" in tex


def _compile(tex: str, folder: Path) -> Path:
    src = folder / "table.tex"
    src.write_text(tex)
    proc = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", src.name], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return folder / "table.pdf"


@pytest.mark.parametrize("layout", ["tables", "grouped"])
def test_latex_compiles_with_pdflatex(store, tmp_path, layout):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    summary, commons = _summary(store)
    costs = pd.DataFrame({"config_id": summary["config_id"].unique(), "params_total": 123456.0,
                          "train_time_s": 3.5})
    pdf = _compile(to_latex(summary, commons, "test", _sig(summary), runs_info=costs, layout=layout), tmp_path)
    assert pdf.stat().st_size > 1000
    if shutil.which("pdftotext"):   # the hostile label is typeset literally
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
        assert HOSTILE in text.replace(" ", ""), text
    frag = tmp_path / "frag"
    frag.mkdir()
    _compile("\\documentclass{article}\\usepackage{booktabs}\\usepackage{graphicx}\\begin{document}\n"
             + to_latex(summary, commons, "test", _sig(summary), standalone=False, layout=layout)
             + "\n\\end{document}\n", frag)


# --- plots -------------------------------------------------------------------------------------

def test_cd_diagram_has_one_label_per_method_and_the_cliques():
    ranks = pd.Series({"alpha": 1.2, "beta": 2.1, "gamma": 2.5, "delta": 3.9, "eps_[x]": 4.3})
    fig = cd_diagram(ranks, cd=1.5)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "method"]
    assert sorted(labels) == sorted(ranks.index)
    assert any(t.get_gid() == "cd" and "1.50" in t.get_text() for t in ax.texts)
    cliques = nemenyi_cliques(ranks, 1.5)
    assert cliques == [["alpha", "beta", "gamma"], ["gamma", "delta"], ["delta", "eps_[x]"]]
    thick = [ln for ln in ax.lines if ln.get_linewidth() == 3.5]
    assert len(thick) == len(cliques)
    svg = figure_to_svg(fig)
    assert svg.lstrip().startswith("<?xml") and "alpha" in svg
    assert figure_data_uri(fig, "png").startswith("data:image/png;base64,")


def test_cd_tables_need_two_datasets_and_two_common_configurations(store):
    summary, _ = _summary(store)
    tables = cd_score_tables(summary)
    assert ("label", "accuracy", True) in tables and tables[("label", "accuracy", True)].shape == (2, 3)
    assert cd_score_tables(summary[summary["dataset"] == "toy"]) == {}


def test_seed_plot_cost_scatter_and_routing(store):
    results = load_results(store, headline_only=True)
    summary, _ = summarize(results)
    fig = seed_plot(results.frame, "toy")
    ax = fig.axes[0]
    dots = sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == "seed")
    assert dots == 3 + 2 + 2 and len(ax.get_yticklabels()) == 3
    costs = pd.DataFrame({"config_id": sorted(set(summary["config_id"])), "params_total": [1e3, 1e4, 1e6, 1e3, 2e3, 3e3]})
    fig = cost_scatter(summary, costs)
    assert [a.get_xscale() for a in fig.axes] == ["log", "linear"]   # other spans 1000x, toy 3x
    assert sum(len(a.texts) for a in fig.axes) == 6   # one annotation per configuration
    frame = pd.DataFrame([("k", "cfg", "i2moe", "i2moe", "toy", s, 0, "tiny", "x", "eval", "test", "interpretation",
                           m, v, None) for s in (0, 1) for m, v in (("weight_uni_a", 0.2 + s / 10), ("weight_syn", 0.5),
                                                                      ("gate_entropy", 0.9), ("agreement", 0.3))],
                         columns=results.frame.columns)
    fig = routing_plot(frame)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["weight_syn", "weight_uni_a", "gate_entropy"]
    assert ax.images and "0.25" in [t.get_text() for t in ax.texts]
    assert routing_plot(results.frame) is None


# --- HTML --------------------------------------------------------------------------------------

def _page(store, tmp_path) -> Path:
    out = tmp_path / "board.html"
    assert main(["leaderboard", "--runs-dir", str(tmp_path / "runs"), "--format", "html", "--out", str(out)]) == 0
    return out


def test_html_is_self_contained_and_escaped(store, tmp_path):
    text = _page(store, tmp_path).read_text()
    assert "<table class=\"sortable\">" in text and text.count("<table") == 2
    assert "data:image/svg+xml;base64," in text and "<script>" in text
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", text) and "http://" not in text \
        and "https://" not in text and "@import" not in text
    assert "Content-Security-Policy" in text
    assert HOSTILE not in text and "a_b%c&amp;d#e$f{g}h~i^j\\k|l[m]n&lt;o&gt;p" in text
    summary, commons = _summary(store)
    marked = to_html(summary, commons, "test", _sig(summary))
    assert marked.count('class="mark" title="significant">†') == 2 and "Holm-corrected" in marked


def _driver(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("headless browser test needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_html_page_in_headless_chromium_sorts_and_makes_no_request(store, tmp_path):
    page = _page(store, tmp_path)
    browser = _driver(tmp_path)
    from selenium.webdriver.common.by import By

    try:
        browser.get(page.as_uri())
        tables = browser.find_elements(By.CSS_SELECTOR, "table.sortable")
        assert len(tables) == 2
        images = browser.find_elements(By.CSS_SELECTOR, "figure img")
        assert images and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
        table = tables[1]   # toy

        def rows():
            return [r.find_elements(By.TAG_NAME, "td") for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        before = [c[0].text for c in rows()]
        header = table.find_elements(By.CSS_SELECTOR, "thead th")
        acc = next(h for h in header if h.text.startswith("accuracy"))
        acc.click()
        values = [float(c[3].text.split()[0]) for c in rows()]
        assert values == sorted(values) and [c[0].text for c in rows()] != before
        acc.click()
        values = [float(c[3].text.split()[0]) for c in rows()]
        assert values == sorted(values, reverse=True)
        header[0].click()
        names = [c[0].text for c in rows()]
        assert names == sorted(names, key=str.lower)
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
        assert all(u.startswith(("data:", "file:")) for u in resources), resources
    finally:
        browser.quit()


def test_cli_latex_metric_filter_and_formats(store, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert main(["leaderboard", "--runs-dir", runs, "--format", "latex", "--metric", "accuracy"]) == 0
    tex = capsys.readouterr().out
    assert tex.startswith("\\documentclass") and "accuracy" in tex and "ece" not in tex
    assert main(["leaderboard", "--runs-dir", runs, "--format", "latex", "--fragment", "--layout", "grouped",
                 "--cost"]) == 0
    assert "\\documentclass" not in capsys.readouterr().out
    assert main(["leaderboard", "--runs-dir", runs, "--format", "csv", "--metric", "ece"]) == 0
    back = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert set(back["metric"]) == {"ece"} and len(back) == 6
