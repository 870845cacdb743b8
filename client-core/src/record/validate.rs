//! Validation of a record before it is written, with errors a field worker can act on.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::schema::{Field, FieldType};
use super::{Kind, Urgency};

/// The longest name, code or short label a record may hold, in characters: a person's name, a
/// tag, a phone or ID number, a checkpoint. Long enough for any real one, short enough that a
/// list, a page or an export cell never has to cope with a novel.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest part of an address, or a place, in characters.
pub const MAX_ADDRESS_CHARS: usize = 200;
/// How far past the relay's clock the time of an event (a visit, a discovery, an action) may
/// lie: a phone a few hours fast, or a local time written as UTC, is still taken; a typo of a
/// year is not.
pub const FUTURE_SLACK: Duration = Duration::hours(24);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("unknown record kind `{0}`: use {names}", names = Kind::names())]
    UnknownKind(String),
    #[error("missing required field `{0}`")]
    MissingField(String),
    /// A field has the wrong type or an unknown value; the message names the field and the choices.
    #[error("{0}")]
    Field(String),
    #[error("unknown household {0}: create the household first, or sync to receive it")]
    UnknownHousehold(String),
    #[error("a {kind} cannot go from `{from}` to `{to}`{hint}")]
    InvalidTransition {
        kind: Kind,
        from: String,
        to: String,
        hint: &'static str,
    },
    #[error("the deadline ({deadline}) is before the discovery time ({discovered})")]
    DeadlineBeforeDiscovery {
        deadline: String,
        discovered: String,
    },
    #[error("`{end}` is before `{start}`")]
    EndBeforeStart {
        start: &'static str,
        end: &'static str,
    },
    #[error("`{0}` is append-only: existing entries cannot be changed or removed")]
    AppendOnly(String),
    #[error(
        "{kind} has no field `{field}`{}: see `gridsync schema {kind}`",
        nearest.map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default()
    )]
    UnknownField {
        kind: Kind,
        field: String,
        nearest: Option<&'static str>,
    },
    #[error(
        "only {on_hand} of {item} on hand: {wanted} cannot be handed out (record the goods coming in first)"
    )]
    Overdrawn {
        item: String,
        on_hand: String,
        wanted: String,
    },
    #[error("`{0}` is set by the system and cannot be changed")]
    ReadOnlyField(String),
    #[error("a record must be a JSON object")]
    NotAnObject,
    #[error("`{field}` is {len} characters long, more than the {max} it may hold")]
    TooLong {
        field: String,
        len: usize,
        max: usize,
    },
    /// A time, date or position outside what it can be; the message says the range.
    #[error("`{field}` ({value}) {problem}")]
    OutOfRange {
        field: String,
        value: String,
        problem: String,
    },
    #[error(
        "`{field}` names {named}, but {author} is writing it: an entry's author is who adds it"
    )]
    NotTheAuthor {
        field: String,
        named: String,
        author: String,
    },
}

/// What validation needs to know about the rest of the replica.
pub trait ValidationContext {
    fn household_exists(&self, id: &str) -> bool;
    fn deadline_rules(&self) -> DeadlineRules {
        DeadlineRules::default()
    }
    /// A clock to hold event times against ([`FUTURE_SLACK`]), if there is one to trust: the
    /// relay's. A device's clock may be years off (and the app still works), so on a device
    /// times are only held to the fixed range.
    fn now(&self) -> Option<DateTime<Utc>> {
        None
    }
    /// Who is writing (a username): the entries this write appends to a record's lists may
    /// name no one else as their author (`by`). `None` checks nothing.
    fn author(&self) -> Option<&str> {
        None
    }
}

/// How long after discovery an urgent report must be passed on, by urgency. Local rules range from
/// 20 minutes to 2 hours, so this is configuration, not code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadlineRules {
    pub critical_minutes: i64,
    pub urgent_minutes: i64,
    pub normal_minutes: i64,
}

impl Default for DeadlineRules {
    fn default() -> Self {
        DeadlineRules {
            critical_minutes: 20,
            urgent_minutes: 60,
            normal_minutes: 120,
        }
    }
}

impl DeadlineRules {
    pub fn deadline(&self, discovered_at: DateTime<Utc>, urgency: Urgency) -> DateTime<Utc> {
        let minutes = match urgency {
            Urgency::Critical => self.critical_minutes,
            Urgency::Urgent => self.urgent_minutes,
            Urgency::Normal => self.normal_minutes,
        };
        discovered_at + Duration::minutes(minutes)
    }
}

/// Checks a record's merged fields before they are written and fills derived fields (a report's
/// deadline). `previous` is the record before this write, `None` on create.
///
/// Values this write did not change are not held to the length and range rules (a record
/// stored before a rule existed can still be edited); everything else is checked whole.
pub fn validate(
    kind: Kind,
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
) -> Result<(), ValidationError> {
    check(kind, fields, previous, ctx, true)
}

/// The rules of [`validate`] that still hold when `fields` is a merge of concurrent writes, each
/// valid where it was made: shape, choices, required fields, append-only lists, and the lengths
/// and ranges of the values that differ from `previous`. Left out are the rules a merge of two
/// valid writes can break through no fault of either writer (a start from one and an end from
/// the other; two status moves from the same status), which a receiver checks change by change
/// ([`check_move`], [`check_order`]), and whether a named household exists, which only the
/// receiver's store can say.
pub fn validate_merged(
    kind: Kind,
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
) -> Result<(), ValidationError> {
    check(kind, fields, previous, ctx, false)
}

fn check(
    kind: Kind,
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
    write: bool,
) -> Result<(), ValidationError> {
    // First, so that a time that is no time at all is named with its field.
    check_values(kind, fields, previous, ctx)?;
    super::attachment::check(fields)?;
    (kind.spec().check)(fields, previous, ctx, write)?;
    if write {
        check_order(kind, fields)?;
    }
    check_append_only(kind, fields, previous, ctx.author())
}

/// Whether a case or report may take the status `to` when its writer saw `seen` (every value
/// the field held for them: concurrent writes leave several, and settling on any one of them,
/// or moving on from any one, is no wrong move). No status seen means the record is new, and
/// a value that is not a status at all is left to the shape check.
pub fn check_move(kind: Kind, seen: &[Value], to: &Value) -> Result<(), ValidationError> {
    match kind.spec().moves {
        Some(moves) if !seen.is_empty() => moves(seen, to),
        _ => Ok(()),
    }
}

/// The rules between two fields of a record: an end after its start, a report discovered after
/// it happened and due after it was discovered. `fields` may hold only the fields concerned; a
/// value that is missing or not a time is left to the shape check.
pub fn check_order(kind: Kind, fields: &Map<String, Value>) -> Result<(), ValidationError> {
    (kind.spec().order)(fields)
}

/// A status lifecycle (a case's, a report's, a task's): which statuses a record may move between.
pub(crate) trait Lifecycle: DeserializeOwned + Default + Copy + PartialEq {
    /// Whether a record in this status may move to `to` (staying put always may).
    fn may_become(self, to: Self) -> bool;
    fn code(self) -> &'static str;
    /// What the refusal of a move from this status adds (`" (reopen the case first)"`).
    fn hint(self) -> &'static str {
        ""
    }
}

/// Whether a writer who saw the statuses `seen` may write the status `to` (see [`check_move`]).
/// A `to` that is no status at all is left to the shape check; a seen value that is no status
/// counts as the lifecycle's first one.
pub(crate) fn lifecycle_move<S: Lifecycle>(
    kind: Kind,
    seen: &[Value],
    to: &Value,
) -> Result<(), ValidationError> {
    let Ok(to) = serde_json::from_value::<S>(to.clone()) else {
        return Ok(());
    };
    let from: Vec<S> = seen
        .iter()
        .map(|s| serde_json::from_value(s.clone()).unwrap_or_default())
        .collect();
    if from.iter().any(|f| f.may_become(to)) {
        return Ok(());
    }
    let from = from.first().copied().unwrap_or_default();
    Err(transition(kind, from.code(), to.code(), from.hint()))
}

/// A local write's status move: from the status the record had before it (the lifecycle's
/// first one when it was written without one) to `to`. A new record may start anywhere.
pub(crate) fn status_write<S: Lifecycle>(
    kind: Kind,
    previous: Option<&Map<String, Value>>,
    to: S,
) -> Result<(), ValidationError> {
    let Some(previous) = previous else {
        return Ok(());
    };
    let old = previous.get("status").cloned().unwrap_or(Value::Null);
    lifecycle_move::<S>(kind, &[old], &Value::String(to.code().into()))
}

/// `end` is not before `start`, where both are times.
pub(crate) fn end_after_start(
    fields: &Map<String, Value>,
    start: &'static str,
    end: &'static str,
) -> Result<(), ValidationError> {
    let at = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
    };
    match (at(start), at(end)) {
        (Some(started), Some(ended)) if ended < started => {
            Err(ValidationError::EndBeforeStart { start, end })
        }
        _ => Ok(()),
    }
}

pub(crate) fn typed<T: DeserializeOwned>(
    fields: &Map<String, Value>,
) -> Result<T, ValidationError> {
    serde_json::from_value(Value::Object(fields.clone())).map_err(|e| {
        let message = e.to_string();
        // serde says "missing field `x`"; keep that one structured so callers can match on it.
        match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(field) => ValidationError::MissingField(field.to_string()),
            None => ValidationError::Field(message),
        }
    })
}

pub(crate) fn require_text(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        Err(ValidationError::MissingField(field.to_string()))
    } else {
        Ok(())
    }
}

pub(crate) fn require_household(
    ctx: &dyn ValidationContext,
    id: &str,
) -> Result<(), ValidationError> {
    if ctx.household_exists(id) {
        Ok(())
    } else {
        Err(ValidationError::UnknownHousehold(id.to_string()))
    }
}

/// Whether this write names household `id` anew. A household named by a write must exist; one
/// named before may since have been deleted (by someone else, perhaps while this device was
/// offline), which does not make the record wrong.
pub(crate) fn names_new_household(previous: Option<&Map<String, Value>>, id: &str) -> bool {
    previous
        .and_then(|p| p.get("household_id"))
        .and_then(Value::as_str)
        != Some(id)
}

pub(crate) fn transition(kind: Kind, from: &str, to: &str, hint: &'static str) -> ValidationError {
    ValidationError::InvalidTransition {
        kind,
        from: from.to_string(),
        to: to.to_string(),
        hint,
    }
}

/// What a value must be, by its field's type.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// At most [`MAX_NAME_CHARS`].
    Name,
    /// At most [`MAX_ADDRESS_CHARS`].
    Address,
    /// The time of something that happened: in the fixed range, and not far past the trusted
    /// clock when there is one.
    Event,
    /// Any other instant (a deadline): in the fixed range.
    Instant,
    /// A due date: not before 2000.
    Date,
    /// A birth date: from 1900, and not after today when the clock is trusted.
    Birth,
    /// A position: latitude, longitude and accuracy that can be.
    Gps,
}

impl Rule {
    /// The rule of a scalar type; free text (notes, descriptions, plans) is bounded by the size
    /// of a change only (`MAX_CHANGE_BYTES`), choices by the shape check.
    fn of(ty: &FieldType) -> Option<Rule> {
        Some(match ty {
            FieldType::Name | FieldType::Ref(_) => Rule::Name,
            FieldType::Place => Rule::Address,
            FieldType::Event => Rule::Event,
            FieldType::Instant => Rule::Instant,
            FieldType::Date => Rule::Date,
            FieldType::BirthDate => Rule::Birth,
            FieldType::Gps => Rule::Gps,
            _ => return None,
        })
    }
}

/// Holds every bounded value that differs from `previous` to the rule of its field's type.
fn check_values(
    kind: Kind,
    fields: &Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
) -> Result<(), ValidationError> {
    check_map(kind.spec().fields, fields, previous, "", ctx.now())
}

fn check_map(
    spec: &'static [Field],
    value: &Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    path: &str,
    now: Option<DateTime<Utc>>,
) -> Result<(), ValidationError> {
    for field in spec {
        let Some(v) = value.get(field.name) else {
            continue;
        };
        let old = previous.and_then(|p| p.get(field.name));
        let path = if path.is_empty() {
            field.name.to_string()
        } else {
            format!("{path}.{}", field.name)
        };
        check_field(&field.ty, v, old, &path, now)?;
    }
    Ok(())
}

fn check_field(
    ty: &FieldType,
    value: &Value,
    previous: Option<&Value>,
    path: &str,
    now: Option<DateTime<Utc>>,
) -> Result<(), ValidationError> {
    if previous == Some(value) {
        return Ok(());
    }
    if let Some(rule) = Rule::of(ty) {
        return check_value(path, value, rule, now);
    }
    match (ty, value) {
        (FieldType::Object(parts), Value::Object(map)) => {
            check_map(parts, map, previous.and_then(Value::as_object), path, now)
        }
        (FieldType::List(_) | FieldType::Entries(_) | FieldType::Log(_), Value::Array(items)) => {
            let old = previous.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                // An entry that was there before is the old one, wherever a concurrent append
                // moved it.
                let before = old.and_then(|o| o.iter().find(|x| *x == item));
                let path = format!("{path}[{i}]");
                match (ty, item) {
                    (FieldType::List(inner), _) => check_field(inner, item, before, &path, now)?,
                    (_, Value::Object(entry)) => check_map(
                        ty.parts(),
                        entry,
                        before.and_then(Value::as_object),
                        &path,
                        now,
                    )?,
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_value(
    field: &str,
    value: &Value,
    rule: Rule,
    now: Option<DateTime<Utc>>,
) -> Result<(), ValidationError> {
    let out_of_range = |problem: String| ValidationError::OutOfRange {
        field: field.to_string(),
        value: match value {
            Value::String(s) => s.chars().take(40).collect(),
            other => other.to_string().chars().take(40).collect(),
        },
        problem,
    };
    let earliest = |year: i32| NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default();
    let (first, last) = (earliest(2000), earliest(2100));
    match rule {
        Rule::Name | Rule::Address => {
            let max = if matches!(rule, Rule::Name) {
                MAX_NAME_CHARS
            } else {
                MAX_ADDRESS_CHARS
            };
            let len = value.as_str().map_or(0, |s| s.chars().count());
            if len > max {
                return Err(ValidationError::TooLong {
                    field: field.to_string(),
                    len,
                    max,
                });
            }
        }
        Rule::Event | Rule::Instant => {
            let Some(text) = value.as_str() else {
                return Ok(());
            };
            let Ok(at) = text.parse::<DateTime<Utc>>() else {
                return Err(out_of_range(
                    "is not a time: write 2026-11-01 09:30 (local time), 2026-11-01, or \
                     2026-11-01T09:30:00+08:00"
                        .into(),
                ));
            };
            if at.date_naive() < first || at.date_naive() >= last {
                return Err(out_of_range(format!(
                    "is not between {first} and {last}: check the date (and the phone's clock)"
                )));
            }
            if let (Rule::Event, Some(now)) = (rule, now)
                && at > now + FUTURE_SLACK
            {
                return Err(out_of_range(format!(
                    "is more than a day after the relay's time ({}): check the date (and the \
                     phone's clock)",
                    now.format("%Y-%m-%d %H:%M UTC")
                )));
            }
        }
        Rule::Date | Rule::Birth => {
            let Some(text) = value.as_str() else {
                return Ok(());
            };
            let Ok(date) = text.parse::<NaiveDate>() else {
                return Err(out_of_range("is not a date: write it as 2026-11-01".into()));
            };
            if matches!(rule, Rule::Date) {
                // A due date far ahead is how some offices say "not due"; only the past is
                // bounded.
                if date < first {
                    return Err(out_of_range(format!("is before {first}")));
                }
                return Ok(());
            }
            let first = earliest(1900);
            if date < first || date >= last {
                return Err(out_of_range(format!("is not between {first} and {last}")));
            }
            if let (Rule::Birth, Some(now)) = (rule, now)
                && date > (now + FUTURE_SLACK).date_naive()
            {
                return Err(out_of_range("is after today".into()));
            }
        }
        Rule::Gps => {
            let number = |key: &str| value.get(key).and_then(Value::as_f64);
            if number("lat").is_some_and(|lat| !(-90.0..=90.0).contains(&lat)) {
                return Err(out_of_range("has a latitude outside -90 to 90".into()));
            }
            if number("lon").is_some_and(|lon| !(-180.0..=180.0).contains(&lon)) {
                return Err(out_of_range("has a longitude outside -180 to 180".into()));
            }
            // A phone reports metres; 100 km is already no position at all.
            if number("accuracy_m").is_some_and(|a| !(0.0..=100_000.0).contains(&a)) {
                return Err(out_of_range(
                    "has an accuracy outside 0 to 100,000 metres".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Entries of an append-only list are only ever added: every entry of `previous` is still
/// there, unchanged and in order. Concurrent appends may interleave (each device added at the
/// end of what it had), so the old entries must be a subsequence of the new list, not its
/// start. An added entry that names its author (`by`) names the writer.
fn check_append_only(
    kind: Kind,
    fields: &Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    author: Option<&str>,
) -> Result<(), ValidationError> {
    for field in kind.append_only_fields() {
        let old = previous
            .and_then(|p| p.get(field))
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let new = fields
            .get(field)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let had = previous
            .and_then(|p| p.get(field))
            .is_some_and(Value::is_array);
        if had && !fields.get(field).is_some_and(Value::is_array) {
            return Err(ValidationError::AppendOnly(field.to_string()));
        }
        let mut kept = 0;
        let mut added = Vec::new();
        for (i, entry) in new.iter().enumerate() {
            if old.get(kept) == Some(entry) {
                kept += 1;
            } else {
                added.push(i);
            }
        }
        if kept < old.len() {
            return Err(ValidationError::AppendOnly(field.to_string()));
        }
        let Some(author) = author else { continue };
        for i in added {
            if let Some(named) = new[i].get("by").and_then(Value::as_str)
                && named != author
            {
                return Err(ValidationError::NotTheAuthor {
                    field: format!("{field}[{i}].by"),
                    named: named.to_string(),
                    author: author.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Households(Vec<&'static str>);
    impl ValidationContext for Households {
        fn household_exists(&self, id: &str) -> bool {
            self.0.contains(&id)
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn case(status: &str) -> Map<String, Value> {
        obj(json!({"case_type": "low_income", "household_id": "h1", "status": status}))
    }

    #[test]
    fn test_visit_to_unknown_household_is_refused() {
        let mut visit = obj(json!({
            "household_id": "nope", "visit_type": "routine", "outcome": "met",
            "started_at": "2026-11-01T09:00:00Z"
        }));
        let err = validate(Kind::Visit, &mut visit, None, &Households(vec!["h1"])).unwrap_err();
        assert_eq!(err, ValidationError::UnknownHousehold("nope".into()));
    }

    #[test]
    fn test_closed_case_cannot_move_to_in_progress() {
        let ctx = Households(vec!["h1"]);
        let err = validate(
            Kind::Case,
            &mut case("in_progress"),
            Some(&case("closed")),
            &ctx,
        )
        .unwrap_err();
        assert!(matches!(err, ValidationError::InvalidTransition { .. }));
        assert!(err.to_string().contains("reopen"), "{err}");
        validate(
            Kind::Case,
            &mut case("reopened"),
            Some(&case("closed")),
            &ctx,
        )
        .unwrap();
    }

    #[test]
    fn test_missing_required_field_is_named() {
        let mut household = obj(json!({"household_type": "registered"}));
        let err = validate(Kind::Household, &mut household, None, &Households(vec![])).unwrap_err();
        assert_eq!(err, ValidationError::MissingField("head_name".into()));
        let mut blank = obj(json!({"household_type": "registered", "head_name": "  "}));
        let err = validate(Kind::Household, &mut blank, None, &Households(vec![])).unwrap_err();
        assert_eq!(err, ValidationError::MissingField("head_name".into()));
    }

    #[test]
    fn test_unknown_enum_value_lists_the_choices() {
        let mut household = obj(json!({"household_type": "castle", "head_name": "王"}));
        let err = validate(Kind::Household, &mut household, None, &Households(vec![])).unwrap_err();
        assert!(err.to_string().contains("registered"), "{err}");
    }

    #[test]
    fn test_report_deadline_before_discovery_is_refused() {
        let mut report = obj(json!({
            "category": "dispute", "urgency": "urgent", "description": "邻里纠纷",
            "discovered_at": "2026-11-01T10:00:00Z", "deadline": "2026-11-01T09:00:00Z"
        }));
        let err = validate(Kind::Report, &mut report, None, &Households(vec![])).unwrap_err();
        assert!(matches!(
            err,
            ValidationError::DeadlineBeforeDiscovery { .. }
        ));
    }

    #[test]
    fn test_report_deadline_is_computed_from_urgency() {
        let mut report = obj(json!({
            "category": "safety_hazard", "urgency": "critical", "description": "燃气泄漏",
            "discovered_at": "2026-11-01T10:00:00Z"
        }));
        validate(Kind::Report, &mut report, None, &Households(vec![])).unwrap();
        let deadline: DateTime<Utc> = report["deadline"].as_str().unwrap().parse().unwrap();
        assert_eq!(deadline.to_rfc3339(), "2026-11-01T10:20:00+00:00");
    }

    #[test]
    fn test_case_actions_cannot_be_rewritten() {
        let ctx = Households(vec!["h1"]);
        let mut old = case("open");
        old.insert(
            "actions".into(),
            json!([{"kind": "visit", "at": "2026-11-01T09:00:00Z"}]),
        );
        let mut new = case("open");
        new.insert(
            "actions".into(),
            json!([{"kind": "goods", "at": "2026-11-01T09:00:00Z"}]),
        );
        let err = validate(Kind::Case, &mut new, Some(&old), &ctx).unwrap_err();
        assert_eq!(err, ValidationError::AppendOnly("actions".into()));
    }

    #[test]
    fn test_over_long_names_are_refused_but_old_ones_do_not_block_an_edit() {
        let long = "张".repeat(33_000);
        let mut household = obj(json!({"household_type": "registered", "head_name": long}));
        let err = validate(Kind::Household, &mut household, None, &Households(vec![])).unwrap_err();
        assert!(
            matches!(&err, ValidationError::TooLong { field, max, .. } if field == "head_name" && *max == MAX_NAME_CHARS),
            "{err}"
        );
        let mut resident = obj(json!({"household_type": "registered", "head_name": "王",
            "residents": [{"name": "王", "phone": "1".repeat(500)}]}));
        let err = validate(Kind::Household, &mut resident, None, &Households(vec![])).unwrap_err();
        assert!(err.to_string().contains("residents[0].phone"), "{err}");
        let mut address = obj(json!({"household_type": "registered", "head_name": "王",
            "address": {"estate": "幸".repeat(201)}}));
        let err = validate(Kind::Household, &mut address, None, &Households(vec![])).unwrap_err();
        assert!(err.to_string().contains("address.estate"), "{err}");
        // A household stored before the limit existed can still be edited elsewhere.
        let old = obj(json!({"household_type": "registered", "head_name": "张".repeat(300)}));
        let mut edited = old.clone();
        edited.insert("notes".into(), json!("独居"));
        validate(
            Kind::Household,
            &mut edited,
            Some(&old),
            &Households(vec![]),
        )
        .unwrap();
    }

    struct Relay(DateTime<Utc>);
    impl ValidationContext for Relay {
        fn household_exists(&self, _: &str) -> bool {
            true
        }
        fn now(&self) -> Option<DateTime<Utc>> {
            Some(self.0)
        }
    }

    fn report(discovered: &str) -> Map<String, Value> {
        obj(json!({
            "category": "dispute", "urgency": "urgent", "description": "邻里纠纷",
            "discovered_at": discovered,
        }))
    }

    #[test]
    fn test_times_outside_their_range_are_refused() {
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        let err = validate(
            Kind::Report,
            &mut report("9999-99-99T99:99:99Z"),
            None,
            &Relay(now),
        )
        .unwrap_err();
        assert!(err.to_string().contains("discovered_at"), "{err}");
        for bad in ["9999-12-31T00:00:00Z", "1970-01-01T00:00:00Z"] {
            let err =
                validate(Kind::Report, &mut report(bad), None, &Households(vec![])).unwrap_err();
            assert!(
                matches!(err, ValidationError::OutOfRange { .. }),
                "{bad}: {err}"
            );
        }
        // A day past the relay's clock is too far; a few hours (a fast phone) is not, and a
        // device without a trusted clock holds only the fixed range.
        let err = validate(
            Kind::Report,
            &mut report("2026-12-03T12:00:00Z"),
            None,
            &Relay(now),
        )
        .unwrap_err();
        assert!(err.to_string().contains("relay"), "{err}");
        validate(
            Kind::Report,
            &mut report("2026-12-01T20:00:00Z"),
            None,
            &Relay(now),
        )
        .unwrap();
        validate(
            Kind::Report,
            &mut report("2030-01-01T00:00:00Z"),
            None,
            &Households(vec![]),
        )
        .unwrap();
        let mut far = obj(json!({"household_type": "registered", "head_name": "王",
            "gps": {"lat": 91.0, "lon": 114.3}}));
        let err = validate(Kind::Household, &mut far, None, &Households(vec![])).unwrap_err();
        assert!(err.to_string().contains("latitude"), "{err}");
    }

    #[test]
    fn test_choices_are_checked_and_a_merge_keeps_concurrent_appends() {
        let mut bad = obj(json!({"case_type": "not_a_type", "subject_name": "张三",
                                 "status": "totally_invalid"}));
        let err = validate_merged(Kind::Case, &mut bad, None, &Households(vec![])).unwrap_err();
        assert!(err.to_string().contains("low_income"), "{err}");
        // Two devices appended while offline: the old entries are still there, in order.
        let mut old = case("open");
        old.insert(
            "actions".into(),
            json!([{"kind": "visit", "at": "2026-11-01T09:00:00Z"}]),
        );
        let mut merged = old.clone();
        merged.insert(
            "actions".into(),
            json!([{"kind": "goods", "at": "2026-11-02T09:00:00Z"},
                   {"kind": "visit", "at": "2026-11-01T09:00:00Z"},
                   {"kind": "note", "at": "2026-11-02T10:00:00Z"}]),
        );
        validate_merged(Kind::Case, &mut merged, Some(&old), &Households(vec!["h1"])).unwrap();
        // A merge may show any two valid statuses; the move is checked change by change.
        validate_merged(
            Kind::Case,
            &mut case("draft"),
            Some(&case("closed")),
            &Households(vec![]),
        )
        .unwrap();
        assert!(
            check_move(
                Kind::Case,
                &[json!("closed"), json!("open")],
                &json!("assessing")
            )
            .is_ok()
        );
        assert!(check_move(Kind::Case, &[json!("closed")], &json!("assessing")).is_err());
    }

    #[test]
    fn test_an_added_entry_names_its_writer() {
        struct Writer;
        impl ValidationContext for Writer {
            fn household_exists(&self, _: &str) -> bool {
                true
            }
            fn author(&self) -> Option<&str> {
                Some("li")
            }
        }
        let old = case("open");
        let mut new = case("open");
        new.insert(
            "actions".into(),
            json!([{"kind": "visit", "at": "2026-11-01T09:00:00Z", "by": "wang"}]),
        );
        let err = validate(Kind::Case, &mut new, Some(&old), &Writer).unwrap_err();
        assert!(matches!(err, ValidationError::NotTheAuthor { .. }), "{err}");
        new.insert(
            "actions".into(),
            json!([{"kind": "visit", "at": "2026-11-01T09:00:00Z", "by": "li"}]),
        );
        validate(Kind::Case, &mut new, Some(&old), &Writer).unwrap();
    }
}
