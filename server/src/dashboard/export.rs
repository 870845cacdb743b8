//! Exports of any list with its filters, as CSV (UTF-8 with a byte-order mark, so Excel reads
//! the Chinese) and XLSX (rust_xlsxwriter). Headers and values are in Chinese, the language of
//! the street office the figures go to.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridsync_core::record::Kind;
use rust_xlsxwriter::{Format, Workbook};

use super::auth::Staff;
use super::board::timing;
use super::i18n::Lang;
use super::lists::{ListParams, title};
use super::{Dashboard, Fail, attachments, gallery, status_label, subtype_group};
use crate::AppState;
use crate::storage::{ListedRecord, RecordQuery};

/// Rows an export holds at most.
const MAX_ROWS: usize = 100_000;

/// A file to download.
pub fn download(content_type: &'static str, filename: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

/// The most a spreadsheet cell holds: Excel's limit, counted as Excel counts (UTF-16 units).
const MAX_CELL: usize = 32_767;
/// What ends a cell that was cut to fit.
const CUT_MARK: &str = "…[已截断]";

/// A cell as it fits in a spreadsheet: a longer text is cut, and says so. One overlong field
/// (stored before fields were bounded, or a long free text) must not fail the whole export.
fn fit(cell: &str) -> Cow<'_, str> {
    if cell.encode_utf16().count() <= MAX_CELL {
        return Cow::Borrowed(cell);
    }
    let room = MAX_CELL - CUT_MARK.encode_utf16().count();
    let (mut used, mut end) = (0, 0);
    for (at, c) in cell.char_indices() {
        if used + c.len_utf16() > room {
            break;
        }
        used += c.len_utf16();
        end = at + c.len_utf8();
    }
    Cow::Owned(format!("{}{CUT_MARK}", &cell[..end]))
}

/// CSV per RFC 4180 with a BOM and CRLF. A cell starting like a formula gets a leading `'`,
/// so a spreadsheet never runs what a field worker typed; a cell too long for a spreadsheet is
/// cut like in the XLSX export.
pub fn csv(headers: &[String], rows: &[Vec<String>]) -> Vec<u8> {
    let mut out = String::from("\u{feff}");
    for row in std::iter::once(headers).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

fn csv_cell(cell: &str) -> String {
    let guarded = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    };
    let fitted = fit(&guarded);
    if fitted.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", fitted.replace('"', "\"\""))
    } else {
        fitted.into_owned()
    }
}

/// One sheet with a bold, frozen header row; every cell fits (see [`fit`]).
pub fn xlsx(
    sheet: &str,
    headers: &[String],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name(sheet)?;
    let bold = Format::new().set_bold();
    for (c, h) in headers.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, fit(h), &bold)?;
        ws.set_column_width(c as u16, (h.chars().count() as f64 * 2.2).max(10.0))?;
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (r, c) = (r as u32 + 1, c as u16);
            // Counts are numbers in the sheet, so they add up; everything else is text.
            match cell.parse::<i64>() {
                Ok(n) if !cell.starts_with('0') || cell == "0" => {
                    ws.write_number(r, c, n as f64)?
                }
                _ => ws.write_string(r, c, fit(cell))?,
            };
        }
    }
    ws.set_freeze_panes(1, 0)?;
    book.save_to_buffer()
}

pub fn xlsx_response(
    filename: &str,
    result: Result<Vec<u8>, rust_xlsxwriter::XlsxError>,
    lang: Lang,
) -> Response {
    match result {
        Ok(bytes) => download(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            filename,
            bytes,
        ),
        Err(e) => {
            tracing::error!("xlsx export: {e}");
            Fail::new(StatusCode::INTERNAL_SERVER_ERROR, lang.t("err.storage")).into_response()
        }
    }
}

/// One table of figures as the page, the CSV and the XLSX show it: a row a grid (or a worker,
/// a unit, an item), the first cell naming it, the rest numbers.
pub struct Sheet {
    /// The table's id on the page and its `table=` in export links.
    pub id: &'static str,
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Sheet {
    /// The table on a page, with links exporting it (`base` is the export path without its
    /// extension, `qs` the page's query string).
    pub fn html(&self, lang: Lang, base: &str, qs: &str) -> maud::Markup {
        let link = |ext: &str| format!("{base}.{ext}?{qs}&table={}", self.id);
        maud::html! {
            section class="sheet" {
                div class="sheet-head" {
                    h2 { (self.title) }
                    span class="spacer" {}
                    a class="button" id={ (self.id) "-csv" } href=(link("csv")) { (lang.t("export.csv")) }
                    a class="button" id={ (self.id) "-xlsx" } href=(link("xlsx")) { (lang.t("export.xlsx")) }
                }
                @if self.rows.is_empty() { p class="muted" { (lang.t("none")) } } @else {
                div class="scroll" {
                    table class="stats" id=(self.id) {
                        thead { tr { @for (i, h) in self.headers.iter().enumerate() {
                            @if i == 0 { th { (h) } } @else { th class="num" { (h) } }
                        } } }
                        tbody { @for row in &self.rows { tr { @for (i, c) in row.iter().enumerate() {
                            @if i == 0 { th { (c) } } @else { td class="num" { (c) } }
                        } } } }
                    }
                }
                }
            }
        }
    }

    pub fn csv_response(&self, filename: &str) -> Response {
        download(
            "text/csv; charset=utf-8",
            &format!("{filename}.csv"),
            csv(&self.headers, &self.rows),
        )
    }

    pub fn xlsx_response(&self, filename: &str, lang: Lang) -> Response {
        xlsx_response(
            &format!("{filename}.xlsx"),
            xlsx(&self.title, &self.headers, &self.rows),
            lang,
        )
    }
}

/// The sheet a `table=` asks for, the first when none or an unknown one is named.
pub fn pick<'a>(sheets: &'a [Sheet], id: &str) -> Option<&'a Sheet> {
    sheets.iter().find(|s| s.id == id).or(sheets.first())
}

async fn list_rows(
    state: &AppState,
    staff: &Staff,
    p: &ListParams,
) -> Result<(Vec<String>, Vec<Vec<String>>), Fail> {
    let dash = &state.dashboard;
    let q = RecordQuery {
        limit: Some(MAX_ROWS),
        ..p.to_query(staff, dash)
    };
    let found = state
        .relay
        .queries()
        .list_records(&q)
        .await
        .map_err(|e| Fail::storage(staff.lang, e))?;
    let reports = p.kind() == Some(Kind::Report);
    let mut headers: Vec<String> = [
        "编号",
        "类别",
        "网格",
        "标题",
        "类型",
        "状态",
        "负责人",
        "创建人",
        "日期",
        "到期",
        "创建时间",
        "更新时间",
        "服务器接收时间",
        "摘要",
        "字段冲突",
        "并行编辑",
    ]
    .map(String::from)
    .to_vec();
    if reports {
        headers.extend(["紧急程度", "报送时限", "电话报送时间", "报送情况"].map(String::from));
    }
    // Photos and files: a count for the kinds that carry them (blank for the others in a list
    // of every kind).
    let counted = p.kind().is_none_or(gallery::carries);
    if counted {
        headers.push("附件数".into());
    }
    let carrying: Vec<String> = found
        .rows
        .iter()
        .filter(|r| counted && gallery::carries(r.row.kind))
        .map(|r| r.row.id.clone())
        .collect();
    let counts = attachments::counts(state, staff.lang, &carrying).await?;
    let mut rows = Vec::with_capacity(found.rows.len());
    for r in &found.rows {
        let mut cells = row(staff, dash, r, reports);
        if counted {
            cells.push(if gallery::carries(r.row.kind) {
                counts.get(&r.row.id).copied().unwrap_or(0).to_string()
            } else {
                String::new()
            });
        }
        rows.push(cells);
    }
    Ok((headers, rows))
}

fn row(staff: &Staff, dash: &Dashboard, r: &ListedRecord, reports: bool) -> Vec<String> {
    let zh = Lang::Zh;
    let time = |s: Option<&str>| s.map(|s| dash.show_time(s)).unwrap_or_default();
    let yes = |b: bool| if b { "是" } else { "" }.to_string();
    let mut cells = vec![
        r.row.id.clone(),
        zh.label("kind", r.row.kind.as_str()),
        staff.grid_name(&r.row.grid_id),
        // Exports name people by username (see the worker and author columns).
        title(zh, dash, r, &std::collections::HashMap::new()),
        r.facts
            .subtype
            .as_deref()
            .map(|t| zh.label(subtype_group(r.row.kind), t))
            .unwrap_or_default(),
        status_label(zh, r.row.kind, r.row.status.as_deref()),
        r.row.assigned_to.clone().unwrap_or_default(),
        r.facts.created_by.clone().unwrap_or_default(),
        time(r.facts.occurred_at.as_deref()),
        r.row.due_at.clone().unwrap_or_default(),
        time(r.row.created_at.as_deref()),
        time(r.row.updated_at.as_deref()),
        time(Some(&r.received_at)),
        r.facts.summary.clone(),
        yes(r.row.has_conflicts),
        yes(r.parallel),
    ];
    if reports {
        let t = timing(dash, r);
        cells.extend([
            r.facts
                .urgency
                .as_deref()
                .map(|u| zh.label("urgency", u))
                .unwrap_or_default(),
            t.deadline
                .map(|d| dash.show_time(&d.to_rfc3339()))
                .unwrap_or_default(),
            time(r.facts.phoned_in_at.as_deref()),
            match t.on_time {
                Some(true) => "按时报送".into(),
                Some(false) => "超时报送".into(),
                None => String::new(),
            },
        ]);
    }
    cells
}

fn filename(p: &ListParams, ext: &str) -> String {
    let kind = p.kind().map_or("all", |k| k.as_str());
    format!(
        "gridsync-{kind}-{}.{ext}",
        chrono::Utc::now().format("%Y%m%d-%H%M")
    )
}

pub async fn list_csv(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<ListParams>,
) -> Result<Response, Fail> {
    let (headers, rows) = list_rows(&state, &staff, &p).await?;
    Ok(download(
        "text/csv; charset=utf-8",
        &filename(&p, "csv"),
        csv(&headers, &rows),
    ))
}

pub async fn list_xlsx(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<ListParams>,
) -> Result<Response, Fail> {
    let (headers, rows) = list_rows(&state, &staff, &p).await?;
    Ok(xlsx_response(
        &filename(&p, "xlsx"),
        xlsx("记录", &headers, &rows),
        staff.lang,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_csv_quotes_and_defuses_formulas() {
        let out = csv(
            &["名称".into()],
            &[
                vec!["a,b".into()],
                vec!["=1+1".into()],
                vec!["说\"好\"".into()],
            ],
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with('\u{feff}'));
        assert_eq!(
            text,
            "\u{feff}名称\r\n\"a,b\"\r\n'=1+1\r\n\"说\"\"好\"\"\"\r\n"
        );
    }

    #[test]
    fn test_a_cell_longer_than_excel_allows_is_cut_with_a_mark() {
        let long = "长".repeat(33_000);
        // Characters outside the BMP count twice in Excel's limit.
        let wide = "😀".repeat(20_000);
        let bytes = xlsx("记录", &["摘要".into()], &[vec![long.clone()], vec![wide]]).unwrap();
        assert_eq!(&bytes[..2], b"PK");
        let cut = fit(&long);
        assert!(cut.ends_with(CUT_MARK));
        assert_eq!(cut.encode_utf16().count(), MAX_CELL);
        let cut = fit(&"😀".repeat(20_000)).into_owned();
        assert!(cut.encode_utf16().count() <= MAX_CELL && cut.ends_with(CUT_MARK));
        assert_eq!(fit("短"), "短", "short cells stay as they are");

        let text = String::from_utf8(csv(&["摘要".into()], &[vec![long]])).unwrap();
        let cell = text.lines().nth(1).unwrap();
        assert_eq!(cell, fit(&"长".repeat(33_000)));
    }

    #[test]
    fn test_xlsx_is_a_zip_workbook() {
        let bytes = xlsx(
            "记录",
            &["网格".into(), "数量".into()],
            &[vec!["第一网格".into(), "3".into()]],
        )
        .unwrap();
        assert_eq!(&bytes[..2], b"PK");
    }
}
