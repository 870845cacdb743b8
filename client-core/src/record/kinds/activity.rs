//! 活动: a co-construction activity — volunteer service, clean-up, culture and sports,
//! publicity, a matchmaking meeting for poor families, the coordination body's meeting, a Party
//! members' activity — with who took part for how long, and a meeting's decisions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::choices;
use crate::record::Kind;
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{end_after_start, require_text, typed};

choices! {
    /// 活动类型.
    pub enum ActivityType in "activity_type" {
        VolunteerService = "volunteer_service" ("志愿服务", "Volunteer service"),
        CleanUp = "clean_up" ("环境整治", "Clean-up"),
        CultureSports = "culture_sports" ("文体活动", "Culture and sports"),
        Publicity = "publicity" ("宣传教育", "Education and publicity"),
        Matchmaking = "matchmaking" ("帮扶对接会", "Matchmaking meeting for poor families"),
        CoordinationMeeting = "coordination_meeting" ("共建联席会议", "Coordination meeting"),
        PartyActivity = "party_activity" ("党员活动", "Party members' activity"),
    }
}

/// One participant: a volunteer, a unit, or a person named, with the hours they gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    #[serde(default)]
    pub volunteer_id: Option<String>,
    #[serde(default)]
    pub unit_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub hours: Option<f64>,
}

const PARTICIPANT: &[Field] = &[
    Field::new(
        "volunteer_id",
        "志愿者",
        "Volunteer",
        T::Ref(Kind::Volunteer),
    ),
    Field::new("unit_id", "单位", "Unit", T::Ref(Kind::Unit)),
    Field::new("name", "姓名", "Name", T::Name),
    Field::new("hours", "服务时长（小时）", "Hours", T::Number),
];

/// A meeting's decision; the office may dispatch it as a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub text: String,
    #[serde(default)]
    pub task_id: Option<String>,
}

const DECISION: &[Field] = &[
    Field::new("text", "决定事项", "Decision", T::Text).required(),
    Field::new("task_id", "派单任务", "Task", T::Ref(Kind::Task)),
];

/// 活动.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub activity_type: ActivityType,
    pub title: String,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub place: String,
    #[serde(default)]
    pub organiser_unit_id: Option<String>,
    /// Append-only: several people sign participants in.
    #[serde(default)]
    pub participants: Vec<Participant>,
    /// Residents who took part or were served, counted.
    #[serde(default)]
    pub residents_count: Option<f64>,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub outcome: String,
    /// Append-only.
    #[serde(default)]
    pub decisions: Vec<Decision>,
    #[serde(default)]
    pub photos: Vec<String>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Activity,
    label: Label {
        zh: "活动",
        en: "Activity",
    },
    about: Label {
        zh: "共建活动：类型、时间地点、组织单位、参加的志愿者和单位及时长、内容和成效；会议记录决定事项",
        en: "A co-construction activity: type, time and place, organising unit, volunteers and units with their hours, what was done, outcome; a meeting keeps its decisions",
    },
    fields: &[
        Field::new(
            "activity_type",
            "活动类型",
            "Activity type",
            T::Choice(&ActivityType::CHOICES),
        )
        .required(),
        Field::new("title", "活动名称", "Title", T::Name).required(),
        Field::new("started_at", "开始时间", "Started at", T::Event).required(),
        Field::new("ended_at", "结束时间", "Ended at", T::Event),
        Field::new("place", "地点", "Place", T::Place),
        Field::new(
            "organiser_unit_id",
            "组织单位",
            "Organising unit",
            T::Ref(Kind::Unit),
        ),
        Field::new(
            "participants",
            "参加人员",
            "Participants",
            T::Log(PARTICIPANT),
        ),
        Field::new(
            "residents_count",
            "参加居民人数",
            "Residents taking part",
            T::Number,
        ),
        Field::new("content", "活动内容", "What was done", T::Text),
        Field::new("outcome", "活动成效", "Outcome", T::Text),
        Field::new("decisions", "决定事项", "Decisions", T::Log(DECISION)),
        Field::new("photos", "照片", "Photos", T::List(&T::Name)),
    ],
    status: None,
    subtype: Some("activity_type"),
    watched: &["started_at", "ended_at"],
    index,
    computed: &[],
    check: |fields, _, _, _| {
        let activity: Activity = typed(fields)?;
        require_text("title", &activity.title)
    },
    order: |f| end_after_start(f, "started_at", "ended_at"),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Activity>(f)?).unwrap_or_default()),
};

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        assigned_to: s("created_by"),
        title: s("title").unwrap_or_default(),
        ..IndexParts::default()
    }
}
