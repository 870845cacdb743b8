//! 帮扶个案: an assistance case, its lifecycle and its log of actions.
//!
//! A status move is checked where the write happens (on the device, or in the office), and again
//! by the relay, change by change, from a status the change's author saw (`record::check_move`).
//! Two devices may still move a case concurrently to different statuses; Automerge keeps both
//! and the record shows up in `conflicts()` for office staff to settle.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::Level;
use crate::choices;
use crate::record::attachment::{self, Attachment};
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{
    Lifecycle, lifecycle_move, names_new_household, require_household, require_text, status_write,
    typed,
};
use crate::record::{Kind, ValidationContext, ValidationError};

choices! {
    /// 帮扶类型.
    pub enum CaseType in "case_type" {
        FiveGuarantee = "five_guarantee" ("五保供养", "Five-guarantee support"),
        Disability = "disability" ("残疾帮扶", "Disability"),
        LowIncome = "low_income" ("低保", "Low income"),
        Reemployment = "reemployment" ("再就业", "Re-employment"),
        TemporaryRelief = "temporary_relief" ("临时救助", "Temporary relief"),
        ElderlyCare = "elderly_care" ("养老照护", "Elderly care"),
        LoveSupermarket = "love_supermarket" ("爱心超市", "Love supermarket"),
    }
}

choices! {
    /// How the case came to the office.
    pub enum CaseSource in "case_source" {
        Visit = "visit" ("走访发现", "Found on a visit"),
        Applied = "applied" ("本人申请", "Applied"),
        Referred = "referred" ("转介", "Referred"),
    }
}

choices! {
    /// What one entry of a case's action log did.
    pub enum ActionKind in "action" {
        Visit = "visit" ("走访", "Visit"),
        Goods = "goods" ("发放物资", "Goods handed out"),
        BenefitApplication = "benefit_application" ("申请待遇", "Benefit application"),
        Referral = "referral" ("转介", "Referral"),
        JobMatched = "job_matched" ("就业对接", "Job matched"),
        SupermarketRedemption = "supermarket_redemption" ("爱心超市兑换", "Love-supermarket redemption"),
        Note = "note" ("备注", "Note"),
    }
}

choices! {
    /// 帮扶个案状态: draft → open → assessing → in_progress → pending_review → closed, with
    /// referred, suspended and reopened.
    #[derive(Default)]
    pub enum CaseStatus in "case_status" {
        #[default]
        Draft = "draft" ("草稿", "Draft"),
        Open = "open" ("已立案", "Open"),
        Assessing = "assessing" ("评估中", "Assessing"),
        InProgress = "in_progress" ("帮扶中", "In progress"),
        PendingReview = "pending_review" ("待审核", "Pending review"),
        Closed = "closed" ("已办结", "Closed"),
        Referred = "referred" ("已转介", "Referred"),
        Suspended = "suspended" ("已暂停", "Suspended"),
        Reopened = "reopened" ("重新开启", "Reopened"),
    }
}

impl CaseStatus {
    /// Whether a case in this status still needs work ("open cases" in lists and reports).
    pub fn is_active(self) -> bool {
        !matches!(self, CaseStatus::Draft | CaseStatus::Closed)
    }

    /// The statuses a case may move to from `self`. Staying put is always allowed.
    pub fn successors(self) -> &'static [CaseStatus] {
        use CaseStatus::*;
        match self {
            Draft => &[Open, Closed],
            Open => &[Assessing, InProgress, Referred, Suspended, Closed],
            Assessing => &[InProgress, Referred, Suspended, Closed],
            InProgress => &[PendingReview, Referred, Suspended],
            PendingReview => &[Closed, InProgress],
            Referred => &[InProgress, Closed],
            Suspended => &[InProgress, Closed],
            Closed => &[Reopened],
            Reopened => &[Assessing, InProgress, Closed],
        }
    }

    pub fn can_move_to(self, to: CaseStatus) -> bool {
        self == to || self.successors().contains(&to)
    }
}

impl Lifecycle for CaseStatus {
    fn may_become(self, to: Self) -> bool {
        self.can_move_to(to)
    }

    fn code(self) -> &'static str {
        self.as_str()
    }

    fn hint(self) -> &'static str {
        if self == CaseStatus::Closed {
            " (reopen the case first)"
        } else {
            ""
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Need {
    pub description: String,
    #[serde(default)]
    pub priority: Option<Level>,
}

const NEED: &[Field] = &[
    Field::new("description", "说明", "Description", T::Text).required(),
    Field::new("priority", "优先级", "Priority", T::Choice(&Level::CHOICES)),
];

/// One entry of a case's append-only action log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseAction {
    pub kind: ActionKind,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub quantity: Option<f64>,
    #[serde(default)]
    pub value_yuan: Option<f64>,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub recipient: Option<String>,
}

const ACTION: &[Field] = &[
    Field::new("kind", "措施类别", "Kind", T::Choice(&ActionKind::CHOICES)).required(),
    Field::new("at", "时间", "Time", T::Event).required(),
    Field::new("by", "记录人", "Recorded by", T::Name),
    Field::new("description", "说明", "Description", T::Text),
    Field::new("quantity", "数量", "Quantity", T::Number),
    Field::new("value_yuan", "价值（元）", "Value (yuan)", T::Number),
    Field::new("evidence", "凭证", "Evidence", T::List(&T::Name)),
    Field::new("recipient", "接收人", "Recipient", T::Name),
];

/// 帮扶个案: an assistance case and its actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub case_type: CaseType,
    /// The subject household; a case may instead name a person only.
    #[serde(default)]
    pub household_id: Option<String>,
    #[serde(default)]
    pub subject_name: Option<String>,
    #[serde(default)]
    pub source: Option<CaseSource>,
    #[serde(default)]
    pub cause: String,
    #[serde(default)]
    pub needs: Vec<Need>,
    #[serde(default)]
    pub responsible: Option<String>,
    #[serde(default)]
    pub plan: String,
    #[serde(default)]
    pub next_review_due: Option<NaiveDate>,
    /// Append-only.
    #[serde(default)]
    pub actions: Vec<CaseAction>,
    #[serde(default)]
    pub status: CaseStatus,
    #[serde(default)]
    pub notes: String,
    /// Photos and files (their bytes travel separately).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Case,
    label: Label {
        zh: "帮扶个案",
        en: "Assistance case",
    },
    about: Label {
        zh: "对困难户或个人的帮扶：致困原因、需求、计划和每次帮扶措施；需有户或帮扶对象姓名",
        en: "Assistance for a household or person in need: cause, needs, plan and every action taken; names a household or a subject",
    },
    fields: &[
        Field::new(
            "case_type",
            "个案类型",
            "Case type",
            T::Choice(&CaseType::CHOICES),
        )
        .required(),
        Field::new("household_id", "户", "Household", T::Ref(Kind::Household)),
        Field::new("subject_name", "帮扶对象", "Subject", T::Name),
        Field::new("source", "来源", "Source", T::Choice(&CaseSource::CHOICES)),
        Field::new("cause", "致困原因", "Cause", T::Text),
        Field::new("needs", "帮扶需求", "Needs", T::Entries(NEED)),
        Field::new("responsible", "负责人", "Responsible", T::Name),
        Field::new("plan", "帮扶计划", "Plan", T::Text),
        Field::new("next_review_due", "下次复核", "Next review due", T::Date),
        Field::new("actions", "帮扶措施", "Actions", T::Log(ACTION)),
        Field::new("status", "状态", "Status", T::Choice(&CaseStatus::CHOICES)),
        Field::new("notes", "备注", "Notes", T::Text),
        attachment::FIELD,
    ],
    status: Some("status"),
    subtype: Some("case_type"),
    watched: &["status", "household_id"],
    index,
    computed: &[],
    check,
    order: |_| Ok(()),
    moves: Some(|seen, to| lifecycle_move::<CaseStatus>(Kind::Case, seen, to)),
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Case>(f)?).unwrap_or_default()),
};

fn check(
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
    write: bool,
) -> Result<(), ValidationError> {
    let c: Case = typed(fields)?;
    match (&c.household_id, &c.subject_name) {
        (Some(h), _) => {
            if write && names_new_household(previous, h) {
                require_household(ctx, h)?;
            }
        }
        (None, Some(name)) => require_text("subject_name", name)?,
        (None, None) => return Err(ValidationError::MissingField("household_id".into())),
    }
    if write {
        status_write(Kind::Case, previous, c.status)?;
    }
    Ok(())
}

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        household_id: s("household_id"),
        status: s("status").or(Some(CaseStatus::default().as_str().into())),
        assigned_to: s("responsible").or_else(|| s("created_by")),
        due_at: s("next_review_due"),
        title: format!(
            "{} {}",
            s("case_type").unwrap_or_default(),
            s("subject_name").unwrap_or_default()
        )
        .trim()
        .to_string(),
    }
}
