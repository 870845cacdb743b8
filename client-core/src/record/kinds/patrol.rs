//! 巡逻日志: one patrol shift, its route, checkpoints and incidents.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{Gps, Level};
use crate::choices;
use crate::record::Kind;
use crate::record::attachment::{self, Attachment};
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{end_after_start, typed};

choices! {
    /// 事件类别 of a patrol incident.
    pub enum IncidentKind in "incident" {
        PublicOrder = "public_order" ("治安", "Public order"),
        Fire = "fire" ("消防", "Fire"),
        Environment = "environment" ("环境卫生", "Environment"),
        Facilities = "facilities" ("设施", "Facilities"),
        Dispute = "dispute" ("纠纷", "Dispute"),
        SuspiciousPerson = "suspicious_person" ("可疑人员", "Suspicious person"),
    }
}

choices! {
    /// What the patrol did about an incident.
    pub enum IncidentAction in "incident_action" {
        Handled = "handled" ("已处置", "Handled"),
        Reported = "reported" ("已上报", "Reported"),
        Called110 = "called110" ("已报警（110）", "Called 110"),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub place: String,
    #[serde(default)]
    pub description: String,
    pub action: IncidentAction,
    #[serde(default)]
    pub severity: Option<Level>,
    #[serde(default)]
    pub photos: Vec<String>,
    #[serde(default)]
    pub linked_report: Option<String>,
    /// Who recorded it (stamped on the device).
    #[serde(default)]
    pub by: Option<String>,
}

const INCIDENT: &[Field] = &[
    Field::new(
        "kind",
        "事件类别",
        "Kind",
        T::Choice(&IncidentKind::CHOICES),
    )
    .required(),
    Field::new("occurred_at", "发生时间", "Occurred at", T::Event).required(),
    Field::new("place", "地点", "Place", T::Place),
    Field::new("description", "说明", "Description", T::Text),
    Field::new(
        "action",
        "处置方式",
        "Action taken",
        T::Choice(&IncidentAction::CHOICES),
    )
    .required(),
    Field::new(
        "severity",
        "严重程度",
        "Severity",
        T::Choice(&Level::CHOICES),
    ),
    Field::new("photos", "照片", "Photos", T::List(&T::Name)),
    Field::new(
        "linked_report",
        "关联社情民意",
        "Linked report",
        T::Ref(Kind::Report),
    ),
    Field::new("by", "记录人", "Recorded by", T::Name),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub passed_at: DateTime<Utc>,
}

const CHECKPOINT: &[Field] = &[
    Field::new("name", "巡逻点", "Checkpoint", T::Name).required(),
    Field::new("passed_at", "经过时间", "Passed at", T::Event).required(),
];

/// 巡逻日志: one patrol shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patrol {
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub team: Vec<String>,
    /// Sampled GPS points of the route.
    #[serde(default)]
    pub route: Vec<Gps>,
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
    /// Append-only.
    #[serde(default)]
    pub incidents: Vec<Incident>,
    #[serde(default)]
    pub hand_over_notes: String,
    /// Photos and files (their bytes travel separately).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Patrol,
    label: Label {
        zh: "巡逻日志",
        en: "Patrol log",
    },
    about: Label {
        zh: "一次巡逻：队员、路线、经过的巡逻点、发现的事件和交接班记录",
        en: "One patrol shift: team, route, checkpoints passed, incidents found and hand-over notes",
    },
    fields: &[
        Field::new("started_at", "开始时间", "Started at", T::Event).required(),
        Field::new("ended_at", "结束时间", "Ended at", T::Event),
        Field::new("team", "巡逻队员", "Team", T::List(&T::Name)),
        Field::new("route", "巡逻路线", "Route", T::List(&T::Gps)),
        Field::new("checkpoints", "巡逻点", "Checkpoints", T::Log(CHECKPOINT)),
        Field::new("incidents", "事件", "Incidents", T::Log(INCIDENT)),
        Field::new("hand_over_notes", "交接班记录", "Hand-over notes", T::Text),
        attachment::FIELD,
    ],
    status: None,
    subtype: None,
    watched: &["started_at", "ended_at"],
    index,
    computed: &[],
    check: |fields, _, _, _| typed::<Patrol>(fields).map(drop),
    order: |f| end_after_start(f, "started_at", "ended_at"),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Patrol>(f)?).unwrap_or_default()),
};

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        assigned_to: s("created_by"),
        title: format!("巡逻 {}", s("started_at").unwrap_or_default()),
        ..IndexParts::default()
    }
}
