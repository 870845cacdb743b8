//! The five kinds of field record as typed Rust structs.
//!
//! A record is stored as an Automerge document whose root map holds these fields. The typed structs
//! are what validation deserialises into; unknown fields in a document (written by a newer client)
//! are never dropped, because writes only touch the fields they change.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::lifecycle::{CaseStatus, ReportStatus};

/// A position with its accuracy, as phones report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gps {
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

/// An urban address (estate/building/unit/floor/door) or a village one (group/lane).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub estate: Option<String>,
    pub building: Option<String>,
    pub unit: Option<String>,
    pub floor: Option<String>,
    pub door: Option<String>,
    pub village_group: Option<String>,
    pub lane: Option<String>,
    /// Free text for what the parts above cannot say.
    pub text: Option<String>,
}

// ---------------------------------------------------------------- household (户)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HouseholdType {
    Registered,
    Migrant,
    Rented,
    Vacant,
}

/// Sets the visit interval: priority households monthly, ordinary ones twice a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitClass {
    Priority,
    #[default]
    Ordinary,
}

impl VisitClass {
    pub fn interval_days(self) -> i64 {
        match self {
            VisitClass::Priority => 30,
            VisitClass::Ordinary => 182,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Present,
    Moved,
    Deceased,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resident {
    pub name: String,
    #[serde(default)]
    pub gender: Option<String>,
    #[serde(default)]
    pub birth_date: Option<NaiveDate>,
    /// Sensitive: shown masked in lists.
    #[serde(default)]
    pub id_number: Option<String>,
    #[serde(default)]
    pub relation: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub employment: Option<String>,
    #[serde(default)]
    pub disability_type: Option<String>,
    #[serde(default)]
    pub disability_grade: Option<String>,
    /// Sensitive: health conditions.
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub welfare_status: Option<String>,
    #[serde(default)]
    pub presence: Option<Presence>,
}

/// 户敏感信息: the residents' sensitive fields of one household, in their own document
/// (`<household>~private`, see `record::sensitive`), one entry per resident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdPrivate {
    pub household_id: String,
    #[serde(default)]
    pub residents: Vec<PrivateResident>,
}

/// One resident's entry in [`HouseholdPrivate`]: the name to match it up again, and the
/// sensitive fields of [`Resident`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrivateResident {
    pub name: Option<String>,
    pub id_number: Option<String>,
    pub health: Option<String>,
    pub disability_type: Option<String>,
    pub disability_grade: Option<String>,
    pub welfare_status: Option<String>,
}

/// 户: a household and its residents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Household {
    pub head_name: String,
    #[serde(default)]
    pub address: Address,
    #[serde(default)]
    pub gps: Option<Gps>,
    pub household_type: HouseholdType,
    #[serde(default)]
    pub residents: Vec<Resident>,
    /// 五保/特困, 低保, 残疾, 独居老人, 留守, 下岗失业, 社区矫正, ...
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub visit_class: VisitClass,
    #[serde(default)]
    pub assigned_worker: Option<String>,
    #[serde(default)]
    pub risk_level: Option<Level>,
    #[serde(default)]
    pub last_visit_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub next_visit_due: Option<NaiveDate>,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Low,
    Medium,
    High,
}

// ---------------------------------------------------------------- door visit (走访记录)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitType {
    Routine,
    Priority,
    Assistance,
    FollowUp,
    Emergency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitOutcome {
    Met,
    NobodyHome,
    Refused,
    Moved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    SolvedOnSpot,
    TakenBack,
    ReportedAtOnce,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitIssue {
    pub category: String,
    #[serde(default)]
    pub description: String,
    pub handling: Handling,
}

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
}

// ---------------------------------------------------------------- patrol log (巡逻日志)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    PublicOrder,
    Fire,
    Environment,
    Facilities,
    Dispute,
    SuspiciousPerson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentAction {
    Handled,
    Reported,
    Called110,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub passed_at: DateTime<Utc>,
}

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
}

// ---------------------------------------------------------------- assistance case (帮扶个案)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseType {
    FiveGuarantee,
    Disability,
    LowIncome,
    Reemployment,
    TemporaryRelief,
    ElderlyCare,
    LoveSupermarket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseSource {
    Visit,
    Applied,
    Referred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Visit,
    Goods,
    BenefitApplication,
    Referral,
    JobMatched,
    SupermarketRedemption,
    Note,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Need {
    pub description: String,
    #[serde(default)]
    pub priority: Option<Level>,
}

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
}

// ---------------------------------------------------------------- urgent report (社情民意)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportCategory {
    Dispute,
    SafetyHazard,
    GroupIncidentSign,
    PublicOpinion,
    LivelihoodRequest,
}

/// 特急 / 紧急 / 一般. The deadline rule for each is configuration (see `DeadlineRules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Critical,
    Urgent,
    Normal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub by: Option<String>,
    pub text: String,
}

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
}
