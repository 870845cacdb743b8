//! The fields lists filter on, pulled out of a record so that SQLite can answer "open cases in grid
//! G" or "households overdue for a visit" without loading any document.

use serde_json::{Map, Value};

use super::Kind;
use super::schema::IndexParts;

/// One row of the query index. Device and server keep the same columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    pub id: String,
    pub kind: Kind,
    pub grid_id: String,
    pub household_id: Option<String>,
    /// Case or report status; a visit's outcome. `None` for households and patrols.
    pub status: Option<String>,
    /// The worker responsible: a household's assigned worker, a case's responsible person, else
    /// whoever created the record.
    pub assigned_to: Option<String>,
    /// When something is due: next visit, next case review, report deadline (RFC 3339 or date).
    pub due_at: Option<String>,
    /// A short human label for lists.
    pub title: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub deleted: bool,
    /// Some field holds concurrent values that nobody has settled yet.
    pub has_conflicts: bool,
}

impl IndexRow {
    /// Every field [`IndexRow::from_fields`] reads, so that a caller can read only these from a
    /// document (`doc::read_fields`) instead of the whole record.
    pub const FIELDS: &[&str] = &[
        "kind",
        "grid_id",
        "household_id",
        "assigned_worker",
        "next_visit_due",
        "head_name",
        "address",
        "outcome",
        "created_by",
        "visit_type",
        "started_at",
        "status",
        "responsible",
        "next_review_due",
        "case_type",
        "subject_name",
        "deadline",
        "category",
        "description",
        "created_at",
        "updated_at",
        "deleted",
        "merged_into",
        "name",
        "title",
        "item",
        "assignee",
        "assignee_unit_id",
    ];

    pub fn from_fields(
        id: &str,
        kind: Kind,
        grid_id: &str,
        f: &Map<String, Value>,
        has_conflicts: bool,
    ) -> IndexRow {
        let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
        let IndexParts {
            household_id,
            status,
            assigned_to,
            due_at,
            title,
        } = (kind.spec().index)(id, f);
        IndexRow {
            id: id.to_string(),
            kind,
            grid_id: grid_id.to_string(),
            household_id,
            status,
            assigned_to,
            due_at,
            title,
            created_at: s("created_at"),
            updated_at: s("updated_at").or_else(|| s("created_at")),
            deleted: f.get("deleted").and_then(Value::as_bool) == Some(true)
                || f.get("merged_into").is_some_and(|v| !v.is_null()),
            has_conflicts,
        }
    }
}
