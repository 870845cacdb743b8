//! The values that cross the boundary: options, queries, list rows, status, conflicts.
//!
//! Records themselves cross as JSON text inside [`FieldRecord`] (see the README for why); the
//! shapes every kind shares (list rows, status, conflicts) are typed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use gridsync_core::access;
use gridsync_core::record::{IndexRow, Kind, Record};
use gridsync_core::store::{RecordConflicts, SyncStatus as CoreStatus};
use gridsync_core::{Identity, Query};
use serde_json::Value;

use crate::error::{ErrorCode, GridsyncError, Result};

/// Where a replica lives. Later versions add fields with defaults here (the key of an
/// encrypted replica), so code written against this one keeps compiling.
#[derive(Debug, Clone, uniffi::Record)]
pub struct OpenOptions {
    /// The folder of the replica, created if missing: on Android `context.filesDir`, on iOS the
    /// app's Application Support directory. One replica per folder; one signed-in user per
    /// replica.
    pub folder: String,
    /// The replica's 32-byte key (from the Android Keystore or the iOS Keychain; see
    /// docs/security.md, "Replica key on phones"). With a key the whole replica is encrypted
    /// (SQLCipher), and every later open needs the same key; `null` keeps a plain replica.
    #[uniffi(default = None)]
    pub key: Option<Vec<u8>>,
}

/// A sign-in: once per device, online. Later versions add fields with defaults (a trusted CA
/// certificate for an intranet relay).
#[derive(Debug, Clone, uniffi::Record)]
pub struct SignInOptions {
    /// The relay's address, e.g. `http://10.0.0.5:8080`.
    pub server: String,
    /// The username the community office gave the worker.
    pub user: String,
    pub password: String,
    /// A name for this phone in the office's device list, e.g. "王芳的手机".
    #[uniffi(default = "")]
    pub device_name: String,
    /// A CA certificate (PEM) to trust besides the public ones, for an `https://` relay on a
    /// community intranet with its own certificate; kept in the replica for later syncs.
    #[uniffi(default = None)]
    pub ca_cert: Option<String>,
}

/// Who this replica is signed in as, and which grids it holds.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Account {
    /// The username; it is written as the author of every change.
    pub user: String,
    pub display_name: String,
    /// `grid_worker`, `volunteer`, `office`, ...
    pub role: String,
    /// The kinds this user may create and edit (`household`, `visit`, `patrol`, `case`,
    /// `report`): a volunteer's only `patrol`. Show the buttons for these; a write of any other
    /// kind fails with `NOT_ALLOWED`. Every kind when this version does not know the role (the
    /// relay then decides, at the next sync).
    pub writable_kinds: Vec<String>,
    /// The grids the relay last said this device holds.
    pub grids: Vec<String>,
    pub device_id: String,
    pub server: String,
    /// The community's time zone, minutes east of UTC (China: 480), as the relay said it at
    /// sign-in or at the last sync; `null` if it has not (a relay older than protocol 5): the
    /// phone's own zone is used then. Show times and count "today" in this zone.
    pub utc_offset_minutes: Option<i32>,
}

impl From<&Identity> for Account {
    fn from(i: &Identity) -> Account {
        Account {
            user: i.worker_id.clone(),
            display_name: i.display_name.clone(),
            role: i.role.clone(),
            writable_kinds: Kind::ALL
                .into_iter()
                .filter(|k| {
                    i.known_role()
                        .is_none_or(|role| access::can_write(role, *k))
                })
                .map(|k| k.as_str().to_string())
                .collect(),
            grids: i.grids.clone(),
            device_id: i.device_id.clone(),
            server: i.server_url.clone(),
            utc_offset_minutes: i.utc_offset_minutes,
        }
    }
}

/// What a list shows. Every field is optional; an empty query lists every record that is not
/// deleted. Answered from the local index: no record is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct RecordQuery {
    /// `household`, `visit`, `patrol`, `case` or `report`.
    #[uniffi(default)]
    pub kind: Option<String>,
    #[uniffi(default)]
    pub grid: Option<String>,
    /// A case's or report's status (`open`, `in_progress`, ...), a visit's outcome (`met`, ...).
    #[uniffi(default)]
    pub status: Option<String>,
    /// Records of this household (its visits, cases), and the household itself.
    #[uniffi(default)]
    pub household: Option<String>,
    /// The worker responsible: a household's assigned worker, a case's responsible person,
    /// else whoever created the record.
    #[uniffi(default)]
    pub assigned_to: Option<String>,
    /// Only records due strictly before this date or time (`2026-11-02`, RFC 3339): pass
    /// tomorrow's date for "due today or earlier".
    #[uniffi(default)]
    pub due_before: Option<String>,
    /// Only records due before today: the community's local date once the relay said its
    /// zone (the dashboard's day), else the phone's.
    #[uniffi(default)]
    pub overdue: bool,
    /// Only records whose list title contains this text, ignoring case: the household head
    /// and address, a case's type and subject, a report's category and description.
    #[uniffi(default)]
    pub text: Option<String>,
    #[uniffi(default)]
    pub include_deleted: bool,
    /// At most this many rows, most recently updated first.
    #[uniffi(default)]
    pub limit: Option<u32>,
}

impl RecordQuery {
    /// The index query, and the text filter the index cannot answer.
    pub(crate) fn to_core(&self, zone: FixedOffset) -> Result<(Query, Option<String>)> {
        let kind = self.kind.as_deref().map(parse_kind).transpose()?;
        let today = self.overdue.then(|| {
            Utc::now()
                .with_timezone(&zone)
                .date_naive()
                .format("%Y-%m-%d")
                .to_string()
        });
        let due_before = match (self.due_before.clone(), today) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let text = self
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase);
        let query = Query {
            kind,
            grid: self.grid.clone(),
            status: self.status.clone(),
            household: self.household.clone(),
            assigned_to: self.assigned_to.clone(),
            due_before,
            include_deleted: self.include_deleted,
            // With a text filter the limit applies after it.
            limit: match text {
                Some(_) => None,
                None => self.limit.map(|l| l as usize),
            },
            ..Query::default()
        };
        Ok((query, text))
    }
}

/// A record kind people create and list, from its name.
pub(crate) fn parse_kind(name: &str) -> Result<Kind> {
    match name.trim().parse::<Kind>() {
        Ok(kind) if Kind::ALL.contains(&kind) => Ok(kind),
        _ => Err(GridsyncError::new(
            ErrorCode::InvalidArgument,
            format!("没有这种记录类型：{name}"),
            format!(
                "unknown record kind `{name}`: use one of {}",
                Kind::ALL.map(Kind::as_str).join(", ")
            ),
        )),
    }
}

/// One record with all its fields.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldRecord {
    pub id: String,
    /// `household`, `visit`, `patrol`, `case` or `report`.
    pub kind: String,
    pub grid: String,
    /// Every field as a JSON object, system fields (`id`, `kind`, `created_at`, `updated_by`,
    /// ...) included; a household comes with its residents' sensitive fields when this device
    /// may hold them. Parse it into the app's own data class (kotlinx.serialization, Codable).
    pub json: String,
    pub deleted: bool,
}

impl From<Record> for FieldRecord {
    fn from(r: Record) -> FieldRecord {
        let deleted = r.is_deleted();
        FieldRecord {
            id: r.id,
            kind: r.kind.as_str().to_string(),
            grid: r.grid_id,
            json: Value::Object(r.fields).to_string(),
            deleted,
        }
    }
}

/// One row of a list: what a list screen shows without opening the record.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecordSummary {
    pub id: String,
    pub kind: String,
    pub grid: String,
    pub household: Option<String>,
    /// A case's or report's status, a visit's outcome; none for households and patrols.
    pub status: Option<String>,
    pub assigned_to: Option<String>,
    /// When something is due: the next visit, the next case review, a report's deadline.
    pub due_at: Option<String>,
    /// A short label: "张三 幸福小区-3-2-301", "low_income 李四", ...
    pub title: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub deleted: bool,
    /// Some field holds values written concurrently on two devices: see `conflicts()`.
    pub has_conflicts: bool,
}

impl From<IndexRow> for RecordSummary {
    fn from(r: IndexRow) -> RecordSummary {
        RecordSummary {
            id: r.id,
            kind: r.kind.as_str().to_string(),
            grid: r.grid_id,
            household: r.household_id,
            status: r.status,
            assigned_to: r.assigned_to,
            due_at: r.due_at,
            title: r.title,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted: r.deleted,
            has_conflicts: r.has_conflicts,
        }
    }
}

/// A record whose fields hold values written concurrently on several devices. Writing the
/// field again (an update naming it) settles it everywhere.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecordConflict {
    pub record_id: String,
    pub kind: String,
    pub title: String,
    pub fields: Vec<FieldConflict>,
}

/// One field with several values.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldConflict {
    /// The field's path: `status`, `address.door`, `residents[2].phone`.
    pub field: String,
    /// Every value; the one the record shows comes first.
    pub values: Vec<ConflictingValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConflictingValue {
    /// The value as JSON (`"assessing"`, `3`, `{"door":"101"}`).
    pub json: String,
    /// The username of whoever wrote it, when known.
    pub author: Option<String>,
    /// When, by the writing device's clock (RFC 3339); shown, never trusted for order.
    pub written_at: Option<String>,
    /// This is the value the record shows now.
    pub shown: bool,
}

impl From<RecordConflicts> for RecordConflict {
    fn from(c: RecordConflicts) -> RecordConflict {
        let fields = c
            .fields
            .into_iter()
            .map(|f| FieldConflict {
                field: f.field,
                values: f
                    .values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| ConflictingValue {
                        json: v.value.to_string(),
                        author: v.author,
                        written_at: v
                            .written_at
                            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                            .map(|t| t.to_rfc3339()),
                        shown: i == 0,
                    })
                    .collect(),
            })
            .collect();
        RecordConflict {
            record_id: c.id,
            kind: c.kind.as_str().to_string(),
            title: c.title,
            fields,
        }
    }
}

/// Where this replica stands with the relay.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// Local changes the relay has not acknowledged yet.
    pub unsent_changes: u64,
    /// Local changes the relay refused, with its reasons; they stay on the phone and never
    /// block the rest.
    pub refused: Vec<RefusedChange>,
    /// When the last sync completed (RFC 3339), none before the first.
    pub last_sync: Option<String>,
    /// How far this device has received each grid's log.
    pub cursors: Vec<GridCursor>,
    /// Records on this device.
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RefusedChange {
    pub record_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GridCursor {
    pub grid: String,
    /// The position in the relay's log up to which this device holds the grid.
    pub seq: u64,
}

impl From<CoreStatus> for SyncStatus {
    fn from(s: CoreStatus) -> SyncStatus {
        SyncStatus {
            unsent_changes: s.unsent_changes,
            refused: s
                .rejected
                .into_iter()
                .map(|r| RefusedChange {
                    record_id: r.doc_id,
                    reason: r.reason,
                })
                .collect(),
            last_sync: s.last_sync,
            cursors: s
                .cursors
                .into_iter()
                .map(|c| GridCursor {
                    grid: c.grid,
                    seq: c.seq,
                })
                .collect(),
            records: s.records,
        }
    }
}

/// How a one-shot sync runs.
#[derive(Clone, Default, uniffi::Record)]
pub struct SyncOnceOptions {
    /// Stop cleanly once this much time has passed since the call (the budget of a
    /// WorkManager job or a BGTaskScheduler task, less a margin). It stops between two
    /// messages, never inside one: every received batch is stored with its cursor or not at
    /// all, and the next sync resumes from there.
    #[uniffi(default)]
    pub deadline: Option<Duration>,
    /// Called on the calling thread after each stored batch of the catch-up.
    #[uniffi(default)]
    pub progress: Option<Arc<dyn SyncProgressListener>>,
}

/// Progress of a catch-up, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct SyncProgress {
    /// Log positions received so far in this sync.
    pub received: u64,
    /// Log positions the relay announced for this sync, summed over grids.
    pub total: u64,
}

/// Told how a sync's catch-up advances.
#[uniffi::export(foreign)]
pub trait SyncProgressListener: Send + Sync {
    fn on_progress(&self, progress: SyncProgress);
}

/// What a one-shot sync did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncResult {
    /// Everything local reached the relay and everything new arrived. False when the
    /// deadline stopped it first: call `syncOnce` again later to go on.
    pub complete: bool,
    pub changes_sent: u64,
    pub changes_received: u64,
    /// Changes the relay refused in this sync; `status()` lists every refusal with its reason.
    pub changes_refused: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl From<gridsync_core::transport::SyncReport> for SyncResult {
    fn from(r: gridsync_core::transport::SyncReport) -> SyncResult {
        SyncResult {
            complete: !r.stopped_at_deadline,
            changes_sent: r.stats.changes_sent,
            changes_received: r.stats.changes_received,
            changes_refused: r.stats.rejected,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_overdue_and_due_before_take_the_earlier_date() {
        let q = RecordQuery {
            due_before: Some("2000-01-01".into()),
            overdue: true,
            ..RecordQuery::default()
        };
        let east8 = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
        let (core, _) = q.to_core(east8).expect("query");
        assert_eq!(core.due_before.as_deref(), Some("2000-01-01"));
        let q = RecordQuery {
            overdue: true,
            ..RecordQuery::default()
        };
        let (core, _) = q.to_core(east8).expect("query");
        // The community's day, not the phone's.
        let today = Utc::now()
            .with_timezone(&east8)
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        assert_eq!(core.due_before, Some(today));
    }

    #[test]
    fn test_text_filter_lifts_the_limit_to_after_filtering() {
        let q = RecordQuery {
            text: Some("  张三 ".into()),
            limit: Some(3),
            ..RecordQuery::default()
        };
        let (core, text) = q
            .to_core(FixedOffset::east_opt(0).expect("UTC"))
            .expect("query");
        assert_eq!(text.as_deref(), Some("张三"));
        assert_eq!(core.limit, None);
    }

    #[test]
    fn test_only_the_five_kinds_are_accepted() {
        assert_eq!(parse_kind("visit").expect("kind"), Kind::Visit);
        for bad in ["households", "household_private", ""] {
            let err = parse_kind(bad).expect_err(bad);
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
        }
    }
}

/// What opening the replica found and did when its file was not whole (after a crash, a full
/// or failing flash): show `message` to the worker once, e.g. in a dialog.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Recovery {
    /// `salvaged` (the damaged file was moved aside and a fresh one built from what could be
    /// read) or `journal_lost` (the last writes before a crash were lost with the journal).
    pub kind: String,
    /// What happened and what was kept, in Chinese, then in English.
    pub message: String,
    /// Unsent changes kept; they go up at the next sync.
    pub kept_changes: u64,
    /// Unsent changes found but unreadable, and lost.
    pub lost_changes: u64,
    /// Whether the device is still signed in; if not, show the sign-in screen.
    pub signed_in: bool,
}

impl From<&gridsync_core::store::Recovery> for Recovery {
    fn from(r: &gridsync_core::store::Recovery) -> Recovery {
        use gridsync_core::store::RecoveryKind;
        Recovery {
            kind: match r.kind {
                RecoveryKind::Salvaged => "salvaged",
                RecoveryKind::JournalLost => "journal_lost",
                _ => "other",
            }
            .into(),
            message: r.message(),
            kept_changes: r.kept_changes,
            lost_changes: r.lost_changes,
            signed_in: r.identity_kept,
        }
    }
}
