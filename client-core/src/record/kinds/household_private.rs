//! 户敏感信息: the residents' sensitive fields of one household, in their own document
//! (`<household>~private`, see `record::sensitive`), so they never reach a device whose role may
//! not see them. Written and read through its household, never on its own.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::record::attachment::{self, Attachment};
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{require_text, typed};
use crate::record::{Kind, ValidationContext, ValidationError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdPrivate {
    pub household_id: String,
    #[serde(default)]
    pub residents: Vec<PrivateResident>,
    /// Photos and files (their bytes travel separately).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// One resident's entry in [`HouseholdPrivate`]: the name to match it up again, and the
/// sensitive fields of [`Resident`](super::Resident).
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

const PRIVATE_RESIDENT: &[Field] = &[
    Field::new("name", "姓名", "Name", T::Name),
    Field::new("id_number", "身份证号", "ID number", T::Name).sensitive(),
    Field::new("health", "健康状况", "Health", T::Text).sensitive(),
    Field::new("disability_type", "残疾类别", "Disability type", T::Name).sensitive(),
    Field::new("disability_grade", "残疾等级", "Disability grade", T::Name).sensitive(),
    Field::new("welfare_status", "享受待遇", "Benefits", T::Name).sensitive(),
];

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::HouseholdPrivate,
    label: Label {
        zh: "户敏感信息",
        en: "Household (sensitive)",
    },
    about: Label {
        zh: "一户成员的敏感信息（身份证号、健康、残疾、待遇），仅发给有权查看的角色；随户一起填写",
        en: "The residents' sensitive data of one household (ID numbers, health, disability, benefits), sent only to roles that may see it; written with its household",
    },
    fields: &[
        Field::new("household_id", "户", "Household", T::Ref(Kind::Household)).required(),
        Field::new(
            "residents",
            "成员",
            "Residents",
            T::Entries(PRIVATE_RESIDENT),
        ),
        attachment::FIELD,
    ],
    status: None,
    subtype: None,
    watched: &[],
    index,
    computed: &[],
    check,
    order: |_| Ok(()),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<HouseholdPrivate>(f)?).unwrap_or_default()),
};

fn check(
    fields: &mut Map<String, Value>,
    _: Option<&Map<String, Value>>,
    _: &dyn ValidationContext,
    _: bool,
) -> Result<(), ValidationError> {
    let p: HouseholdPrivate = typed(fields)?;
    require_text("household_id", &p.household_id)
}

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    IndexParts {
        household_id: f
            .get("household_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        title: SPEC.label.zh.to_string(),
        ..IndexParts::default()
    }
}
