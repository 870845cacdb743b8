//! The schema as people and programs read it: JSON (`gridsync schema --json`, the phone
//! bindings) and Markdown (docs/records.md, generated from here and checked by a test).

use std::fmt::Write;

use serde_json::{Value, json};

use super::{Field, FieldType, KindSpec, SYSTEM};
use crate::record::Kind;

impl FieldType {
    /// The type's name for people (zh-CN, English).
    pub fn describe(&self) -> (&'static str, &'static str) {
        match self {
            FieldType::Name => ("短文本", "short text"),
            FieldType::Place => ("地点", "place"),
            FieldType::Text => ("长文本", "text"),
            FieldType::Event => ("发生时间", "time it happened"),
            FieldType::Instant => ("时间", "time"),
            FieldType::Date => ("日期", "date"),
            FieldType::BirthDate => ("出生日期", "birth date"),
            FieldType::Number => ("数字", "number"),
            FieldType::Bool => ("是/否", "yes/no"),
            FieldType::Gps => ("位置", "position"),
            FieldType::Choice(_) => ("选项", "choice"),
            FieldType::Ref(_) => ("记录编号", "record id"),
            FieldType::Object(_) => ("多项", "parts"),
            FieldType::List(_) => ("列表", "list"),
            FieldType::Entries(_) => ("条目列表", "entries"),
            FieldType::Log(_) => ("追加列表", "append-only entries"),
        }
    }
}

fn type_json(ty: &FieldType) -> Value {
    let mut out = json!({ "type": ty.name() });
    match ty {
        FieldType::Choice(set) => {
            out["group"] = json!(set.group);
            out["choices"] = json!(set.choices);
        }
        FieldType::Ref(kind) => out["ref"] = json!(kind.as_str()),
        FieldType::List(inner) => out["items"] = type_json(inner),
        FieldType::Object(parts) | FieldType::Entries(parts) | FieldType::Log(parts) => {
            out["fields"] = fields_json(parts);
        }
        _ => {}
    }
    out
}

fn fields_json(fields: &[Field]) -> Value {
    Value::Array(
        fields
            .iter()
            .map(|f| {
                let mut out = json!({
                    "name": f.name,
                    "label": f.label,
                    "required": f.required,
                    "sensitive": f.sensitive,
                });
                if let (Value::Object(out), Value::Object(ty)) = (&mut out, type_json(&f.ty)) {
                    out.extend(ty);
                }
                out
            })
            .collect(),
    )
}

impl KindSpec {
    /// The kind as JSON: its name, labels and fields, each with its label, type, whether it is
    /// required or sensitive, and its choices, referenced kind or parts.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "label": self.label,
            "about": self.about,
            "status_field": self.status,
            "type_field": self.subtype,
            "fields": fields_json(self.fields),
            "computed": fields_json(&self.computed.iter().map(|c| c.field).collect::<Vec<_>>()),
        })
    }
}

/// Every kind people create, and the system fields every record carries, as JSON.
pub fn to_json() -> Value {
    json!({
        "kinds": Kind::ALL.iter().map(|k| k.spec().to_json()).collect::<Vec<_>>(),
        "system_fields": fields_json(SYSTEM),
    })
}

/// docs/records.md: every kind, its fields and their choices.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# 记录类别与字段 Record kinds and their fields\n\n\
         <!-- Generated from client-core's kind specs (`record::schema`) by \
         `gridsync schema --markdown`; a test checks it is up to date. Do not edit by hand. -->\n\n\
         每类记录的字段：名称、类型、是否必填、是否敏感，以及可选值。`gridsync schema [KIND]` 在设备上\
         显示同样的内容，`--json` 供程序读取。未知字段名在本地写入时被拒绝，并提示最接近的字段名。\n\n\
         The fields of every kind of record: name, type, required or not, sensitive or not, and the \
         choices. `gridsync schema [KIND]` shows the same on a device, `--json` for programs. An \
         unknown field name in a local write is refused with the nearest known name suggested.\n\n",
    );
    for kind in Kind::ALL {
        let spec = kind.spec();
        let _ = write!(
            out,
            "## {} {} (`{}`)\n\n{}\n\n{}\n\n",
            spec.label.zh,
            spec.label.en,
            kind.as_str(),
            spec.about.zh,
            spec.about.en
        );
        fields_table(&mut out, spec.fields);
        for computed in spec.computed {
            let f = &computed.field;
            let _ = writeln!(
                out,
                "计算字段（只读）Computed, read-only: `{}` {} {}\n",
                f.name, f.label.zh, f.label.en
            );
        }
    }
    out.push_str(
        "## 系统字段 System fields\n\n由设备写入，不能修改。Set by the device, never by a write.\n\n",
    );
    fields_table(&mut out, SYSTEM);
    out
}

fn fields_table(out: &mut String, fields: &'static [Field]) {
    out.push_str(
        "| 字段 Field | 名称 Label | 类型 Type | 必填 Required | 可选值 Choices |\n|---|---|---|---|---|\n",
    );
    super::walk(fields, |path, f| {
        let (zh, en) = f.ty.describe();
        let mut ty = format!("{zh} {en}");
        match f.ty {
            FieldType::Ref(kind) => {
                let _ = write!(ty, " → `{kind}`");
            }
            FieldType::List(inner) => {
                let (zh, en) = inner.describe();
                let _ = write!(ty, " of {zh} {en}");
            }
            _ => {}
        }
        if f.sensitive {
            ty.push_str(" · 敏感 sensitive");
        }
        let choices = match f.ty {
            FieldType::Choice(set) => set
                .choices
                .iter()
                .map(|c| format!("`{}` {} {}", c.code, c.label.zh, c.label.en))
                .collect::<Vec<_>>()
                .join("<br>"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| `{path}` | {} {} | {ty} | {} | {choices} |",
            f.label.zh,
            f.label.en,
            if f.required { "是 yes" } else { "" }
        );
    });
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/records.md is what the specs say; after changing a kind, regenerate it with
    /// `cargo run -p gridsync-cli -- schema --markdown > docs/records.md`.
    #[test]
    fn test_docs_records_md_is_generated_from_the_specs() {
        let committed = include_str!("../../../../docs/records.md");
        assert!(
            committed == markdown(),
            "docs/records.md is out of date: run `cargo run -p gridsync-cli -- schema --markdown > docs/records.md`"
        );
    }

    #[test]
    fn test_the_json_schema_names_every_field_with_its_type_and_choices() {
        let schema = to_json();
        let household = &schema["kinds"][0];
        assert_eq!(household["kind"], "household");
        assert_eq!(household["label"]["zh"], "户");
        let head = &household["fields"][0];
        assert_eq!(head["name"], "head_name");
        assert_eq!(head["required"], true);
        assert_eq!(head["type"], "name");
        let residents = household["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "residents")
            .unwrap();
        let id_number = residents["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "id_number")
            .unwrap();
        assert_eq!(id_number["sensitive"], true);
        let case = Kind::Case.spec().to_json();
        let status = case["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "status")
            .unwrap();
        assert_eq!(status["choices"][3]["code"], "in_progress");
        assert_eq!(status["choices"][3]["label"]["zh"], "帮扶中");
        assert_eq!(schema["kinds"].as_array().unwrap().len(), Kind::ALL.len());
    }
}
