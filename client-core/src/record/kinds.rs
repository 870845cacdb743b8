//! The record kinds: one module each, holding its typed struct, its choices with their labels,
//! its lifecycle, its index fields and its [`KindSpec`]. This file only lists them.
//!
//! A record is stored as an Automerge document whose root map holds its struct's fields. The
//! typed structs are what validation deserialises into; unknown fields in a document (written by
//! a newer client) are never dropped, because writes only touch the fields they change.
//!
//! Adding a kind: write its module (struct, choices, `SPEC`), add it to the list below, then let
//! the compiler (exhaustive matches on [`Kind`]: access rules, the relay's facts) and the tests
//! at the end of this file (every spec against its struct) name what is still missing.

mod activity;
mod case;
mod common;
mod household;
mod household_private;
mod patrol;
mod report;
mod stock;
mod task;
mod unit;
mod visit;
mod volunteer;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use activity::{Activity, ActivityType, Decision, Participant};
pub use case::{ActionKind, Case, CaseAction, CaseSource, CaseStatus, CaseType, Need};
pub use common::{ADDRESS, Address, GPS, Gps, Level};
pub use household::{Household, HouseholdType, Presence, RESIDENT, Resident, VisitClass};
pub use household_private::{HouseholdPrivate, PrivateResident};
pub use patrol::{Checkpoint, Incident, IncidentAction, IncidentKind, Patrol};
pub use report::{FollowUp, Report, ReportCategory, ReportStatus, Urgency};
pub use stock::{Movement, MovementKind, Stock, on_hand};
pub use task::{Task, TaskSource, TaskStatus, TaskUpdate};
pub use unit::{Unit, UnitType};
pub use visit::{Handling, Visit, VisitIssue, VisitOutcome, VisitType};
pub use volunteer::{Volunteer, VolunteerStatus};

use super::ValidationError;
use super::schema::{FieldType, KindSpec};

/// Declares [`Kind`] from the list of kinds and their modules: the enum, its lists, its names
/// and its specs come from this one list.
macro_rules! kinds {
    (
        records { $( $(#[$meta:meta])* $kind:ident => $module:ident, )+ }
        parts { $( $(#[$pmeta:meta])* $part:ident => $pmodule:ident, )+ }
    ) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $( $(#[$meta])* $kind, )+
            $( $(#[$pmeta])* $part, )+
        }

        impl Kind {
            /// The kinds people create and list.
            pub const ALL: [Kind; [$(stringify!($kind)),+].len()] = [$(Kind::$kind),+];

            /// Every kind of document a store may hold: the records and the parts of records
            /// kept in documents of their own.
            pub const ALL_STORED: [Kind; [$(stringify!($kind)),+ $(, stringify!($part))+].len()] =
                [$(Kind::$kind,)+ $(Kind::$part),+];

            /// Everything known about the kind: fields, labels, choices, rules.
            pub fn spec(self) -> &'static KindSpec {
                match self {
                    $( Kind::$kind => &$module::SPEC, )+
                    $( Kind::$part => &$pmodule::SPEC, )+
                }
            }

            /// The kind's name in records, commands and the wire protocol.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Kind::$kind => stringify!($module), )+
                    $( Kind::$part => stringify!($pmodule), )+
                }
            }
        }
    };
}

kinds! {
    records {
        Household => household,
        Visit => visit,
        Patrol => patrol,
        Case => case,
        Report => report,
        Unit => unit,
        Volunteer => volunteer,
        Activity => activity,
        Stock => stock,
        Task => task,
    }
    parts {
        /// The sensitive part of a household (ID numbers, health, disability details), kept in
        /// its own document so it never reaches a device whose role may not see it. Written and
        /// read through its household, never on its own.
        HouseholdPrivate => household_private,
    }
}

impl Kind {
    /// The Chinese name users know the record by.
    pub fn label_zh(self) -> &'static str {
        self.spec().label.zh
    }

    /// Whether a top-level field is stored as Automerge text, so concurrent edits to a note merge
    /// character by character.
    pub fn is_text(self, field: &str) -> bool {
        self.spec()
            .field(field)
            .is_some_and(|f| f.ty == FieldType::Text)
    }

    /// Whether a top-level field is a list several people append to: entries are only ever
    /// added at the end, so two concurrent appends both survive and nobody rewrites history.
    pub fn is_append_only(self, field: &str) -> bool {
        self.spec()
            .field(field)
            .is_some_and(|f| matches!(f.ty, FieldType::Log(_)))
    }

    /// The top-level text fields (see [`Kind::is_text`]).
    pub fn text_fields(self) -> impl Iterator<Item = &'static str> {
        self.spec()
            .fields
            .iter()
            .filter(|f| f.ty == FieldType::Text)
            .map(|f| f.name)
    }

    /// The top-level append-only lists (see [`Kind::is_append_only`]).
    pub fn append_only_fields(self) -> impl Iterator<Item = &'static str> {
        self.spec()
            .fields
            .iter()
            .filter(|f| matches!(f.ty, FieldType::Log(_)))
            .map(|f| f.name)
    }

    /// The names of the kinds people create, for messages: `household, visit, …`.
    pub fn names() -> String {
        Kind::ALL.map(Kind::as_str).join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL_STORED
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ValidationError::UnknownKind(s.to_string()))
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
