//! 户: a household and its residents.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{ADDRESS, Address, Gps, Level};
use crate::choices;
use crate::record::attachment::{self, Attachment};
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{require_text, typed};
use crate::record::{Kind, ValidationContext, ValidationError};

choices! {
    /// 户类型.
    pub enum HouseholdType in "household_type" {
        Registered = "registered" ("户籍户", "Registered"),
        Migrant = "migrant" ("流动人口户", "Migrant"),
        Rented = "rented" ("出租户", "Rented"),
        Vacant = "vacant" ("空置户", "Vacant"),
    }
}

choices! {
    /// Sets the visit interval: priority households monthly, ordinary ones twice a year.
    #[derive(Default)]
    pub enum VisitClass in "visit_class" {
        Priority = "priority" ("重点户", "Priority"),
        #[default]
        Ordinary = "ordinary" ("一般户", "Ordinary"),
    }
}

impl VisitClass {
    pub fn interval_days(self) -> i64 {
        match self {
            VisitClass::Priority => 30,
            VisitClass::Ordinary => 182,
        }
    }
}

choices! {
    /// 在住情况.
    pub enum Presence in "presence" {
        Present = "present" ("在住", "Present"),
        Moved = "moved" ("已迁出", "Moved away"),
        Deceased = "deceased" ("已故", "Deceased"),
    }
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

/// The fields of a [`Resident`]; the sensitive ones travel only in the household's private
/// part (`record::sensitive`).
pub const RESIDENT: &[Field] = &[
    Field::new("name", "姓名", "Name", T::Name).required(),
    Field::new("gender", "性别", "Gender", T::Name),
    Field::new("birth_date", "出生日期", "Birth date", T::BirthDate),
    Field::new("id_number", "身份证号", "ID number", T::Name).sensitive(),
    Field::new("relation", "与户主关系", "Relation", T::Name),
    Field::new("phone", "联系电话", "Phone", T::Name),
    Field::new("employment", "就业情况", "Employment", T::Name),
    Field::new("disability_type", "残疾类别", "Disability type", T::Name).sensitive(),
    Field::new("disability_grade", "残疾等级", "Disability grade", T::Name).sensitive(),
    Field::new("health", "健康状况", "Health", T::Text).sensitive(),
    Field::new("welfare_status", "享受待遇", "Benefits", T::Name).sensitive(),
    Field::new(
        "presence",
        "在住情况",
        "Presence",
        T::Choice(&Presence::CHOICES),
    ),
];

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
    /// Photos and files (their bytes travel separately).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Household,
    label: Label {
        zh: "户",
        en: "Household",
    },
    about: Label {
        zh: "一户人家及其成员；成员的敏感信息另存于户敏感信息",
        en: "A household and its residents; residents' sensitive data is kept in its private part",
    },
    fields: &[
        Field::new("head_name", "户主", "Head of household", T::Name).required(),
        Field::new("address", "地址", "Address", T::Object(ADDRESS)),
        Field::new("gps", "位置", "Location", T::Gps),
        Field::new(
            "household_type",
            "户类型",
            "Household type",
            T::Choice(&HouseholdType::CHOICES),
        )
        .required(),
        Field::new("residents", "成员", "Residents", T::Entries(RESIDENT)),
        Field::new("tags", "标签", "Tags", T::List(&T::Name)),
        Field::new(
            "visit_class",
            "走访类别",
            "Visit class",
            T::Choice(&VisitClass::CHOICES),
        ),
        Field::new("assigned_worker", "负责网格员", "Assigned worker", T::Name),
        Field::new(
            "risk_level",
            "风险等级",
            "Risk level",
            T::Choice(&Level::CHOICES),
        ),
        Field::new("last_visit_at", "上次走访", "Last visit", T::Instant),
        Field::new("next_visit_due", "下次走访", "Next visit due", T::Date),
        Field::new("notes", "备注", "Notes", T::Text),
        attachment::FIELD,
    ],
    status: None,
    subtype: Some("household_type"),
    watched: &[],
    index,
    computed: &[],
    check,
    order: |_| Ok(()),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Household>(f)?).unwrap_or_default()),
};

fn check(
    fields: &mut Map<String, Value>,
    _: Option<&Map<String, Value>>,
    _: &dyn ValidationContext,
    _: bool,
) -> Result<(), ValidationError> {
    let h: Household = typed(fields)?;
    require_text("head_name", &h.head_name)?;
    for (i, r) in h.residents.iter().enumerate() {
        require_text(&format!("residents[{i}].name"), &r.name)?;
    }
    Ok(())
}

fn index(id: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        household_id: Some(id.to_string()),
        status: None,
        assigned_to: s("assigned_worker"),
        due_at: s("next_visit_due"),
        title: title(f),
    }
}

/// The head of household and the address: 张三 3-2-101.
fn title(f: &Map<String, Value>) -> String {
    let head = f.get("head_name").and_then(Value::as_str).unwrap_or("");
    let address = f.get("address").and_then(Value::as_object);
    let part = |k: &str| {
        address
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let place = [
        part("estate"),
        part("building"),
        part("unit"),
        part("door"),
        part("village_group"),
        part("lane"),
    ]
    .into_iter()
    .filter(|p| !p.is_empty())
    .collect::<Vec<_>>()
    .join("-");
    if place.is_empty() {
        head.to_string()
    } else {
        format!("{head} {place}")
    }
}
