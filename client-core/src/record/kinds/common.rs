//! Parts several kinds share: positions, addresses, levels.

use serde::{Deserialize, Serialize};

use crate::choices;
use crate::record::schema::{Field, FieldType};

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

/// The parts of a [`Gps`] position (a [`FieldType::Gps`] value), for their labels.
pub const GPS: &[Field] = &[
    Field::new("lat", "纬度", "Latitude", FieldType::Number).required(),
    Field::new("lon", "经度", "Longitude", FieldType::Number).required(),
    Field::new(
        "accuracy_m",
        "精度（米）",
        "Accuracy (m)",
        FieldType::Number,
    ),
];

/// The parts of an [`Address`].
pub const ADDRESS: &[Field] = &[
    Field::new("estate", "小区", "Estate", FieldType::Place),
    Field::new("building", "楼栋", "Building", FieldType::Place),
    Field::new("unit", "单元", "Unit", FieldType::Place),
    Field::new("floor", "楼层", "Floor", FieldType::Place),
    Field::new("door", "门牌号", "Door", FieldType::Place),
    Field::new(
        "village_group",
        "村民小组",
        "Village group",
        FieldType::Place,
    ),
    Field::new("lane", "街巷", "Lane", FieldType::Place),
    Field::new("text", "详细地址", "Address details", FieldType::Place),
];

choices! {
    /// 低 / 中 / 高: risk, severity, priority.
    pub enum Level in "level" {
        Low = "low" ("低", "Low"),
        Medium = "medium" ("中", "Medium"),
        High = "high" ("高", "High"),
    }
}
