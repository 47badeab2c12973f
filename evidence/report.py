"""The human-readable PDF of an evidence pack: a summary page and one table per record set (fpdf2).

The PDF is a convenience for reading; the evidence is the signed CSV/JSON beside it. Core PDF fonts keep
it offline-safe and small; text outside Latin-1 is shown with replacement characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fpdf import FPDF
from fpdf.fonts import FontFace

MAX_ROWS = 300  # per table in the PDF; the CSV/JSON carry every row
MAX_COLUMNS = 9
MAX_CELL = 80
HIDDEN_COLUMNS = frozenset({"actor_commit", "prev_hash", "actor_salt", "scenario"})  # in the CSV/JSON, not the PDF


@dataclass(frozen=True)
class ReportData:
    """What the report shows; the pack builder fills it.

    Example: ``ReportData("dc1", "2026-10-01 00:00 UTC", "2026-11-01 00:00 UTC", "2026-11-02 09:00 UTC",
    "3f2a…", "pseudonymised", {"alert_transitions": rows}, audit_summary)``.
    """

    site: str
    period_from: str
    period_to: str
    generated_at: str
    key_id: str
    names: str
    tables: Mapping[str, Sequence[Mapping[str, object]]]
    audit: Mapping[str, object]
    excluded: Mapping[str, int] = field(default_factory=dict)


class _ReportPdf(FPDF):
    def __init__(self, title: str):
        super().__init__(orientation="landscape", format="A4")
        self.report_title = title
        self.set_auto_page_break(auto=True, margin=14)
        self.set_title(title)
        self.set_creator("facwatch")

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("Helvetica", size=7)
        self.set_text_color(110)
        self.cell(0, 5, _latin1(f"{self.report_title} — page {self.page_no()}/{{nb}}"), align="C")
        self.set_text_color(0)


def render_report(data: ReportData) -> bytes:
    """The report as PDF bytes."""
    pdf = _ReportPdf(f"facwatch evidence — {data.site} — {data.period_from} to {data.period_to}")
    pdf.add_page()
    _summary(pdf, data)
    for name, rows in data.tables.items():
        _table(pdf, name, rows)
    return bytes(pdf.output())


def _summary(pdf: FPDF, data: ReportData) -> None:
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(f"Evidence pack — {data.site}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 6, _latin1(f"Period {data.period_from} to {data.period_to} (UTC, end exclusive)"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    facts = [("Generated", data.generated_at), ("Signing key id", data.key_id), ("Personal names", data.names)]
    facts += [(f"Audit log: {key}", str(value)) for key, value in data.audit.items()]
    facts += [(f"Records: {name}", f"{len(rows)} rows" + _excluded(data.excluded.get(name, 0)))
              for name, rows in data.tables.items()]
    _grid(pdf, ["", ""], [list(f) for f in facts], widths=(60, 200), header=False)
    pdf.ln(4)
    _bar_chart(pdf, {name: len(rows) for name, rows in data.tables.items()})
    pdf.ln(4)
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(0, 5, _latin1(
        "How to verify: run `facwatch evidence verify <pack.zip>`. It checks the manifest signature, the SHA-256 of "
        "every file, that no file was added or removed, the audit-log hash chain from its anchor, sequence "
        "contiguity and every signed checkpoint. Compare the signing key id above with the one the operator "
        "published. Drill and simulated-scenario records are excluded from this evidence."),
        new_x="LMARGIN", new_y="NEXT")


def _bar_chart(pdf: FPDF, counts: Mapping[str, int]) -> None:
    if not counts:
        return
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "Rows per record set", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)
    top, widest = max(counts.values()) or 1, 180.0
    for name, count in counts.items():
        y = pdf.get_y()
        pdf.cell(60, 5, _latin1(name))
        pdf.set_fill_color(70, 110, 170)
        pdf.rect(pdf.l_margin + 60, y + 1, max(widest * count / top, 0.4), 3, style="F")
        pdf.set_xy(pdf.l_margin + 62 + widest * count / top, y)
        pdf.cell(20, 5, str(count), new_x="LMARGIN", new_y="NEXT")
    pdf.set_fill_color(255)


def _table(pdf: FPDF, name: str, rows: Sequence[Mapping[str, object]]) -> None:
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(0, 8, _latin1(name), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)
    if not rows:
        pdf.cell(0, 6, "No records in this period.", new_x="LMARGIN", new_y="NEXT")
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    shown = [c for c in columns if c not in HIDDEN_COLUMNS][:MAX_COLUMNS]
    note = f"{len(rows)} rows"
    if len(rows) > MAX_ROWS:
        note += f"; the first {MAX_ROWS} are shown"
    if len(columns) > len(shown):
        note += f"; {len(columns) - len(shown)} more columns"
    pdf.cell(0, 5, _latin1(f"{note} — every row and column is in records/{name}.csv and .json"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    body = [[_cell(row.get(column)) for column in shown] for row in rows[:MAX_ROWS]]
    _grid(pdf, shown, body)


def _grid(pdf: FPDF, headings: Sequence[str], body: Sequence[Sequence[str]], widths: Sequence[int] | None = None,
          header: bool = True) -> None:
    pdf.set_font("Helvetica", size=7 if header else 9)
    style = FontFace(emphasis="BOLD", fill_color=(215, 222, 235))
    with pdf.table(col_widths=widths, headings_style=style, first_row_as_headings=header, line_height=4,
                   text_align="LEFT", align="LEFT", width=sum(widths) if widths else None,
                   cell_fill_color=(244, 246, 250), cell_fill_mode="ROWS") as table:
        if header:
            table.row([_latin1(h) for h in headings])
        for values in body:
            table.row([_latin1(v) for v in values])


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:16] + "…"  # a SHA-256: the prefix identifies it, the CSV has it whole
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _excluded(count: int) -> str:
    return f" ({count} drill/scenario rows excluded)" if count else ""


def _latin1(text: str) -> str:
    return text.replace("—", "-").replace("…", "...").replace("→", "->").replace("–", "-").encode(
        "latin-1", "replace").decode("latin-1")
