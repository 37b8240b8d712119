"""`memplace report`: terminal, JSON and a self-contained HTML page."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import pytest

from advisor_support import assert_one_line_error, memplace
from memplace.profiling import profile as prof


@pytest.fixture
def inputs(tmp_path):
    exe = "/opt/app/bin/app"
    sites = [
        prof.Site((prof.Frame(exe, None, 0x1000 + 0x40 * i),), allocations=i + 1, bytes=1000 * (i + 1),
                  peak_live_bytes=500 * (i + 1), reads=10_000 * (8 - i), writes=100,
                  live=[0, 500 * (i + 1), 0, 0] if i % 2 else [500 * (i + 1), 0, 0, 0],
                  symbols=(prof.Symbol(f"fn{i}", "app.c", 10 + i),))
        for i in range(8)
    ]
    p = tmp_path / "p.json"
    prof.save(prof.Profile("runtime", ["./app"], sites, pid=3, clock_unit="ns", duration=4e6, window=1e6), p)
    policy = tmp_path / "policy.toml"
    policy.write_text('version = 1\n[devices.hbm]\nkind = "numa"\nnodes = [0]\ncapacity = "4KiB"\n'
                      f'[[rules]]\nsite = ["{exe}+0x1000"]\ndevice = "hbm"\n'
                      f'[[rules]]\nsite = ["app+0x1040"]\ndevice = "hbm"\n')
    stats = tmp_path / "stats.json"  # as `memplace run --policy policy.toml --stats` writes it
    stats.write_text(json.dumps({
        "version": 1, "command": ["./app"], "policy": str(policy), "returncode": 0,
        "processes": [{"pid": 3, "devices": [], "rules": []}],
        "totals": {
            "devices": [{"name": "hbm", "allocations": 3, "bytes": 3000, "peak": 2500,
                         "fallbacks": {"full": 2, "bind_failed": 0, "backing_failed": 0, "alignment": 0}},
                        {"name": "system", "allocations": 30, "bytes": 30000, "peak": 0,
                         "fallbacks": {"full": 0, "bind_failed": 0, "backing_failed": 0, "alignment": 0}}],
            "rules": [{"name": "rule 0", "hits": 1, "bytes": 1000}]},
    }))
    return p, policy, stats


def test_policy_places_profile_sites(inputs):
    p, policy, _ = inputs
    d = json.loads(memplace("report", "--profile", str(p), "--policy", str(policy), "--json", check=True).stdout)
    devs = {x["name"]: x for x in d["devices"]}
    # Rules match by path and by basename; both sites live in different windows: peak 1000, not 1500.
    assert devs["hbm"]["allocations"] == 3 and devs["hbm"]["peak_bytes"] == 1000
    assert {s["frame"]: s["device"] for s in d["sites"]}["app+0x1040"] == "hbm"
    assert devs["system"]["allocations"] == sum(range(3, 9))


def test_html_is_self_contained_with_plots(inputs, tmp_path):
    p, _, stats = inputs
    out = tmp_path / "r.html"
    r = memplace("report", "--profile", str(p), "--stats", str(stats), "--html", str(out), check=True)
    assert "fn0" in r.stdout and "hbm" in r.stdout
    page = out.read_text()
    for h2 in ("Bytes per device", "Top sites by accesses", "Top sites by bytes", "Fallbacks", "Live bytes over time"):
        assert f"<h2>{h2}</h2>" in page
    assert page.count("<svg") >= 5
    # Nothing is fetched: no scripts, stylesheets, images or fonts from elsewhere.
    assert not re.search(r"<script|<link|<img|@import|url\(", page)
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg")
    assert "2 fallback(s): full 2" in page and "fn7" in page
    assert re.search(r'<tr data-device="hbm">.*?data-bytes="4096"', page)  # capacity, from the policy


def test_stats_json_summary(inputs):
    _, _, stats = inputs
    d = json.loads(memplace("report", "--stats", str(stats), "--json", check=True).stdout)
    devs = {x["name"]: x for x in d["devices"]}
    assert devs["hbm"] == {"name": "hbm", "capacity": 4096, "allocations": 3, "bytes": 3000, "peak_bytes": 2500,
                           "fallbacks": 2, "fallback_reasons": {"full": 2, "bind_failed": 0, "backing_failed": 0,
                                                                "alignment": 0}}
    assert d["rules"] == [{"name": "rule 0", "hits": 1, "bytes": 1000, "device": None}]
    assert d["processes"] == 1 and d["returncode"] == 0 and d["sites"] == []


def test_bad_inputs(tmp_path, inputs):
    p, _, _ = inputs
    assert_one_line_error(memplace("report"), "nothing to report")
    bad = tmp_path / "s.json"
    bad.write_text('{"format": "something-else"}')
    assert_one_line_error(memplace("report", "--stats", str(bad)), "s.json", "not memplace run statistics")
    bad.write_text('{"version": 1, "totals": {"devi')
    assert_one_line_error(memplace("report", "--stats", str(bad)), "s.json", "truncated")
    bad.write_text('{"version": 3, "totals": {"devices": [], "rules": []}}')
    assert_one_line_error(memplace("report", "--stats", str(bad)), "s.json", "version 3")
    bad.write_text('{"version": 2, "processes": [{"pid": 1, "ended": 7}], "totals": {"devices": [], "rules": []}}')
    assert_one_line_error(memplace("report", "--stats", str(bad)), "s.json", "processes[0].ended")
    bad.write_text('{"version": 2, "stepped_aside": [{"pid": 1, "path": null, "reason": "x"}], '
                   '"totals": {"devices": [], "rules": []}}')
    assert_one_line_error(memplace("report", "--stats", str(bad)), "s.json", "stepped_aside[0].path")
    bad.write_text('{"version": 1, "totals": {"devices": [{"name": "x", "allocations": -1, "bytes": 0, '
                   '"peak": 0, "fallbacks": {}}], "rules": []}}')
    assert_one_line_error(memplace("report", "--stats", str(bad)), "s.json", "totals.devices[0].allocations")
    bad.write_text('version = 1\ndefault = "nowhere"\n')
    assert_one_line_error(memplace("report", "--profile", str(p), "--policy", str(bad)), "nowhere")


def test_many_rules_are_cut_to_top_and_charted_in_bounds(tmp_path):
    """1,000 rules (a real code's policy): the terminal lists --top of them by bytes, the
    HTML chart the 30 largest (a 1,000-bar SVG was 10,000 px tall), the HTML table all."""
    rules = [{"name": f"r{i}", "hits": i, "bytes": 10 * i} for i in range(1000)]
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({
        "version": 1, "command": ["./app"], "policy": None, "returncode": 0, "processes": [],
        "totals": {"devices": [{"name": "system", "allocations": 1, "bytes": 1, "peak": 0,
                                "fallbacks": {"full": 0}}], "rules": rules}}))
    term = memplace("report", "--stats", str(stats), "--top", "5", check=True).stdout
    listed = re.findall(r"\br(\d+)\b", term)
    assert listed == ["999", "998", "997", "996", "995"], term
    assert "995 more rule(s)" in term and "not tracked" in term
    page = tmp_path / "page.html"
    memplace("report", "--stats", str(stats), "--html", str(page), check=True)
    html = page.read_text()
    rules_section = html[html.index("<h2>Rules</h2>"):]
    chart = rules_section[:rules_section.index("</svg>")]
    assert chart.count("<g><title>") == 30 and "r999:" in chart and "r0:" not in chart
    assert rules_section.count("<tr data-rule=") == 1000


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="needs Debian package chromium")
def test_html_page_renders_in_a_real_browser(inputs, tmp_path):
    """The page as a user sees it: headless chromium renders it to a PNG at 1280 px (a page
    with broken markup or a 10,000 px chart would be blank or that tall), and its DOM after
    rendering holds every section with its chart."""
    p, policy, stats = inputs
    page = tmp_path / "page.html"
    memplace("report", "--profile", str(p), "--stats", str(stats), "--policy", str(policy),
             "--html", str(page), check=True)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1280, 2400)
    assert len(png) > 20_000  # drawn, not a blank page
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    for title in ("Bytes per device", "Top sites by bytes", "Live bytes over time", "Fallbacks", "Rules", "Sites"):
        assert f"<h2>{title}</h2>" in dom, title
    heights = [float(h) for h in re.findall(r'<svg viewBox="0 0 \d+ ([\d.]+)"', dom)]
    assert heights and max(heights) < 2000, heights


def test_line_chart_draws_each_series_and_marks_runs_that_did_not_finish():
    """The capacity benchmark's plot: one line per series through its finished points, a
    cross and the status where a run did not finish (the line breaks there), x from the
    largest value to the smallest; well-formed standalone SVG."""
    import xml.etree.ElementTree as ET

    from memplace.report import line_chart_svg

    svg = line_chart_svg([("a <plain>", [(100, 1.0, "ok"), (75, None, "OOM"), (50, None, "OOM")]),
                          ("b", [(100, 2.0, "ok"), (75, 3.0, "ok"), (50, 5.0, "ok")])],
                         title="t", x_label="limit", y_label="s")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    assert len(lines) == 1  # "a" has one finished point: no line; "b" has three
    xs = [float(p.split(",")[0]) for p in lines[0].get("points").split()]
    assert xs == sorted(xs) and len(xs) == 3  # 100 left, 50 right
    assert len(root.findall(f"{ns}circle")) == 4
    assert [t.text for t in root.iter(f"{ns}text")].count("OOM") == 2
    assert "a &lt;plain&gt;" in svg


def test_devices_over_time_follow_the_policy_and_show_capacity(inputs, tmp_path):
    """A single run's plot: each device's live bytes per window of the profile, its sites
    placed by the policy, and each limited device's capacity as a flat line."""
    import xml.etree.ElementTree as ET

    p, policy, _ = inputs
    d = json.loads(memplace("report", "--profile", str(p), "--policy", str(policy), "--json", check=True).stdout)
    timeline = {x["device"]: x["live"] for x in d["device_timeline"]}
    # sites 0 (window 0, 500 B) and 1 (window 1, 1000 B) are on hbm; the six others on system
    assert timeline["hbm"] == [500, 1000, 0, 0]
    assert timeline["system"] == [sum(500 * (i + 1) for i in (2, 4, 6)), sum(500 * (i + 1) for i in (3, 5, 7)), 0, 0]
    out = tmp_path / "r.html"
    memplace("report", "--profile", str(p), "--policy", str(policy), "--html", str(out), check=True)
    page = out.read_text()
    assert "<h2>Devices over time</h2>" in page
    section = page[page.index("<h2>Devices over time</h2>"):]
    svg = section[section.index("<svg"):section.index("</svg>") + 6]
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    names = [t.text for t in root.iter(f"{ns}text")]
    assert "hbm" in names and "system" in names and "hbm capacity" in names and "4KiB" not in names
    lines = root.findall(f"{ns}polyline")
    assert len(lines) == 3  # hbm, system, hbm's capacity
    xs = [float(q.split(",")[0]) for q in lines[0].get("points").split()]
    assert xs == sorted(xs) and len(xs) == 4  # time runs to the right


def test_devices_over_time_needs_a_policy(inputs):
    p, _, stats = inputs
    d = json.loads(memplace("report", "--profile", str(p), "--stats", str(stats), "--json", check=True).stdout)
    assert d["device_timeline"] == []


def test_devices_over_time_send_what_does_not_fit_to_the_fallback(inputs, tmp_path):
    """A limited device holds at most its capacity in each window; the rest is drawn on the
    device it falls back to, as the runtime would place it."""
    p, _, _ = inputs
    policy = tmp_path / "spill.toml"
    policy.write_text('version = 1\ndefault = "system"\n[devices.hbm]\nkind = "numa"\nnodes = [0]\n'
                      'capacity = "1KiB"\nfallback = "system"\n'
                      '[[rules]]\nsite = ["/opt/app/bin/app+0x11c0"]\ndevice = "hbm"\n')  # site 7: 4000 B in window 1
    d = json.loads(memplace("report", "--profile", str(p), "--policy", str(policy), "--json", check=True).stdout)
    timeline = {x["device"]: x["live"] for x in d["device_timeline"]}
    assert timeline["hbm"] == [0, 1024, 0, 0]
    others = [sum(500 * (i + 1) for i in (0, 2, 4, 6)), sum(500 * (i + 1) for i in (1, 3, 5)), 0, 0]
    assert timeline["system"] == [others[0], others[1] + 4000 - 1024, 0, 0]


def test_sites_of_one_function_and_line_are_told_apart_by_their_caller(tmp_path):
    """Two sites in one allocation wrapper, reached from two call sites: the charts name
    each with the line it was called from, not twice the same label."""
    import subprocess
    import sys
    src = tmp_path / "wrap.c"
    src.write_text("""#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) char *grab(size_t n) { char *p = malloc(n); memset(p, 1, n); return p; }
int main(void) {
    char *a = grab(1 << 20);
    char *b = grab(2 << 20);
    free(a); free(b);
    return 0;
}
""")
    exe = tmp_path / "wrap"
    subprocess.run(["gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-o", str(exe), str(src)], check=True)
    subprocess.run([sys.executable, "-m", "memplace", "profile", "--out", str(tmp_path / "prof"), "--",
                    str(exe)], check=True, capture_output=True)
    prof, = (tmp_path / "prof").glob("*.json")
    html = tmp_path / "r.html"
    subprocess.run([sys.executable, "-m", "memplace", "report", "--profile", str(prof), "--html", str(html)],
                   check=True, capture_output=True)
    text = html.read_text()
    assert "grab (wrap.c:3) [&lt; wrap.c:5]" in text and "grab (wrap.c:3) [&lt; wrap.c:6]" in text


def test_policy_rules_of_sizes_alone_place_profile_sites(inputs):
    """A rule with a size and no site matches every site of that size (first match wins,
    in rule order, before and after rules of frames)."""
    p, policy, _ = inputs
    exe = "/opt/app/bin/app"
    policy.write_text('version = 1\n[devices.hbm]\nkind = "numa"\nnodes = [0]\n'
                      '[devices.slow]\nkind = "numa"\nnodes = [0]\n'
                      f'[[rules]]\nsite = ["{exe}+0x1040"]\ndevice = "slow"\n'
                      '[[rules]]\nsize = "1000..2000"\ndevice = "hbm"\n'
                      f'[[rules]]\nsite = ["{exe}+0x1000"]\ndevice = "slow"\n'
                      f'[[rules]]\nsite = ["{exe}+0x1080"]\ndevice = "slow"\n')
    d = json.loads(memplace("report", "--profile", str(p), "--policy", str(policy), "--json", check=True).stdout)
    placed = {s["frame"]: s["device"] for s in d["sites"]}
    # every site allocates 1000 bytes a call: the size rule takes all but the one before it
    assert placed["app+0x1040"] == "slow", placed
    assert placed["app+0x1000"] == placed["app+0x1080"] == placed["app+0x10c0"] == "hbm", placed
