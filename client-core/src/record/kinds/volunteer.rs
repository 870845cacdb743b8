//! 志愿者: a volunteer — often an in-service Party member with a post and duties (设岗定责) —
//! who takes part in patrols, visits and activities. Hours are derived from activities, never
//! typed in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::choices;
use crate::record::Kind;
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{require_text, typed};

choices! {
    /// 志愿者状态.
    #[derive(Default)]
    pub enum VolunteerStatus in "volunteer_status" {
        #[default]
        Active = "active" ("在册", "Active"),
        Paused = "paused" ("暂停", "Paused"),
        Left = "left" ("已退出", "Left"),
    }
}

/// 志愿者.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volunteer {
    pub name: String,
    #[serde(default)]
    pub gender: Option<String>,
    /// Sensitive, as residents' phones are: volunteer records reach only roles that may read
    /// residents' private data (see `access`).
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub unit_id: Option<String>,
    /// 在职党员.
    #[serde(default)]
    pub party_member: bool,
    #[serde(default)]
    pub skills: Vec<String>,
    /// 岗位 (设岗定责): the post assigned.
    #[serde(default)]
    pub post: Option<String>,
    /// 职责: the duties of the post.
    #[serde(default)]
    pub duties: String,
    /// The grids the volunteer serves, besides the grid that holds the record.
    #[serde(default)]
    pub grids: Vec<String>,
    #[serde(default)]
    pub status: VolunteerStatus,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Volunteer,
    label: Label {
        zh: "志愿者",
        en: "Volunteer",
    },
    about: Label {
        zh: "志愿者（含在职党员）：所在单位、技能、设岗定责的岗位和职责；服务时长由活动记录统计",
        en: "A volunteer (in-service Party members included): unit, skills, assigned post and duties; hours come from activities",
    },
    fields: &[
        Field::new("name", "姓名", "Name", T::Name).required(),
        Field::new("gender", "性别", "Gender", T::Name),
        Field::new("phone", "联系电话", "Phone", T::Name).sensitive(),
        Field::new("unit_id", "所在单位", "Unit", T::Ref(Kind::Unit)),
        Field::new(
            "party_member",
            "在职党员",
            "In-service Party member",
            T::Bool,
        ),
        Field::new("skills", "技能特长", "Skills", T::List(&T::Name)),
        Field::new("post", "岗位", "Post", T::Name),
        Field::new("duties", "岗位职责", "Duties", T::Text),
        Field::new("grids", "服务网格", "Grids served", T::List(&T::Name)),
        Field::new(
            "status",
            "状态",
            "Status",
            T::Choice(&VolunteerStatus::CHOICES),
        ),
    ],
    status: Some("status"),
    subtype: None,
    watched: &[],
    index,
    computed: &[],
    check: |fields, _, _, _| {
        let volunteer: Volunteer = typed(fields)?;
        require_text("name", &volunteer.name)
    },
    order: |_| Ok(()),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Volunteer>(f)?).unwrap_or_default()),
};

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        status: s("status").or(Some(VolunteerStatus::default().as_str().into())),
        assigned_to: s("created_by"),
        title: s("name").unwrap_or_default(),
        ..IndexParts::default()
    }
}
