//! 派单任务: follow-up work the office dispatches — from an urgent report, a patrol incident, a
//! visit's issue or a meeting's decision, or on its own — to a grid worker or a unit, with a
//! deadline: dispatched → accepted → handled → verified → closed, or sent back to be handled
//! again (上报 → 派遣 → 处置 → 核查 → 结案).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::choices;
use crate::record::attachment::{self, Attachment};
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{Lifecycle, lifecycle_move, require_text, status_write, typed};
use crate::record::{Kind, ValidationContext, ValidationError};

choices! {
    /// 任务来源.
    pub enum TaskSource in "task_source" {
        Report = "report" ("社情民意", "Urgent report"),
        Incident = "incident" ("巡逻事件", "Patrol incident"),
        VisitIssue = "visit_issue" ("走访发现问题", "Issue found on a visit"),
        Decision = "decision" ("会议决定", "Meeting decision"),
        Office = "office" ("办公室交办", "Office"),
    }
}

choices! {
    /// 任务状态.
    #[derive(Default)]
    pub enum TaskStatus in "task_status" {
        #[default]
        Dispatched = "dispatched" ("已派单", "Dispatched"),
        Accepted = "accepted" ("已接单", "Accepted"),
        Handled = "handled" ("已处置", "Handled"),
        SentBack = "sent_back" ("已退回", "Sent back"),
        Verified = "verified" ("已核查", "Verified"),
        Closed = "closed" ("已结案", "Closed"),
    }
}

impl TaskStatus {
    /// The statuses a task may move to from `self`. Staying put is always allowed.
    pub fn successors(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Dispatched => &[Accepted, Handled, Closed],
            Accepted => &[Handled],
            Handled => &[Verified, SentBack],
            SentBack => &[Accepted, Handled],
            Verified => &[Closed, SentBack],
            Closed => &[],
        }
    }

    pub fn can_move_to(self, to: TaskStatus) -> bool {
        self == to || self.successors().contains(&to)
    }

    /// Whether the task still needs work by its assignee or the office.
    pub fn is_active(self) -> bool {
        self != TaskStatus::Closed
    }
}

impl Lifecycle for TaskStatus {
    fn may_become(self, to: Self) -> bool {
        self.can_move_to(to)
    }

    fn code(self) -> &'static str {
        self.as_str()
    }
}

/// One step of a task's history: who did what, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdate {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub photos: Vec<String>,
}

const UPDATE: &[Field] = &[
    Field::new("at", "时间", "Time", T::Event).required(),
    Field::new("by", "记录人", "Recorded by", T::Name),
    Field::new("status", "状态", "Status", T::Choice(&TaskStatus::CHOICES)),
    Field::new("note", "处理情况", "Note", T::Text),
    Field::new("photos", "照片", "Photos", T::List(&T::Name)),
];

/// 派单任务.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub title: String,
    pub source: TaskSource,
    /// The record it came from (a report, patrol, visit or activity).
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default)]
    pub household_id: Option<String>,
    #[serde(default)]
    pub description: String,
    /// The grid worker it is dispatched to (username), or
    #[serde(default)]
    pub assignee: Option<String>,
    /// the unit.
    #[serde(default)]
    pub assignee_unit_id: Option<String>,
    pub deadline: DateTime<Utc>,
    #[serde(default)]
    pub status: TaskStatus,
    /// Append-only: acceptance, handling notes, verification, sending back.
    #[serde(default)]
    pub updates: Vec<TaskUpdate>,
    /// Photos and files (their bytes travel separately).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Task,
    label: Label {
        zh: "派单任务",
        en: "Task",
    },
    about: Label {
        zh: "办公室派给网格员或共建单位的任务：来源、期限，派单 → 接单 → 处置 → 核查 → 结案，或退回重办",
        en: "Work the office dispatches to a grid worker or a unit: source, deadline, dispatched → accepted → handled → verified → closed, or sent back",
    },
    fields: &[
        Field::new("title", "任务名称", "Title", T::Name).required(),
        Field::new(
            "source",
            "任务来源",
            "Source",
            T::Choice(&TaskSource::CHOICES),
        )
        .required(),
        Field::new("source_id", "来源记录", "Source record", T::Name),
        Field::new("household_id", "户", "Household", T::Ref(Kind::Household)),
        Field::new("description", "任务内容", "Description", T::Text),
        Field::new("assignee", "承办人", "Assignee", T::Name),
        Field::new(
            "assignee_unit_id",
            "承办单位",
            "Assignee unit",
            T::Ref(Kind::Unit),
        ),
        Field::new("deadline", "办理期限", "Deadline", T::Instant).required(),
        Field::new("status", "状态", "Status", T::Choice(&TaskStatus::CHOICES)),
        Field::new("updates", "办理记录", "Updates", T::Log(UPDATE)),
        attachment::FIELD,
    ],
    status: Some("status"),
    subtype: Some("source"),
    watched: &["status"],
    index,
    computed: &[],
    check,
    order: |_| Ok(()),
    moves: Some(|seen, to| lifecycle_move::<TaskStatus>(Kind::Task, seen, to)),
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Task>(f)?).unwrap_or_default()),
};

fn check(
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    _: &dyn ValidationContext,
    write: bool,
) -> Result<(), ValidationError> {
    let task: Task = typed(fields)?;
    require_text("title", &task.title)?;
    if write {
        status_write(Kind::Task, previous, task.status)?;
    }
    Ok(())
}

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        household_id: s("household_id"),
        status: s("status").or(Some(TaskStatus::default().as_str().into())),
        assigned_to: s("assignee").or_else(|| s("assignee_unit_id")),
        due_at: s("deadline"),
        title: s("title").unwrap_or_default(),
    }
}
