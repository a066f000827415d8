"""The validation report as one self-contained HTML page (inline CSS, no script, no CDN).

Great Expectations' Data Docs load their CSS and JavaScript from CDNs, so offline they render
unstyled and their index lists no validations. This page is what a person opens instead: every
suite with its pass/fail count, then every expectation with its arguments and what was observed.
It works from disk, from an MLflow artifact view and from any static file server.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

REPORT_FILE = "report.html"
REPORT_MARKDOWN = "report.md"
STYLE = """
body{font-family:system-ui,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1f2328;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}
h2{font-size:1.15rem;margin:1.75rem 0 .5rem;border-bottom:1px solid #d0d7de;padding-bottom:.25rem}
.verdict{display:inline-block;padding:.2rem .6rem;border-radius:1rem;font-weight:600;color:#fff}
.pass{background:#1a7f37}.fail{background:#cf222e}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr.failed td{background:#ffebe9}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;word-break:break-word}
.muted{color:#656d76}
"""


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return html.escape(text)


def _suite_table(summary: dict[str, Any]) -> str:
    rows = []
    for name, counts in summary.get("suites", {}).items():
        ok = counts.get("failed", 0) == 0
        verdict = f'<span class="verdict {"pass" if ok else "fail"}">{"passed" if ok else "failed"}</span>'
        rows.append(f'<tr class="{"" if ok else "failed"}"><td><a href="#suite-{html.escape(name)}">'
                    f"{html.escape(name)}</a></td><td>{counts.get('evaluated', 0)}</td>"
                    f"<td>{counts.get('failed', 0)}</td><td>{verdict}</td></tr>")
    return ("<table><thead><tr><th>suite</th><th>expectations</th><th>failed</th><th>result</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def _expectation_tables(expectations: Sequence[dict[str, Any]], suites: Sequence[str]) -> str:
    parts = []
    for suite in suites:
        rows = [
            f'<tr class="{"" if e["success"] else "failed"}"><td><code>{html.escape(e["expectation"])}</code>'
            f'</td><td><code>{_cell(e["kwargs"])}</code></td><td>{_cell(e.get("observed"))}</td>'
            f'<td>{"ok" if e["success"] else "FAILED"}</td></tr>'
            for e in expectations if e["suite"] == suite
        ]
        parts.append(f'<h2 id="suite-{html.escape(suite)}">Suite <code>{html.escape(suite)}</code></h2>'
                     "<table><thead><tr><th>expectation</th><th>arguments</th><th>observed</th>"
                     f"<th>result</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return "".join(parts)


def render_report(summary: dict[str, Any], expectations: Sequence[dict[str, Any]],
                  failures: Sequence[str], title: str) -> str:
    """The whole page.

    Args:
        summary: the validate stage's ``summary.json`` (``success``, ``suites``, counts).
        expectations: one dict per expectation (``suite``, ``expectation``, ``kwargs``,
            ``success``, ``observed``), as :func:`cliper.data.validate.expectation_row` makes them.
        failures: the failure messages (with example rows), listed at the top when any.
        title: what was validated (e.g. the ingested folder).
    """
    ok = bool(summary.get("success"))
    verdict = f'<span class="verdict {"pass" if ok else "fail"}">{"PASSED" if ok else "FAILED"}</span>'
    counts = (f'{summary.get("expectations_evaluated", 0)} expectations, '
              f'{summary.get("expectations_failed", 0)} failed; {summary.get("users", "?")} users, '
              f'{summary.get("items", "?")} items, {summary.get("interactions", "?")} interactions')
    failed = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in failures)
    failed_block = f"<h2>Failures</h2><ul>{failed}</ul>" if failures else ""
    suites = list(summary.get("suites", {}))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Validation report: {html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Validation report {verdict}</h1><p class=\"muted\">{html.escape(title)}: {counts}</p>"
        f"{failed_block}<h2>Suites</h2>{_suite_table(summary)}{_expectation_tables(expectations, suites)}"
        '<p class="muted">Written by the cliper validate stage (Great Expectations results; the full '
        "Data Docs are in <code>data_docs/</code> and need internet access for their styles).</p>"
        "</body></html>\n"
    )


def _md(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(summary: dict[str, Any], expectations: Sequence[dict[str, Any]],
                    failures: Sequence[str], title: str) -> str:
    """The same report as markdown (for the Prefect UI's artifact page): suites, then expectations.

    Arguments as :func:`render_report`. Failed expectations are listed first.
    """
    ok = bool(summary.get("success"))
    lines = [f"# Validation report: {'PASSED' if ok else 'FAILED'}", "",
             f"`{title}`: {summary.get('expectations_evaluated', 0)} expectations, "
             f"{summary.get('expectations_failed', 0)} failed.", ""]
    if failures:
        lines += ["## Failures", "", *[f"- `{_md(f)}`" for f in failures], ""]
    lines += ["## Suites", "", "| suite | expectations | failed |", "| --- | --- | --- |"]
    lines += [f"| {name} | {c.get('evaluated', 0)} | {c.get('failed', 0)} |"
              for name, c in summary.get("suites", {}).items()]
    lines += ["", "## Expectations", "", "| suite | expectation | arguments | observed | result |",
              "| --- | --- | --- | --- | --- |"]
    ordered = sorted(expectations, key=lambda e: e["success"])  # stable: failures first
    lines += [f"| {e['suite']} | `{e['expectation']}` | `{_md(e['kwargs'])}` | {_md(e.get('observed'))} | "
              f"{'ok' if e['success'] else '**FAILED**'} |" for e in ordered]
    return "\n".join(lines) + "\n"
