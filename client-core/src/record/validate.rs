//! Validation of a record before it is written, with errors a field worker can act on.

use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Case, Household, Kind, Patrol, Report, Visit};
use super::{CaseStatus, ReportStatus, Urgency};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("unknown record kind `{0}`: use household, visit, patrol, case or report")]
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
    #[error("`{0}` is set by the system and cannot be changed")]
    ReadOnlyField(String),
    #[error("a record must be a JSON object")]
    NotAnObject,
}

/// What validation needs to know about the rest of the replica.
pub trait ValidationContext {
    fn household_exists(&self, id: &str) -> bool;
    fn deadline_rules(&self) -> DeadlineRules {
        DeadlineRules::default()
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
pub fn validate(
    kind: Kind,
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
) -> Result<(), ValidationError> {
    match kind {
        Kind::Household => {
            let h: Household = typed(fields)?;
            require_text("head_name", &h.head_name)?;
            for (i, r) in h.residents.iter().enumerate() {
                require_text(&format!("residents[{i}].name"), &r.name)?;
            }
        }
        Kind::Visit => {
            let v: Visit = typed(fields)?;
            require_text("household_id", &v.household_id)?;
            require_household(ctx, &v.household_id)?;
            check_order("started_at", v.started_at, "ended_at", v.ended_at)?;
        }
        Kind::HouseholdPrivate => {}
        Kind::Patrol => {
            let p: Patrol = typed(fields)?;
            check_order("started_at", p.started_at, "ended_at", p.ended_at)?;
        }
        Kind::Case => {
            let c: Case = typed(fields)?;
            match (&c.household_id, &c.subject_name) {
                (Some(h), _) => require_household(ctx, h)?,
                (None, Some(name)) => require_text("subject_name", name)?,
                (None, None) => return Err(ValidationError::MissingField("household_id".into())),
            }
            if let Some(old) = previous.and_then(|p| p.get("status")) {
                let from: CaseStatus = serde_json::from_value(old.clone()).unwrap_or_default();
                if !from.can_move_to(c.status) {
                    let hint = if from == CaseStatus::Closed {
                        " (reopen the case first)"
                    } else {
                        ""
                    };
                    return Err(transition(kind, from.as_str(), c.status.as_str(), hint));
                }
            }
        }
        Kind::Report => {
            let r: Report = typed(fields)?;
            require_text("description", &r.description)?;
            if r.occurred_at
                .is_some_and(|occurred| occurred > r.discovered_at)
            {
                return Err(ValidationError::EndBeforeStart {
                    start: "occurred_at",
                    end: "discovered_at",
                });
            }
            match r.deadline {
                Some(deadline) if deadline < r.discovered_at => {
                    return Err(ValidationError::DeadlineBeforeDiscovery {
                        deadline: deadline.to_rfc3339(),
                        discovered: r.discovered_at.to_rfc3339(),
                    });
                }
                Some(_) => {}
                None => {
                    let deadline = ctx.deadline_rules().deadline(r.discovered_at, r.urgency);
                    fields.insert("deadline".into(), Value::String(deadline.to_rfc3339()));
                }
            }
            if let Some(old) = previous.and_then(|p| p.get("status")) {
                let from: ReportStatus = serde_json::from_value(old.clone()).unwrap_or_default();
                if !from.can_move_to(r.status) {
                    return Err(transition(kind, from.as_str(), r.status.as_str(), ""));
                }
            }
        }
    }
    if let Some(previous) = previous {
        check_append_only(kind, fields, previous)?;
    }
    Ok(())
}

fn typed<T: DeserializeOwned>(fields: &Map<String, Value>) -> Result<T, ValidationError> {
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

fn require_text(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        Err(ValidationError::MissingField(field.to_string()))
    } else {
        Ok(())
    }
}

fn require_household(ctx: &dyn ValidationContext, id: &str) -> Result<(), ValidationError> {
    if ctx.household_exists(id) {
        Ok(())
    } else {
        Err(ValidationError::UnknownHousehold(id.to_string()))
    }
}

fn check_order(
    start: &'static str,
    started: DateTime<Utc>,
    end: &'static str,
    ended: Option<DateTime<Utc>>,
) -> Result<(), ValidationError> {
    match ended {
        Some(ended) if ended < started => Err(ValidationError::EndBeforeStart { start, end }),
        _ => Ok(()),
    }
}

fn transition(kind: Kind, from: &str, to: &str, hint: &'static str) -> ValidationError {
    ValidationError::InvalidTransition {
        kind,
        from: from.to_string(),
        to: to.to_string(),
        hint,
    }
}

fn check_append_only(
    kind: Kind,
    fields: &Map<String, Value>,
    previous: &Map<String, Value>,
) -> Result<(), ValidationError> {
    for field in kind.append_only_fields() {
        let old = previous.get(*field).and_then(Value::as_array);
        let new = fields.get(*field).and_then(Value::as_array);
        if let Some(old) = old {
            let kept = new.is_some_and(|new| new.len() >= old.len() && new[..old.len()] == old[..]);
            if !kept {
                return Err(ValidationError::AppendOnly(field.to_string()));
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
}
