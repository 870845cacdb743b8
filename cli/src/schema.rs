//! `gridsync schema [KIND]`: the kinds of record and the fields each takes, from client-core's
//! kind specs (the same words the dashboard and the phone app show).

use std::io::Write;

use gridsync_core::record::Kind;
use gridsync_core::record::schema::{self, FieldType};

use crate::table;

pub fn schema(
    kind: Option<Kind>,
    json: bool,
    markdown: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if markdown {
        write!(out, "{}", schema::markdown())?;
        return Ok(());
    }
    match (kind, json) {
        (None, true) => writeln!(out, "{}", serde_json::to_string_pretty(&schema::to_json())?)?,
        (Some(kind), true) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&kind.spec().to_json())?
        )?,
        (None, false) => {
            let rows: Vec<Vec<String>> = Kind::ALL
                .iter()
                .map(|k| {
                    let spec = k.spec();
                    vec![
                        k.as_str().to_string(),
                        format!("{} {}", spec.label.zh, spec.label.en),
                        spec.about.zh.to_string(),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table::render(&["类别 KIND", "名称 Name", "说明 About"], &rows)
            )?;
            writeln!(out, "某类的字段 Fields of one kind: gridsync schema KIND")?;
        }
        (Some(kind), false) => {
            let spec = kind.spec();
            writeln!(out, "{} {} ({kind})", spec.label.zh, spec.label.en)?;
            writeln!(out, "{}", spec.about.zh)?;
            writeln!(out, "{}", spec.about.en)?;
            writeln!(out)?;
            let mut rows = Vec::new();
            schema::walk(spec.fields, |path, f| {
                let (zh, en) = f.ty.describe();
                let mut ty = format!("{zh} {en}");
                if let FieldType::Ref(to) = f.ty {
                    ty.push_str(&format!(" → {to}"));
                }
                let mut notes = Vec::new();
                if f.required {
                    notes.push("必填 required".to_string());
                }
                if f.sensitive {
                    notes.push("敏感 sensitive".to_string());
                }
                if let FieldType::Choice(set) = f.ty {
                    notes.push(
                        set.choices
                            .iter()
                            .map(|c| format!("{}={}", c.code, c.label.zh))
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
                rows.push(vec![
                    path.to_string(),
                    format!("{} {}", f.label.zh, f.label.en),
                    ty,
                    notes.join("; "),
                ]);
            });
            write!(
                out,
                "{}",
                table::render(
                    &["字段 FIELD", "名称 Label", "类型 Type", "说明 Notes"],
                    &rows
                )
            )?;
        }
    }
    Ok(())
}
