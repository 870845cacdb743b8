//! 共建单位: a co-building unit — a government office, school, company or hospital of the
//! community that pledged resources and services and is paired with grids.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::choices;
use crate::record::Kind;
use crate::record::schema::{Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{require_text, typed};

choices! {
    /// 单位类型.
    pub enum UnitType in "unit_type" {
        Government = "government" ("机关单位", "Government office"),
        PublicInstitution = "public_institution" ("事业单位", "Public institution"),
        School = "school" ("学校", "School"),
        Company = "company" ("企业", "Company"),
        Hospital = "hospital" ("医院", "Hospital"),
        SocialOrganisation = "social_organisation" ("社会组织", "Social organisation"),
        Other = "other" ("其他", "Other"),
    }
}

/// 共建单位.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub name: String,
    pub unit_type: UnitType,
    #[serde(default)]
    pub contact_person: Option<String>,
    #[serde(default)]
    pub contact_phone: Option<String>,
    #[serde(default)]
    pub address: String,
    /// Resources it pledged: a meeting room, a vehicle, funds, ...
    #[serde(default)]
    pub resources: Vec<String>,
    /// Services it pledged: free clinics, tutoring, legal advice, ...
    #[serde(default)]
    pub services: Vec<String>,
    /// The grids it is paired with (结对网格), besides the grid that holds the record.
    #[serde(default)]
    pub paired_grids: Vec<String>,
    #[serde(default)]
    pub notes: String,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Unit,
    label: Label {
        zh: "共建单位",
        en: "Co-building unit",
    },
    about: Label {
        zh: "驻社区的机关、学校、企业、医院等共建单位：联系人、承诺的资源和服务、结对网格",
        en: "A government office, school, company or hospital sharing the community's work: contact, pledged resources and services, paired grids",
    },
    fields: &[
        Field::new("name", "单位名称", "Name", T::Name).required(),
        Field::new(
            "unit_type",
            "单位类型",
            "Unit type",
            T::Choice(&UnitType::CHOICES),
        )
        .required(),
        Field::new("contact_person", "联系人", "Contact person", T::Name),
        Field::new("contact_phone", "联系电话", "Contact phone", T::Name),
        Field::new("address", "单位地址", "Address", T::Place),
        Field::new(
            "resources",
            "承诺资源",
            "Pledged resources",
            T::List(&T::Name),
        ),
        Field::new(
            "services",
            "承诺服务",
            "Pledged services",
            T::List(&T::Name),
        ),
        Field::new(
            "paired_grids",
            "结对网格",
            "Paired grids",
            T::List(&T::Name),
        ),
        Field::new("notes", "备注", "Notes", T::Text),
    ],
    status: None,
    subtype: Some("unit_type"),
    watched: &[],
    index,
    computed: &[],
    check: |fields, _, _, _| {
        let unit: Unit = typed(fields)?;
        require_text("name", &unit.name)
    },
    order: |_| Ok(()),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Unit>(f)?).unwrap_or_default()),
};

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    IndexParts {
        assigned_to: f
            .get("created_by")
            .and_then(Value::as_str)
            .map(str::to_string),
        title: f
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ..IndexParts::default()
    }
}
