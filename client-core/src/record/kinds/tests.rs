//! Every kind's spec held to its struct: the same fields at every level, the same required
//! fields, types that validation enforces, labels in both languages. A kind added with a piece
//! missing fails here.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::*;
use crate::record::attachment;
use crate::record::schema::{self, Field, FieldType};
use crate::record::{IndexRow, MAX_ADDRESS_CHARS, MAX_NAME_CHARS, ValidationContext, validate};

struct Everything;
impl ValidationContext for Everything {
    fn household_exists(&self, _: &str) -> bool {
        true
    }
}

/// A value of the type that validation takes.
fn sample(ty: &FieldType) -> Value {
    match ty {
        FieldType::Name => json!("样例"),
        FieldType::Ref(kind) => json!(format!("{kind}-1")),
        FieldType::Place => json!("幸福小区3栋"),
        FieldType::Text => json!("情况说明"),
        FieldType::Event => json!("2026-11-01T09:00:00+08:00"),
        FieldType::Instant => json!("2026-11-01T12:00:00+08:00"),
        FieldType::Date => json!("2026-12-01"),
        FieldType::BirthDate => json!("1950-03-01"),
        FieldType::Number => json!(2.5),
        FieldType::Bool => json!(false),
        FieldType::Gps => json!({"lat": 30.25, "lon": 120.16, "accuracy_m": 8.0}),
        FieldType::Choice(set) => json!(set.choices[0].code),
        FieldType::Object(parts) => Value::Object(example(parts)),
        FieldType::List(inner) => json!([sample(inner)]),
        FieldType::Entries(parts) | FieldType::Log(parts) => json!([example(parts)]),
    }
}

/// A value validation must refuse for a field of this type, if there is one.
fn wrong(ty: &FieldType) -> Option<Value> {
    Some(match ty {
        FieldType::Name | FieldType::Ref(_) => json!("名".repeat(MAX_NAME_CHARS + 1)),
        FieldType::Place => json!("址".repeat(MAX_ADDRESS_CHARS + 1)),
        FieldType::Event | FieldType::Instant => json!("昨天上午"),
        FieldType::Date | FieldType::BirthDate => json!("下个月"),
        FieldType::Number => json!("三"),
        FieldType::Gps => json!({"lat": 120.0, "lon": 30.0}),
        FieldType::Choice(_) => json!("no_such_choice"),
        FieldType::Text | FieldType::Bool => return None,
        FieldType::Object(_) | FieldType::List(_) | FieldType::Entries(_) | FieldType::Log(_) => {
            return None;
        }
    })
}

fn example(fields: &[Field]) -> Map<String, Value> {
    if fields
        .iter()
        .map(|f| f.name)
        .eq(attachment::PARTS.iter().map(|f| f.name))
    {
        // A hash and whole numbers, which the generic samples are not.
        let mut parts: Map<String, Value> = fields
            .iter()
            .map(|f| (f.name.to_string(), sample(&f.ty)))
            .collect();
        parts.insert("hash".into(), json!("ab".repeat(32)));
        parts.insert("media_type".into(), json!("image/jpeg"));
        for n in ["size", "width", "height"] {
            parts.insert(n.into(), json!(1200));
        }
        return parts;
    }
    fields
        .iter()
        .map(|f| (f.name.to_string(), sample(&f.ty)))
        .collect()
}

/// Every field of a spec with the JSON pointer it has in [`example`] (entries: the first).
fn pointers(fields: &'static [Field], prefix: &str, out: &mut Vec<(String, &'static Field)>) {
    for field in fields {
        let pointer = format!("{prefix}/{}", field.name);
        out.push((pointer.clone(), field));
        match field.ty {
            FieldType::Object(parts) => pointers(parts, &pointer, out),
            FieldType::Entries(parts) | FieldType::Log(parts) => {
                pointers(parts, &format!("{pointer}/0"), out)
            }
            _ => {}
        }
    }
}

fn check(kind: Kind, record: &Value) -> Result<(), ValidationError> {
    let mut fields = record.as_object().cloned().unwrap_or_default();
    validate(kind, &mut fields, None, &Everything)
}

fn remove(record: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    if let Some(Value::Object(map)) = record.pointer_mut(parent) {
        map.remove(key);
    }
}

#[test]
fn test_a_record_of_every_declared_field_is_valid() {
    for kind in Kind::ALL_STORED {
        let record = Value::Object(example(kind.spec().fields));
        check(kind, &record).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

#[test]
fn test_every_spec_declares_exactly_its_structs_fields_at_every_level() {
    /// The struct as serde writes it back lists every field it has (absent ones as null).
    fn same(kind: Kind, fields: &[Field], typed: &Value, path: &str) {
        let declared: BTreeSet<&str> = fields.iter().map(|f| f.name).collect();
        let actual: BTreeSet<&str> = typed
            .as_object()
            .unwrap_or_else(|| panic!("{kind} {path}: not a map"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(declared, actual, "{kind} {path}: spec and struct differ");
        for field in fields {
            let inner = match field.ty {
                FieldType::Object(_) => &typed[field.name],
                FieldType::Entries(_) | FieldType::Log(_) => &typed[field.name][0],
                _ => continue,
            };
            same(
                kind,
                field.ty.parts(),
                inner,
                &format!("{path}.{}", field.name),
            );
        }
    }
    for kind in Kind::ALL_STORED {
        let spec = kind.spec();
        let typed = (spec.typed)(&example(spec.fields)).unwrap();
        same(kind, spec.fields, &typed, "");
    }
}

#[test]
fn test_required_fields_are_the_ones_validation_requires() {
    for kind in Kind::ALL_STORED {
        let record = Value::Object(example(kind.spec().fields));
        let mut all = Vec::new();
        pointers(kind.spec().fields, "", &mut all);
        for (pointer, field) in all {
            let mut without = record.clone();
            remove(&mut without, &pointer);
            match (field.required, check(kind, &without)) {
                (true, Ok(())) => panic!("{kind}{pointer} is declared required but is not"),
                (false, Err(e)) => panic!("{kind}{pointer} is required but not declared: {e}"),
                _ => {}
            }
        }
    }
}

#[test]
fn test_every_declared_type_is_what_validation_enforces() {
    for kind in Kind::ALL_STORED {
        let record = Value::Object(example(kind.spec().fields));
        let mut all = Vec::new();
        pointers(kind.spec().fields, "", &mut all);
        for (pointer, field) in all {
            let Some(bad) = wrong(&field.ty) else {
                continue;
            };
            let mut broken = record.clone();
            *broken.pointer_mut(&pointer).unwrap() = bad.clone();
            assert!(
                check(kind, &broken).is_err(),
                "{kind}{pointer} is declared {} but {bad} was taken",
                field.ty.name()
            );
        }
    }
}

#[test]
fn test_index_reads_only_the_fields_it_declares() {
    for kind in Kind::ALL_STORED {
        let mut record = example(kind.spec().fields);
        record.insert("created_by".into(), json!("wang"));
        record.insert("created_at".into(), json!("2026-11-01T08:00:00Z"));
        let only: Map<String, Value> = record
            .iter()
            .filter(|(k, _)| IndexRow::FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            IndexRow::from_fields("r1", kind, "g1", &record, false),
            IndexRow::from_fields("r1", kind, "g1", &only, false),
            "{kind}'s index reads a field missing from IndexRow::FIELDS"
        );
    }
}

#[test]
fn test_every_kind_field_and_choice_has_both_labels() {
    let blank = |l: schema::Label| l.zh.trim().is_empty() || l.en.trim().is_empty();
    for kind in Kind::ALL_STORED {
        let spec = kind.spec();
        assert_eq!(spec.kind, kind);
        assert!(!blank(spec.label) && !blank(spec.about), "{kind}");
        schema::walk(spec.fields, |path, f| {
            assert!(!blank(f.label), "{kind}.{path}");
        });
        for name in spec.status.iter().chain(&spec.subtype) {
            assert!(
                spec.choices(name).is_some(),
                "{kind}.{name} is not a choice"
            );
        }
        for name in spec.watched {
            assert!(
                spec.field(name).is_some(),
                "{kind} watches unknown `{name}`"
            );
        }
    }
    for set in schema::choice_sets() {
        assert!(!set.choices.is_empty(), "{}", set.group);
        for c in set.choices {
            assert!(!blank(c.label), "{}.{}", set.group, c.code);
        }
        let codes: BTreeSet<&str> = set.codes().collect();
        assert_eq!(
            codes.len(),
            set.choices.len(),
            "{}: a code twice",
            set.group
        );
    }
}

#[test]
fn test_no_kind_redeclares_a_system_field() {
    for kind in Kind::ALL_STORED {
        for f in kind.spec().fields {
            assert!(
                !schema::SYSTEM.iter().any(|s| s.name == f.name),
                "{kind}.{} is a system field",
                f.name
            );
        }
    }
}

#[test]
fn test_labels_are_found_by_path_and_by_name() {
    let label = |p: &str| schema::field_label(p).map(|l| l.zh);
    assert_eq!(label("head_name"), Some("户主"));
    assert_eq!(label("residents[2].name"), Some("姓名"));
    assert_eq!(label("checkpoints[].name"), Some("巡逻点"));
    assert_eq!(label("description"), Some("事件描述"));
    assert_eq!(label("actions[0].description"), Some("说明"));
    assert_eq!(label("quantity"), Some("数量"));
    assert_eq!(label("updated_at"), Some("更新时间"));
    assert_eq!(label("no_such_field"), None);
    let of = |k: Kind, p: &str| schema::field_label_in(k, p).map(|l| l.zh);
    assert_eq!(of(Kind::Unit, "name"), Some("单位名称"));
    assert_eq!(of(Kind::Volunteer, "name"), Some("姓名"));
    assert_eq!(of(Kind::Task, "description"), Some("任务内容"));
    assert_eq!(of(Kind::Report, "description"), Some("事件描述"));
    assert_eq!(of(Kind::Stock, "movements[0].kind"), Some("出入库"));
    assert_eq!(of(Kind::Task, "created_at"), Some("创建时间"));
    assert_eq!(
        schema::choice_label("case_status", "in_progress").map(|l| l.zh),
        Some("帮扶中")
    );
}

#[test]
fn test_sensitive_fields_are_the_ones_kept_in_the_private_part() {
    let mut sensitive = Vec::new();
    schema::walk(Kind::Household.spec().fields, |path, f| {
        if f.sensitive {
            sensitive.push(path.trim_start_matches("residents[].").to_string());
        }
    });
    let mut kept: Vec<&str> = crate::record::sensitive::SENSITIVE_RESIDENT_FIELDS.to_vec();
    sensitive.sort();
    kept.sort();
    assert_eq!(sensitive, kept);
}

#[test]
fn test_kind_round_trips_through_its_name_in_text_and_json() {
    for kind in Kind::ALL_STORED {
        assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
        let json = serde_json::to_value(kind).unwrap();
        assert_eq!(json, json!(kind.as_str()));
        assert_eq!(serde_json::from_value::<Kind>(json).unwrap(), kind);
    }
    assert!("visits".parse::<Kind>().is_err());
    let err = "visits".parse::<Kind>().unwrap_err().to_string();
    assert!(
        err.contains("household, visit, patrol, case, report"),
        "{err}"
    );
}

#[test]
fn test_text_and_append_only_fields_follow_the_spec() {
    assert_eq!(
        Kind::Case.text_fields().collect::<Vec<_>>(),
        ["cause", "plan", "notes"]
    );
    assert_eq!(
        Kind::Patrol.append_only_fields().collect::<Vec<_>>(),
        ["checkpoints", "incidents"]
    );
    assert!(Kind::Report.is_append_only("follow_ups"));
    assert!(!Kind::Household.is_append_only("residents"));
}

#[test]
fn test_closed_case_cannot_go_back_to_work_without_reopen() {
    assert!(!CaseStatus::Closed.can_move_to(CaseStatus::InProgress));
    assert!(CaseStatus::Closed.can_move_to(CaseStatus::Reopened));
    assert!(CaseStatus::Reopened.can_move_to(CaseStatus::InProgress));
}

#[test]
fn test_case_happy_path_is_allowed() {
    use CaseStatus::*;
    let path = [Draft, Open, Assessing, InProgress, PendingReview, Closed];
    for pair in path.windows(2) {
        assert!(
            pair[0].can_move_to(pair[1]),
            "{:?} -> {:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(!Draft.can_move_to(InProgress));
    assert!(!Open.can_move_to(PendingReview));
}

#[test]
fn test_every_case_status_reaches_closed() {
    for &status in CaseStatus::ALL {
        let mut seen = vec![status];
        let mut frontier = vec![status];
        while let Some(s) = frontier.pop() {
            for next in s.successors() {
                if !seen.contains(next) {
                    seen.push(*next);
                    frontier.push(*next);
                }
            }
        }
        assert!(
            seen.contains(&CaseStatus::Closed),
            "{status:?} never closes"
        );
    }
}

#[test]
fn test_report_cannot_leave_closed() {
    assert!(!ReportStatus::Closed.can_move_to(ReportStatus::Escalated));
    assert!(ReportStatus::Received.can_move_to(ReportStatus::Escalated));
    assert!(!ReportStatus::Draft.can_move_to(ReportStatus::Closed));
}
