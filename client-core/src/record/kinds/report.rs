//! 社情民意: an urgent public-sentiment report, passed on within a deadline set by its urgency.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::choices;
use crate::record::attachment::{self, Attachment};
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{Lifecycle, lifecycle_move, require_text, status_write, typed};
use crate::record::{Kind, ValidationContext, ValidationError};

choices! {
    /// 社情民意类别.
    pub enum ReportCategory in "report_type" {
        Dispute = "dispute" ("矛盾纠纷", "Dispute"),
        SafetyHazard = "safety_hazard" ("安全隐患", "Safety hazard"),
        GroupIncidentSign = "group_incident_sign" ("群体性事件苗头", "Sign of a group incident"),
        PublicOpinion = "public_opinion" ("社会舆情", "Public opinion"),
        LivelihoodRequest = "livelihood_request" ("民生诉求", "Livelihood request"),
    }
}

choices! {
    /// 特急 / 紧急 / 一般. The deadline rule for each is configuration (see `DeadlineRules`).
    pub enum Urgency in "urgency" {
        Critical = "critical" ("特急", "Critical"),
        Urgent = "urgent" ("紧急", "Urgent"),
        Normal = "normal" ("一般", "Normal"),
    }
}

choices! {
    /// 社情民意状态: draft → queued (on the device) → received → acknowledged → escalated →
    /// closed.
    #[derive(Default)]
    pub enum ReportStatus in "report_status" {
        #[default]
        Draft = "draft" ("草稿", "Draft"),
        Queued = "queued" ("待发送", "Queued"),
        Received = "received" ("已接收", "Received"),
        Acknowledged = "acknowledged" ("已确认", "Acknowledged"),
        Escalated = "escalated" ("已上报", "Escalated"),
        Closed = "closed" ("已办结", "Closed"),
    }
}

impl ReportStatus {
    pub fn successors(self) -> &'static [ReportStatus] {
        use ReportStatus::*;
        match self {
            Draft => &[Queued, Received],
            Queued => &[Received],
            Received => &[Acknowledged, Escalated, Closed],
            Acknowledged => &[Escalated, Closed],
            Escalated => &[Acknowledged, Closed],
            Closed => &[],
        }
    }

    pub fn can_move_to(self, to: ReportStatus) -> bool {
        self == to || self.successors().contains(&to)
    }

    pub fn is_active(self) -> bool {
        self != ReportStatus::Closed
    }
}

impl Lifecycle for ReportStatus {
    fn may_become(self, to: Self) -> bool {
        self.can_move_to(to)
    }

    fn code(self) -> &'static str {
        self.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub by: Option<String>,
    pub text: String,
}

const FOLLOW_UP: &[Field] = &[
    Field::new("at", "时间", "Time", T::Event).required(),
    Field::new("by", "记录人", "Recorded by", T::Name),
    Field::new("text", "续报内容", "Text", T::Text).required(),
];

/// 社情民意: an urgent public-sentiment report with a deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub category: ReportCategory,
    pub urgency: Urgency,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    pub discovered_at: DateTime<Utc>,
    #[serde(default)]
    pub place: String,
    pub description: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub measures: String,
    /// Computed from discovery time and urgency when not given.
    #[serde(default)]
    pub deadline: Option<DateTime<Utc>>,
    /// A report phoned in on time counts as on time even if its data syncs late.
    #[serde(default)]
    pub phoned_in_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status: ReportStatus,
    /// Append-only.
    #[serde(default)]
    pub follow_ups: Vec<FollowUp>,
    /// Photos and files (their bytes travel separately).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Report,
    label: Label {
        zh: "社情民意",
        en: "Urgent report",
    },
    about: Label {
        zh: "限时报送的社情民意：按紧急程度在时限内上报，之后续报",
        en: "An urgent public-sentiment report, passed on within the deadline its urgency sets, then followed up",
    },
    fields: &[
        Field::new(
            "category",
            "类别",
            "Category",
            T::Choice(&ReportCategory::CHOICES),
        )
        .required(),
        Field::new(
            "urgency",
            "紧急程度",
            "Urgency",
            T::Choice(&Urgency::CHOICES),
        )
        .required(),
        Field::new("occurred_at", "发生时间", "Occurred at", T::Event),
        Field::new("discovered_at", "发现时间", "Discovered at", T::Event).required(),
        Field::new("place", "地点", "Place", T::Place),
        Field::new("description", "事件描述", "Description", T::Text).required(),
        Field::new("scope", "影响范围", "Scope", T::Place),
        Field::new("measures", "已采取措施", "Measures taken", T::Text),
        Field::new("deadline", "报送时限", "Deadline", T::Instant),
        Field::new("phoned_in_at", "电话报送时间", "Phoned in at", T::Event),
        Field::new(
            "status",
            "状态",
            "Status",
            T::Choice(&ReportStatus::CHOICES),
        ),
        Field::new("follow_ups", "续报", "Follow-ups", T::Log(FOLLOW_UP)),
        attachment::FIELD,
    ],
    status: Some("status"),
    subtype: Some("category"),
    watched: &["status", "occurred_at", "discovered_at", "deadline"],
    index,
    computed: &[],
    check,
    order,
    moves: Some(|seen, to| lifecycle_move::<ReportStatus>(Kind::Report, seen, to)),
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Report>(f)?).unwrap_or_default()),
};

fn check(
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
    write: bool,
) -> Result<(), ValidationError> {
    let r: Report = typed(fields)?;
    require_text("description", &r.description)?;
    if r.deadline.is_none() {
        let deadline = ctx.deadline_rules().deadline(r.discovered_at, r.urgency);
        fields.insert("deadline".into(), Value::String(deadline.to_rfc3339()));
    }
    if write {
        status_write(Kind::Report, previous, r.status)?;
    }
    Ok(())
}

/// Discovered after it happened, due after it was discovered.
fn order(fields: &Map<String, Value>) -> Result<(), ValidationError> {
    let at = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
    };
    let Some(discovered) = at("discovered_at") else {
        return Ok(());
    };
    if at("occurred_at").is_some_and(|occurred| occurred > discovered) {
        return Err(ValidationError::EndBeforeStart {
            start: "occurred_at",
            end: "discovered_at",
        });
    }
    match at("deadline") {
        Some(deadline) if deadline < discovered => Err(ValidationError::DeadlineBeforeDiscovery {
            deadline: deadline.to_rfc3339(),
            discovered: discovered.to_rfc3339(),
        }),
        _ => Ok(()),
    }
}

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        household_id: None,
        status: s("status").or(Some(ReportStatus::default().as_str().into())),
        assigned_to: s("created_by"),
        due_at: s("deadline"),
        title: format!(
            "{} {}",
            s("category").unwrap_or_default(),
            s("description")
                .unwrap_or_default()
                .chars()
                .take(24)
                .collect::<String>()
        ),
    }
}
