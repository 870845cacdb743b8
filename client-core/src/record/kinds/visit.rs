//! 走访记录: one door visit. Written once, then amended.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::Gps;
use crate::choices;
use crate::record::attachment::{self, Attachment};
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{
    end_after_start, names_new_household, require_household, require_text, typed,
};
use crate::record::{Kind, ValidationContext, ValidationError};

choices! {
    /// 走访类型.
    pub enum VisitType in "visit_type" {
        Routine = "routine" ("常规走访", "Routine"),
        Priority = "priority" ("重点走访", "Priority"),
        Assistance = "assistance" ("帮扶走访", "Assistance"),
        FollowUp = "follow_up" ("回访", "Follow-up"),
        Emergency = "emergency" ("紧急走访", "Emergency"),
    }
}

choices! {
    /// 走访结果: what lists show as a visit's status.
    pub enum VisitOutcome in "visit_status" {
        Met = "met" ("见到本人", "Met"),
        NobodyHome = "nobody_home" ("无人在家", "Nobody home"),
        Refused = "refused" ("拒绝", "Refused"),
        Moved = "moved" ("已搬离", "Moved"),
    }
}

choices! {
    /// How an issue found on a visit was handled.
    pub enum Handling in "handling" {
        SolvedOnSpot = "solved_on_spot" ("当场解决", "Solved on the spot"),
        TakenBack = "taken_back" ("带回处理", "Taken back"),
        ReportedAtOnce = "reported_at_once" ("立即上报", "Reported at once"),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitIssue {
    pub category: String,
    #[serde(default)]
    pub description: String,
    pub handling: Handling,
    /// When and by whom it was found (stamped on the device).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub by: Option<String>,
}

const ISSUE: &[Field] = &[
    Field::new("category", "问题类别", "Category", T::Name).required(),
    Field::new("description", "说明", "Description", T::Text),
    Field::new(
        "handling",
        "处理方式",
        "Handling",
        T::Choice(&Handling::CHOICES),
    )
    .required(),
    Field::new("at", "时间", "Time", T::Event),
    Field::new("by", "记录人", "Recorded by", T::Name),
];

/// 走访记录: one door visit. Written once, then amended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    pub household_id: String,
    pub visit_type: VisitType,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: VisitOutcome,
    #[serde(default)]
    pub gps: Option<Gps>,
    #[serde(default)]
    pub people_met: Vec<String>,
    #[serde(default)]
    pub visitors: Vec<String>,
    #[serde(default)]
    pub observations: String,
    /// Append-only: two workers adding issues offline both keep theirs.
    #[serde(default)]
    pub issues: Vec<VisitIssue>,
    /// Publicity done on the visit: anti-fraud, fire safety, ...
    #[serde(default)]
    pub publicity: Vec<String>,
    #[serde(default)]
    pub photos: Vec<String>,
    #[serde(default)]
    pub next_visit_due: Option<NaiveDate>,
    #[serde(default)]
    pub linked_cases: Vec<String>,
    /// Photos and files (their bytes travel separately).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Visit,
    label: Label {
        zh: "走访记录",
        en: "Door visit",
    },
    about: Label {
        zh: "一次入户走访：见到谁、看到什么、发现的问题和处理方式",
        en: "One door visit: who was met, what was seen, issues found and how they were handled",
    },
    fields: &[
        Field::new("household_id", "户", "Household", T::Ref(Kind::Household)).required(),
        Field::new(
            "visit_type",
            "走访类型",
            "Visit type",
            T::Choice(&VisitType::CHOICES),
        )
        .required(),
        Field::new("started_at", "开始时间", "Started at", T::Event).required(),
        Field::new("ended_at", "结束时间", "Ended at", T::Event),
        Field::new(
            "outcome",
            "走访结果",
            "Outcome",
            T::Choice(&VisitOutcome::CHOICES),
        )
        .required(),
        Field::new("gps", "位置", "Location", T::Gps),
        Field::new("people_met", "见到的人", "People met", T::List(&T::Name)),
        Field::new("visitors", "走访人员", "Visitors", T::List(&T::Name)),
        Field::new("observations", "走访情况", "Observations", T::Text),
        Field::new("issues", "发现问题", "Issues found", T::Log(ISSUE)),
        Field::new("publicity", "宣传内容", "Publicity", T::List(&T::Name)),
        Field::new("photos", "照片", "Photos", T::List(&T::Name)),
        Field::new("next_visit_due", "下次走访", "Next visit due", T::Date),
        Field::new(
            "linked_cases",
            "关联个案",
            "Linked cases",
            T::List(&T::Ref(Kind::Case)),
        ),
        attachment::FIELD,
    ],
    status: Some("outcome"),
    subtype: Some("visit_type"),
    watched: &["household_id", "started_at", "ended_at"],
    index,
    computed: &[],
    check,
    order: |f| end_after_start(f, "started_at", "ended_at"),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Visit>(f)?).unwrap_or_default()),
};

fn check(
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
    write: bool,
) -> Result<(), ValidationError> {
    let v: Visit = typed(fields)?;
    require_text("household_id", &v.household_id)?;
    if write && names_new_household(previous, &v.household_id) {
        require_household(ctx, &v.household_id)?;
    }
    Ok(())
}

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        household_id: s("household_id"),
        status: s("outcome"),
        assigned_to: s("created_by"),
        due_at: s("next_visit_due"),
        title: format!(
            "{} {}",
            s("visit_type").unwrap_or_default(),
            s("started_at").unwrap_or_default()
        ),
    }
}
