//! 爱心超市物品: one item of the love supermarket and its movements — goods coming in (from a
//! unit or a resident) and going out (to a household, often through a case action).
//!
//! What is on hand is never stored: it is the sum of the movements, an append-only list, so two
//! devices handing out 3 and 4 of 10 offline both keep their movement and every replica ends at
//! 3 — the merge a counter would give, with the history kept. A hand-out a device can see would
//! go below zero is refused there; concurrent hand-outs that together overdraw are accepted by
//! the relay (each was valid where it was made) and show a negative stock for the office to
//! settle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::choices;
use crate::record::schema::{Computed, Field, FieldType as T, IndexParts, KindSpec, Label};
use crate::record::validate::{require_text, typed};
use crate::record::{Kind, ValidationContext, ValidationError};

choices! {
    /// 出入库.
    pub enum MovementKind in "movement" {
        In = "in" ("入库", "In"),
        Out = "out" ("发放", "Out"),
    }
}

/// One movement of goods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Movement {
    pub kind: MovementKind,
    pub quantity: f64,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub by: Option<String>,
    /// Who gave the goods: a unit, or a person by name.
    #[serde(default)]
    pub donor_unit_id: Option<String>,
    #[serde(default)]
    pub donor_name: Option<String>,
    /// Who received them.
    #[serde(default)]
    pub household_id: Option<String>,
    #[serde(default)]
    pub case_id: Option<String>,
    #[serde(default)]
    pub note: String,
}

const MOVEMENT: &[Field] = &[
    Field::new(
        "kind",
        "出入库",
        "In or out",
        T::Choice(&MovementKind::CHOICES),
    )
    .required(),
    Field::new("quantity", "数量", "Quantity", T::Number).required(),
    Field::new("at", "时间", "Time", T::Event).required(),
    Field::new("by", "记录人", "Recorded by", T::Name),
    Field::new(
        "donor_unit_id",
        "捐赠单位",
        "Donor unit",
        T::Ref(Kind::Unit),
    ),
    Field::new("donor_name", "捐赠人", "Donor", T::Name),
    Field::new(
        "household_id",
        "领取户",
        "Receiving household",
        T::Ref(Kind::Household),
    ),
    Field::new("case_id", "帮扶个案", "Case", T::Ref(Kind::Case)),
    Field::new("note", "备注", "Note", T::Text),
];

/// 爱心超市物品.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    pub item: String,
    /// 件, 袋, 斤, 桶, ...
    pub measure: String,
    #[serde(default)]
    pub category: Option<String>,
    /// At or below this, the overview shows the item as low.
    #[serde(default)]
    pub low_at: Option<f64>,
    /// Append-only.
    #[serde(default)]
    pub movements: Vec<Movement>,
}

pub const SPEC: KindSpec = KindSpec {
    kind: Kind::Stock,
    label: Label {
        zh: "爱心超市物品",
        en: "Love-supermarket stock",
    },
    about: Label {
        zh: "爱心超市的一种物品：每次入库（捐赠单位或居民）和发放（领取户、帮扶个案）；库存由出入库记录算出",
        en: "One item of the love supermarket: every donation in (from a unit or a resident) and hand-out (to a household, through a case); on hand is computed from the movements",
    },
    fields: &[
        Field::new("item", "物品名称", "Item", T::Name).required(),
        Field::new("measure", "计量单位", "Unit of measure", T::Name).required(),
        Field::new("category", "物品类别", "Category", T::Name),
        Field::new("low_at", "库存预警线", "Low-stock level", T::Number),
        Field::new("movements", "出入库记录", "Movements", T::Log(MOVEMENT)),
    ],
    status: None,
    subtype: None,
    watched: &[],
    index,
    computed: &[Computed {
        field: Field::new("on_hand", "现有库存", "On hand", T::Number),
        value: |f| on_hand(f).into(),
    }],
    check,
    order: |_| Ok(()),
    moves: None,
    #[cfg(test)]
    typed: |f| Ok(serde_json::to_value(typed::<Stock>(f)?).unwrap_or_default()),
};

/// What is on hand: goods in minus goods out. Movements that are not readable count nothing.
pub fn on_hand(fields: &Map<String, Value>) -> f64 {
    let movements = fields.get("movements").and_then(Value::as_array);
    movements
        .into_iter()
        .flatten()
        .map(|m| {
            let quantity = m.get("quantity").and_then(Value::as_f64).unwrap_or(0.0);
            match m.get("kind").and_then(Value::as_str) {
                Some("in") => quantity,
                Some("out") => -quantity,
                _ => 0.0,
            }
        })
        .sum()
}

fn check(
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    _: &dyn ValidationContext,
    write: bool,
) -> Result<(), ValidationError> {
    let stock: Stock = typed(fields)?;
    require_text("item", &stock.item)?;
    require_text("measure", &stock.measure)?;
    for (i, m) in stock.movements.iter().enumerate() {
        if !(m.quantity > 0.0 && m.quantity.is_finite()) {
            return Err(ValidationError::OutOfRange {
                field: format!("movements[{i}].quantity"),
                value: m.quantity.to_string(),
                problem: "must be more than 0".into(),
            });
        }
    }
    // Only a write made here, on what this device holds: concurrent hand-outs merged later
    // were each valid where they were made.
    let now = on_hand(fields);
    let before = previous.map_or(0.0, on_hand);
    if write && now < 0.0 && now < before {
        return Err(ValidationError::Overdrawn {
            item: stock.item,
            on_hand: quantity(before.max(0.0)),
            wanted: quantity(before - now),
        });
    }
    Ok(())
}

/// A quantity as people write it: `3`, `2.5`.
fn quantity(q: f64) -> String {
    let rounded = (q * 1000.0).round() / 1000.0;
    format!("{rounded}")
}

fn index(_: &str, f: &Map<String, Value>) -> IndexParts {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    IndexParts {
        assigned_to: s("created_by"),
        title: s("item").unwrap_or_default(),
        ..IndexParts::default()
    }
}
