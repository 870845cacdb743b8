//! Record commands: create, update, get, list, conflicts.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, FixedOffset, Utc};
use gridsync_core::record::{IndexRow, Kind, Record};
use gridsync_core::store::{DB_FILE, RecordConflicts, SALVAGE_FILE};
use gridsync_core::{Query, Replica};
use serde_json::{Map, Value, json};

use crate::{clock, table, words};

/// Widest title shown in a list table, in terminal columns.
const TITLE_COLS: usize = 40;

/// Opens a replica that `gridsync login` has set up; never creates one.
pub fn open_existing(dir: &Path) -> Result<Replica> {
    // A salvage cut short has moved the damaged file aside; opening finishes it.
    if !dir.join(DB_FILE).is_file() && !dir.join(SALVAGE_FILE).is_file() {
        bail!(
            "副本不存在 no replica in {}: run `gridsync login` first, or pass --replica DIR",
            dir.display()
        );
    }
    let mut replica = crate::keys::open(dir)?;
    replica.identity()?;
    // The relay's zone unless GRIDSYNC_UTC_OFFSET says otherwise.
    if let Some(offset) = clock::override_offset()? {
        replica.set_utc_offset(Some(offset));
    }
    replica.set_attachment_settings(crate::attachments::settings()?);
    Ok(replica)
}

pub fn create(dir: &Path, kind: Kind, json: &str, out: &mut dyn Write) -> Result<()> {
    let fields = read_fields(json)?;
    let mut replica = open_existing(dir)?;
    let record = replica.create(kind, fields)?;
    writeln!(out, "{}", record.id)?;
    Ok(())
}

pub fn update(dir: &Path, id: &str, json: &str, out: &mut dyn Write) -> Result<()> {
    let patch = read_fields(json)?;
    let mut replica = open_existing(dir)?;
    let record = replica.update(id, patch)?;
    writeln!(out, "{}", record.id)?;
    Ok(())
}

pub fn get(dir: &Path, id: &str, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let mut replica = open_existing(dir)?;
    let record = replica.get(id)?;
    if as_json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&Value::Object(record.fields))?
        )?;
    } else {
        out.write_all(render_record(&record, replica.utc_offset()).as_bytes())?;
        writeln!(
            out,
            "{}",
            clock::says(replica.utc_offset(), replica.zone_source())
        )?;
    }
    Ok(())
}

pub struct ListArgs {
    pub kind: Kind,
    pub grid: Option<String>,
    pub status: Option<String>,
    pub household: Option<String>,
    pub overdue: bool,
    pub mine: bool,
    pub json: bool,
}

pub fn list(dir: &Path, args: ListArgs, out: &mut dyn Write) -> Result<()> {
    let replica = open_existing(dir)?;
    let me = args
        .mine
        .then(|| replica.identity().map(|i| i.worker_id.clone()))
        .transpose()?;
    let today = clock::today(replica.utc_offset())?;
    let query = Query {
        kind: Some(args.kind),
        grid: args.grid,
        status: args.status,
        household: args.household,
        assigned_to: me.clone(),
        due_before: args.overdue.then(|| today.format("%Y-%m-%d").to_string()),
        not_closed: args.mine,
        by_due: args.mine,
        ..Query::default()
    };
    let rows = replica.list(&query)?;
    let offset = replica.utc_offset();
    // A worker's plan for the day: the tasks, and the households due for a visit by today.
    let visits_due = match (&me, args.kind, args.json) {
        (Some(me), Kind::Task, false) => replica.list(&Query {
            kind: Some(Kind::Household),
            assigned_to: Some(me.clone()),
            due_before: today.succ_opt().map(|d| d.format("%Y-%m-%d").to_string()),
            by_due: true,
            ..Query::default()
        })?,
        _ => Vec::new(),
    };
    if args.json {
        let rows: Vec<Value> = rows.iter().map(row_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    if !visits_due.is_empty() {
        writeln!(
            out,
            "今日待走访 {n} 户 Households due for a visit by today: {n}",
            n = visits_due.len()
        )?;
        out.write_all(render_rows(&visits_due, offset).as_bytes())?;
        writeln!(out)?;
    }
    if rows.is_empty() {
        writeln!(out, "没有记录 No {} records", args.kind.as_str())?;
        return Ok(());
    }
    out.write_all(render_rows(&rows, offset).as_bytes())?;
    writeln!(
        out,
        "共 {n} 条记录 {n} {} record(s)；{}",
        args.kind.as_str(),
        clock::says(offset, replica.zone_source()),
        n = rows.len()
    )?;
    if rows.iter().any(|r| r.has_conflicts) {
        writeln!(
            out,
            "有冲突的记录请运行 `gridsync conflicts` 查看 Run `gridsync conflicts` to review conflicts"
        )?;
    }
    Ok(())
}

pub fn conflicts(dir: &Path, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let mut replica = open_existing(dir)?;
    let all = replica.conflicts()?;
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
    } else if all.is_empty() {
        writeln!(out, "没有冲突 No conflicts")?;
    } else {
        out.write_all(render_conflicts(&all, replica.utc_offset()).as_bytes())?;
    }
    Ok(())
}

/// Reads the `--json` argument: inline JSON, `@path` for a file, or `-` for stdin.
fn read_fields(arg: &str) -> Result<Map<String, Value>> {
    let (text, source) = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("无法读取标准输入 cannot read stdin")?;
        (text, "stdin".to_string())
    } else if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("无法读取文件 cannot read {path}"))?;
        (text, path.to_string())
    } else {
        (arg.to_string(), "--json".to_string())
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("JSON 无效 invalid JSON in {source}: {e}"))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => bail!("记录无效 invalid record: a record must be a JSON object ({source})"),
    }
}

fn row_json(row: &IndexRow) -> Value {
    json!({
        "id": row.id,
        "kind": row.kind,
        "grid_id": row.grid_id,
        "household_id": row.household_id,
        "status": row.status,
        "assigned_to": row.assigned_to,
        "due_at": row.due_at,
        "title": row.title,
        "updated_at": row.updated_at,
        "has_conflicts": row.has_conflicts,
    })
}

fn render_rows(rows: &[IndexRow], offset: FixedOffset) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut title = table::clean(&words::title(r.kind, &r.title));
            if r.has_conflicts {
                title = format!("[冲突 conflict] {title}");
            }
            let status = r
                .status
                .as_deref()
                .map(|s| words::status(r.kind, s))
                .unwrap_or_default();
            vec![
                r.id.clone(),
                table::truncate(&title, TITLE_COLS),
                table::clean(&status),
                r.due_at
                    .as_deref()
                    .map(|t| clock::show(t, offset))
                    .unwrap_or_default(),
                r.updated_at
                    .as_deref()
                    .map(|t| clock::show(t, offset))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table::render(
        &[
            "编号 ID",
            "标题 Title",
            "状态 Status",
            "到期 Due",
            "更新 Updated",
        ],
        &cells,
    )
}

fn render_record(record: &Record, offset: FixedOffset) -> String {
    let mut out = format!(
        "{} {} {}\n",
        record.kind.label_zh(),
        record.kind.as_str(),
        record.id
    );
    let pairs: Vec<(String, String)> = words::fields(record, offset)
        .into_iter()
        .map(|(label, value)| (format!("  {label}"), value))
        .collect();
    out.push_str(&table::key_values(&pairs));
    out
}

fn render_conflicts(all: &[RecordConflicts], offset: FixedOffset) -> String {
    let mut out = String::new();
    for rc in all {
        out.push_str(&format!(
            "{} {} {}  {}\n",
            rc.kind.label_zh(),
            rc.kind.as_str(),
            rc.id,
            table::clean(&rc.title)
        ));
        for field in &rc.fields {
            out.push_str(&format!(
                "  字段 field {} `{}`:\n",
                words::field(rc.kind, &field.field),
                field.field
            ));
            for (i, v) in field.values.iter().enumerate() {
                let at = v
                    .written_at
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                    .map(|t| {
                        t.with_timezone(&offset)
                            .format("%Y-%m-%d %H:%M")
                            .to_string()
                    })
                    .unwrap_or_else(|| "?".into());
                let shown = if i == 0 { "  (当前显示 shown)" } else { "" };
                out.push_str(&format!(
                    "    - {}  作者 by {}, 时间 at {at}{shown}\n",
                    v.value,
                    v.author.as_deref().unwrap_or("?"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::doc::{ConflictValue, FieldConflict};

    fn row(id: &str, title: &str, conflicts: bool) -> IndexRow {
        IndexRow {
            id: id.into(),
            kind: Kind::Case,
            grid_id: "g1".into(),
            household_id: None,
            status: Some("open".into()),
            assigned_to: None,
            due_at: Some("2026-12-01".into()),
            title: title.into(),
            created_at: None,
            updated_at: None,
            deleted: false,
            has_conflicts: conflicts,
        }
    }

    #[test]
    fn test_rows_render_with_chinese_first_headers_and_conflict_mark() {
        let long = "低保 ".repeat(30);
        let east8 = FixedOffset::east_opt(8 * 3600).unwrap();
        let text = render_rows(&[row("c1", &long, true), row("c2", "a\nb", false)], east8);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("编号 ID | 标题 Title"), "{text}");
        assert!(lines[2].contains("[冲突 conflict]") && lines[2].contains('…'));
        assert!(lines[3].contains("a b") && lines[3].contains("2026-12-01"));
        // The status column starts at the same display column on both rows.
        let col = |l: &str| l.find(" | 已立案").map(|i| table::width(&l[..i]));
        assert!(col(lines[2]).is_some_and(|c| c <= "编号 ID | ".len() + TITLE_COLS));
        assert_eq!(col(lines[2]), col(lines[3]));
    }

    #[test]
    fn test_conflicts_render_every_value_with_author() {
        let value = |v: Value, who: &str| ConflictValue {
            value: v,
            author: Some(who.into()),
            written_at: Some(0),
            change: String::new(),
        };
        let all = [RecordConflicts {
            id: "c1".into(),
            kind: Kind::Case,
            title: "low_income".into(),
            fields: vec![FieldConflict {
                field: "status".into(),
                values: vec![value(json!("closed"), "w1"), value(json!("referred"), "w2")],
            }],
        }];
        let text = render_conflicts(&all, FixedOffset::east_opt(8 * 3600).unwrap());
        assert!(text.starts_with("帮扶个案 case c1"), "{text}");
        assert!(text.contains("`status`"), "{text}");
        assert!(text.contains("\"closed\"  作者 by w1") && text.contains("当前显示"));
        assert!(text.contains("\"referred\"  作者 by w2"), "{text}");
    }

    #[test]
    fn test_inline_json_must_be_an_object() {
        assert_eq!(read_fields(r#"{"a": 1}"#).unwrap()["a"], 1);
        assert!(read_fields("[]").is_err());
        assert!(read_fields("{").is_err());
    }
}
