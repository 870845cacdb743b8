//! The replica: every record of a device, each an Automerge document, in one SQLite file.
//!
//! A write is one SQLite transaction that stores the new change, queues it for upload and updates
//! the query index; it has returned only once that transaction committed, so it survives the
//! process being killed the next instant. Documents are stored as a snapshot plus the changes since
//! it, compacted once more than [`COMPACT_AFTER`] changes pile up, so opening one never replays a
//! long log.

mod account;
mod attachments;
mod check;
mod crypt;
mod salvage;
mod sql;
mod sync_side;

use std::num::NonZeroUsize;
use std::path::Path;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use chrono::{DateTime, SecondsFormat, Utc};
use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::access::{self, Role};
use crate::doc::{self, FieldConflict};
use crate::error::{Error, Result};
use crate::protocol::{CommunityZone, MAX_CHANGE_BYTES};
use crate::record::{
    self, DeadlineRules, IndexRow, Kind, Record, SCHEMA_VERSION, ValidationContext,
    ValidationError, VisitClass, sensitive,
};

pub use attachments::{
    AttachOptions, AttachSource, AttachmentInfo, AttachmentSettings, AttachmentStatus,
    DEFAULT_CACHE_BYTES, DEFAULT_MAX_SIDE, DownloadTodo, JPEG_QUALITY, RefusedAttachment,
    UploadTodo,
};
pub use check::CheckReport;
pub use crypt::{KeyProblem, RAW_KEY_BYTES, ReplicaFile, ReplicaKey};
pub use salvage::{PENDING_FILE as SALVAGE_FILE, Recovery, RecoveryKind};
pub use sql::DB_FILE;
pub use sync_side::SyncStatus;
pub use sync_side::{OutboxEntry, Rejection};

/// A document is re-saved as a snapshot once more than this many changes have piled up since the
/// last one. Loading a record from its snapshot takes about half the time of replaying even its
/// first four changes (76 against 170 µs for a 1 KB visit), and re-saving one costs about 20 µs:
/// a low bound keeps opening a record, the first step of every received change, cheap.
pub const COMPACT_AFTER: usize = 2;
/// Documents kept decoded in memory; the rest are loaded from SQLite on demand.
const CACHE_DOCS: usize = 256;

/// Who this replica belongs to and where it syncs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub device_id: String,
    /// The signed-in user's username; it is the author written on every change.
    pub worker_id: String,
    pub display_name: String,
    /// As the relay gave it at sign-in: `grid_worker`, `volunteer`, `office` or `admin`.
    pub role: String,
    /// The grids the server last said this device holds.
    pub grids: Vec<String>,
    pub server_url: String,
    /// The community's time zone, minutes east of UTC, as the relay last said it (at sign-in
    /// or at a sync, protocol 5); `None` from a relay that has not said it.
    pub utc_offset_minutes: Option<i32>,
    /// The device token. Never printed or serialised.
    #[serde(skip)]
    pub token: String,
}

impl Identity {
    /// The role, if this build knows it. A role it does not know (a later relay's) refuses
    /// nothing on the device: the relay still does.
    pub fn known_role(&self) -> Option<Role> {
        self.role.parse().ok()
    }
}

/// What a list shows and filters on; every field optional.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub kind: Option<Kind>,
    pub grid: Option<String>,
    pub status: Option<String>,
    pub household: Option<String>,
    pub assigned_to: Option<String>,
    /// Only records due strictly before this (RFC 3339 or date): "overdue" lists.
    pub due_before: Option<String>,
    pub include_deleted: bool,
    /// Leave out records whose status is `closed` (a closed case, report or task).
    pub not_closed: bool,
    /// Soonest due first (records with no due date last) instead of latest changed first.
    pub by_due: bool,
    pub limit: Option<usize>,
}

/// Where a replica's time zone comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneSource {
    /// Set by the app or the user ([`Replica::set_utc_offset`], `GRIDSYNC_UTC_OFFSET`).
    Set,
    /// The community's, as the relay said it (protocol 5).
    Relay,
    /// The device's own: the relay has not said one (signed in with an older relay).
    Device,
}

/// A record whose fields hold concurrent values, for office review.
#[derive(Debug, Clone, Serialize)]
pub struct RecordConflicts {
    pub id: String,
    pub kind: Kind,
    pub title: String,
    pub fields: Vec<FieldConflict>,
}

pub struct Replica {
    conn: Connection,
    /// Removed when the replica is dropped, after `conn` closed (fields drop in this order).
    _open: Option<check::OpenMarker>,
    /// What the open found and did when the replica was not whole.
    recovery: Option<Recovery>,
    identity: Option<Identity>,
    actor: ActorId,
    cache: LruCache<String, Automerge>,
    rules: DeadlineRules,
    /// The device clock. Only ever shown (created_at, updated_at); ordering never uses it.
    clock: Box<dyn Fn() -> DateTime<Utc> + Send>,
    /// The community's time zone, for times people type as local time; `None`: the device's.
    utc_offset: Option<chrono::FixedOffset>,
    attachment_settings: AttachmentSettings,
}

/// One document write, prepared in memory and made durable by [`Replica::persist`].
struct Prepared {
    doc_id: String,
    kind: Kind,
    grid_id: String,
    hash: Vec<u8>,
    bytes: Vec<u8>,
    /// The document with the change applied; it enters the cache only once the change is durable.
    doc: Automerge,
}

impl Replica {
    /// Opens (or creates) the plain replica in `dir`. An encrypted one is refused with
    /// [`KeyProblem::Missing`] and left untouched.
    pub fn open(dir: impl AsRef<Path>) -> Result<Replica> {
        Replica::open_inner(dir.as_ref(), None)
    }

    /// Opens the encrypted replica in `dir` with its key, or creates one encrypted with it. A
    /// wrong key ([`KeyProblem::Wrong`]) or a plain replica ([`KeyProblem::NotEncrypted`]: see
    /// [`Replica::rekey`]) is refused before anything is written.
    pub fn open_with_key(dir: impl AsRef<Path>, key: &ReplicaKey) -> Result<Replica> {
        Replica::open_inner(dir.as_ref(), Some(key))
    }

    /// Encrypts the closed replica in `dir` with `new` (`old` = `None`: it is plain now), or
    /// changes its key from `old` to `new`, keeping every record and unsent change. Crash-safe:
    /// an interruption leaves the old replica or the new one, whole. See `store/crypt.rs`.
    pub fn rekey(dir: impl AsRef<Path>, old: Option<&ReplicaKey>, new: &ReplicaKey) -> Result<()> {
        crypt::rekey(dir.as_ref(), old, new, crypt::Interrupt::Never)
    }

    /// Whether `dir` holds no replica, a plain one or an encrypted one (from the file's first
    /// bytes; nothing is opened).
    pub fn inspect(dir: impl AsRef<Path>) -> Result<ReplicaFile> {
        crypt::inspect(dir.as_ref())
    }

    /// Opens the replica, checking it first when its last session did not close (see
    /// `store/check.rs`), and salvaging it when it is damaged (`store/salvage.rs`).
    fn open_inner(dir: &Path, key: Option<&ReplicaKey>) -> Result<Replica> {
        std::fs::create_dir_all(dir)?;
        let pending = salvage::finish_pending(dir, key)?;
        let last = check::LastSession::read(dir);
        let mut replica = match Replica::open_checked(dir, key, last) {
            Ok(replica) => replica,
            Err(e) if check::is_damage(&e) => {
                let problem = match e {
                    Error::Damaged(problem) => problem,
                    Error::Sqlite(e) => e.to_string(),
                    other => other.to_string(),
                };
                let recovery = salvage::salvage(dir, key, &problem)?;
                let mut replica = Replica::from_conn(sql::open(dir, key)?)?;
                replica.recovery = Some(recovery);
                replica
            }
            Err(e) => return Err(e),
        };
        if replica.recovery.is_none() {
            replica.recovery = pending;
        }
        // Without the marker only a WAL left behind tells the next open to check: a phone whose
        // storage is full must still open its replica to read it.
        replica._open = check::OpenMarker::create(dir)
            .inspect_err(|e| tracing::warn!("could not mark the replica open: {e}"))
            .ok();
        Ok(replica)
    }

    fn open_checked(
        dir: &Path,
        key: Option<&ReplicaKey>,
        last: check::LastSession,
    ) -> Result<Replica> {
        let conn = sql::open(dir, key)?;
        if last.unclean() {
            check::quick(&conn, key.is_some())?;
        }
        let mut replica = Replica::from_conn(conn)?;
        if last.journal_lost() {
            replica.force_repair(&[])?;
            let recovery = Recovery {
                kind: RecoveryKind::JournalLost,
                problem: "the -wal file was missing".into(),
                moved_to: None,
                kept_changes: replica.status().map_or(0, |s| s.unsent_changes),
                lost_changes: 0,
                outbox_whole: true,
                identity_kept: replica.identity.is_some(),
            };
            tracing::warn!("{}", recovery.message());
            replica.recovery = Some(recovery);
        }
        Ok(replica)
    }

    /// The replica on an open connection: its actor (made on first use) and identity.
    fn from_conn(conn: Connection) -> Result<Replica> {
        let actor = match sql::get_meta(&conn, "actor")? {
            Some(hex) => hex
                .parse::<ActorId>()
                .map_err(|e| Error::Protocol(format!("bad stored actor id: {e}")))?,
            None => {
                let actor = ActorId::random();
                sql::set_meta(&conn, "actor", &actor.to_hex_string())?;
                actor
            }
        };
        let identity = read_identity(&conn)?;
        Ok(Replica {
            conn,
            _open: None,
            recovery: None,
            identity,
            actor,
            cache: LruCache::new(NonZeroUsize::new(CACHE_DOCS).unwrap_or(NonZeroUsize::MIN)),
            rules: DeadlineRules::default(),
            clock: Box::new(Utc::now),
            utc_offset: None,
            attachment_settings: AttachmentSettings::default(),
        })
    }

    pub fn identity(&self) -> Result<&Identity> {
        self.identity.as_ref().ok_or(Error::NotInitialised)
    }

    /// Replaces the device clock (a phone whose clock is years off, in tests). Ordering and
    /// merging never depend on it; it only stamps the times shown to people.
    pub fn set_clock(&mut self, clock: impl Fn() -> DateTime<Utc> + Send + 'static) {
        self.clock = Box::new(clock);
    }

    /// Sets the time zone in which times typed as local time (`2026-11-30 09:00`) are read and
    /// local days counted, over the one the relay said; `None` (the default) takes the relay's,
    /// or the device's own zone if the relay has not said one.
    pub fn set_utc_offset(&mut self, offset: Option<chrono::FixedOffset>) {
        self.utc_offset = offset;
    }

    /// The time zone local times are read in and local days counted in (see
    /// [`Replica::set_utc_offset`] and [`Replica::zone_source`]).
    pub fn utc_offset(&self) -> chrono::FixedOffset {
        self.utc_offset
            .or_else(|| self.relay_zone())
            .unwrap_or_else(|| *chrono::Local::now().offset())
    }

    /// Where [`Replica::utc_offset`] comes from.
    pub fn zone_source(&self) -> ZoneSource {
        if self.utc_offset.is_some() {
            ZoneSource::Set
        } else if self.relay_zone().is_some() {
            ZoneSource::Relay
        } else {
            ZoneSource::Device
        }
    }

    fn relay_zone(&self) -> Option<chrono::FixedOffset> {
        let minutes = self.identity.as_ref()?.utc_offset_minutes?;
        CommunityZone {
            utc_offset_minutes: minutes,
        }
        .offset()
    }

    /// Today, by the device clock, in the zone of [`Replica::utc_offset`]: the office
    /// dashboard's local day once the relay said its zone.
    pub fn today(&self) -> chrono::NaiveDate {
        self.now().with_timezone(&self.utc_offset()).date_naive()
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn now_string(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Sets the urgent-report deadline rules used when a report gives no deadline.
    pub fn set_deadline_rules(&mut self, rules: DeadlineRules) {
        self.rules = rules;
    }

    /// Creates a record in the worker's first grid (or the grid named by a `grid_id` field).
    pub fn create(&mut self, kind: Kind, mut fields: Map<String, Value>) -> Result<Record> {
        if kind == Kind::HouseholdPrivate {
            return Err(through_household());
        }
        self.may_write(kind)?;
        let identity = self.identity()?.clone();
        let grid_id = match fields.remove("grid_id") {
            Some(Value::String(g)) if identity.grids.contains(&g) => g,
            Some(other) => {
                return Err(ValidationError::Field(format!(
                    "grid_id {other} is not one of this device's grids ({})",
                    identity.grids.join(", ")
                ))
                .into());
            }
            None => identity.grids.first().cloned().ok_or(Error::NoGrid)?,
        };
        for key in record::SYSTEM_FIELDS.iter().chain(record::TOUCH_FIELDS) {
            if fields.contains_key(*key) {
                return Err(ValidationError::ReadOnlyField(key.to_string()).into());
            }
        }
        shallow_enough(&fields)?;
        kind.spec().check_known(&fields)?;
        kind.spec().normalise_times(&mut fields, self.utc_offset());
        kind.spec()
            .stamp_entries(&mut fields, &identity.worker_id, &self.now_string());
        let id = uuid::Uuid::now_v7().to_string();
        record::validate(kind, &mut fields, None, self)?;
        let (fields, private) = match kind {
            Kind::Household => sensitive::split_household(&fields),
            _ => (fields, None),
        };
        let mut all = system_fields(&id, kind, &grid_id, &identity, &self.now_string());
        // Lists people append to and text fields exist from the start: if two devices created
        // them concurrently later, Automerge would keep two competing objects instead of merging.
        for list in kind.append_only_fields() {
            all.insert(list.to_string(), Value::Array(Vec::new()));
        }
        for text in kind.text_fields() {
            all.insert(text.to_string(), Value::String(String::new()));
        }
        all.extend(fields);

        let mut writes = vec![self.prepare(&id, kind, &grid_id, Automerge::new(), &all)?];
        if let Some(residents) = private {
            writes.push(self.prepare_private(&id, &grid_id, residents)?);
        }
        if kind == Kind::Visit {
            writes.extend(self.prepare_household_after_visit(&all)?);
        }
        self.persist(writes)?;
        self.get(&id)
    }

    /// Applies a partial update (see [`record::apply_patch`]) to a record.
    pub fn update(&mut self, id: &str, patch: Map<String, Value>) -> Result<Record> {
        let writes = self.prepare_update(id, patch)?;
        self.persist(writes)?;
        self.get(id)
    }

    /// The writes of [`Replica::update`], not yet stored.
    fn prepare_update(&mut self, id: &str, patch: Map<String, Value>) -> Result<Vec<Prepared>> {
        shallow_enough(&patch)?;
        let identity = self.identity()?.clone();
        let doc = self.load(id)?;
        let mut current = doc::read_root(&doc);
        let record = Record::from_fields(current.clone()).ok_or_else(|| corrupt(id, "no kind"))?;
        if record.kind == Kind::HouseholdPrivate {
            return Err(through_household());
        }
        self.may_write(record.kind)?;
        let private_before = match record.kind {
            Kind::Household => self.private_residents(id)?,
            _ => None,
        };
        if let Some(residents) = &private_before {
            sensitive::merge_household(&mut current, residents);
        }
        record.kind.spec().check_known(&patch)?;
        let mut patch = patch;
        record
            .kind
            .spec()
            .normalise_times(&mut patch, self.utc_offset());
        record
            .kind
            .spec()
            .stamp_entries(&mut patch, &identity.worker_id, &self.now_string());
        let mut fields = current.clone();
        record::apply_patch(record.kind, &mut fields, &patch)?;
        record::validate(record.kind, &mut fields, Some(&current), self)?;
        fields.insert("updated_at".into(), self.now_string().into());
        fields.insert("updated_by".into(), identity.worker_id.into());
        let (fields, private) = match record.kind {
            Kind::Household => sensitive::split_household(&fields),
            _ => (fields, None),
        };
        let mut writes = vec![self.prepare_with_force(
            id,
            record.kind,
            &record.grid_id,
            doc,
            &fields,
            &patch,
        )?];
        // Rewrite the private part when it changed, including when every sensitive value went.
        let private = private.or_else(|| private_before.as_ref().map(|_| Vec::new()));
        if private.is_some() && private != private_before {
            let residents = private.unwrap_or_default();
            writes.push(self.prepare_private(id, &record.grid_id, residents)?);
        }
        Ok(writes)
    }

    /// Marks a record deleted; it stays in history and in sync, hidden from lists.
    pub fn delete(&mut self, id: &str) -> Result<Record> {
        let mut patch = Map::new();
        patch.insert("deleted".into(), Value::Bool(true));
        self.update(id, patch)
    }

    /// Reads a record; a household comes with its residents' sensitive fields when this device
    /// holds them.
    pub fn get(&mut self, id: &str) -> Result<Record> {
        let doc = self.load(id)?;
        let mut fields = doc::read_root(&doc);
        self.cache.put(id.to_string(), doc);
        let household =
            fields.get("kind").and_then(Value::as_str) == Some(Kind::Household.as_str());
        if household && let Some(residents) = self.private_residents(id)? {
            sensitive::merge_household(&mut fields, &residents);
        }
        Record::from_fields(fields).ok_or_else(|| corrupt(id, "record has no id, kind or grid"))
    }

    /// The residents' sensitive fields of a household, if this device holds its private document.
    fn private_residents(&mut self, household_id: &str) -> Result<Option<Vec<Value>>> {
        let private_id = sensitive::private_id(household_id);
        let doc = match self.load(&private_id) {
            Ok(doc) => doc,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let fields = doc::read_root(&doc);
        self.cache.put(private_id, doc);
        Ok(match fields.get("residents") {
            Some(Value::Array(residents)) => Some(residents.clone()),
            _ => None,
        })
    }

    /// A write of a household's private document (created on first use).
    fn prepare_private(
        &mut self,
        household_id: &str,
        grid_id: &str,
        residents: Vec<Value>,
    ) -> Result<Prepared> {
        let identity = self.identity()?.clone();
        let private_id = sensitive::private_id(household_id);
        let (doc, mut fields) = match self.load(&private_id) {
            Ok(doc) => {
                let fields = doc::read_root(&doc);
                (doc, fields)
            }
            Err(Error::NotFound(_)) => {
                let mut fields = system_fields(
                    &private_id,
                    Kind::HouseholdPrivate,
                    grid_id,
                    &identity,
                    &self.now_string(),
                );
                fields.insert("household_id".into(), household_id.into());
                (Automerge::new(), fields)
            }
            Err(e) => return Err(e),
        };
        fields.insert("residents".into(), Value::Array(residents));
        fields.insert("updated_at".into(), self.now_string().into());
        fields.insert("updated_by".into(), identity.worker_id.into());
        self.prepare(&private_id, Kind::HouseholdPrivate, grid_id, doc, &fields)
    }

    /// Lists records from the index alone: no document is loaded.
    pub fn list(&self, q: &Query) -> Result<Vec<IndexRow>> {
        let (clause, args) = where_clause(q);
        let limit = q.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
        let order = if q.by_due {
            "due_at IS NULL, due_at, doc_id"
        } else {
            "updated_at DESC, doc_id"
        };
        let sql = format!(
            "SELECT {} FROM records{clause} ORDER BY {order}{limit}",
            sql::INDEX_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), sql::index_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Counts records from the index alone.
    pub fn count(&self, q: &Query) -> Result<u64> {
        let (clause, args) = where_clause(q);
        let sql = format!("SELECT COUNT(*) FROM records{clause}");
        let n: i64 = self
            .conn
            .query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Records where concurrent edits set the same field differently, with every value and who
    /// wrote it.
    pub fn conflicts(&mut self) -> Result<Vec<RecordConflicts>> {
        let rows: Vec<(String, String, String)> = self
            .conn
            .prepare(
                "SELECT doc_id, kind, title FROM records WHERE has_conflicts = 1 ORDER BY doc_id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, kind, title) in rows {
            let doc = self.load(&id)?;
            let fields = doc::conflicts(&doc);
            self.cache.put(id.clone(), doc);
            if let Ok(kind) = kind.parse() {
                out.push(RecordConflicts {
                    id,
                    kind,
                    title,
                    fields,
                });
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ internals

    /// Loads a document from the cache or from SQLite (snapshot + later changes).
    fn load(&mut self, doc_id: &str) -> Result<Automerge> {
        if let Some(doc) = self.cache.pop(doc_id) {
            return Ok(doc);
        }
        let stored =
            sql::load_doc(&self.conn, doc_id)?.ok_or_else(|| Error::NotFound(doc_id.into()))?;
        build_doc(doc_id, &stored, &self.actor)
    }

    fn prepare(
        &mut self,
        doc_id: &str,
        kind: Kind,
        grid_id: &str,
        doc: Automerge,
        fields: &Map<String, Value>,
    ) -> Result<Prepared> {
        self.prepare_with_force(doc_id, kind, grid_id, doc, fields, &Map::new())
    }

    /// Turns the wanted fields into one Automerge change. Fields named in `patch` that hold
    /// concurrent values are written even when unchanged, which settles the conflict.
    fn prepare_with_force(
        &mut self,
        doc_id: &str,
        kind: Kind,
        grid_id: &str,
        mut doc: Automerge,
        fields: &Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<Prepared> {
        doc.set_actor(self.actor.clone());
        let mut current = doc::read_root(&doc);
        for key in patch.keys() {
            if doc
                .get_all(ROOT, key.as_str())
                .map(|v| v.len())
                .unwrap_or(0)
                > 1
            {
                current.remove(key);
            }
        }
        let worker = self.identity()?.worker_id.clone();
        let mut tx = doc.transaction();
        doc::reconcile_root(&mut tx, kind, &current, fields)?;
        let options = CommitOptions::default()
            .with_message(worker)
            .with_time(self.now().timestamp());
        tx.commit_with(options);
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| corrupt(doc_id, "no change was produced"))?;
        let bytes = change.raw_bytes().to_vec();
        if bytes.len() > MAX_CHANGE_BYTES {
            return Err(ValidationError::Field(format!(
                "this write is {} KiB, more than the {} KiB a single change may hold: \
                 split it, or attach large files separately",
                bytes.len() / 1024,
                MAX_CHANGE_BYTES / 1024
            ))
            .into());
        }
        Ok(Prepared {
            doc_id: doc_id.to_string(),
            kind,
            grid_id: grid_id.to_string(),
            hash: change.hash().0.to_vec(),
            bytes,
            doc,
        })
    }

    /// Refuses, before anything is stored, a write of `kind` this device's role may never make,
    /// with the reason the relay would give ([`access::check_write`]). A replica that does not
    /// know its role refuses nothing here; the relay still refuses the change.
    fn may_write(&self, kind: Kind) -> Result<()> {
        match self.identity()?.known_role() {
            Some(role) => Ok(access::check_write(role, kind)?),
            None => Ok(()),
        }
    }

    /// Makes prepared writes durable in one SQLite transaction: changes, outbox, index.
    /// On failure the documents are dropped, so memory never holds what the disk does not.
    fn persist(&mut self, writes: Vec<Prepared>) -> Result<()> {
        self.persist_with(writes, |_| Ok(()))
    }

    /// [`Replica::persist`], with `more` written in the same transaction (an attachment's bytes).
    fn persist_with(
        &mut self,
        writes: Vec<Prepared>,
        more: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<()>,
    ) -> Result<()> {
        // Every document of the write, including those a write makes by itself (the private
        // part of a household, the household a visit met): the relay checks each one.
        for w in &writes {
            self.may_write(w.kind)?;
        }
        self.persist_inner(&writes, more)?;
        for w in writes {
            self.cache.put(w.doc_id, w.doc);
        }
        Ok(())
    }

    fn persist_inner(
        &mut self,
        writes: &[Prepared],
        more: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<()>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for w in writes {
            sql::ensure_doc(&tx, &w.doc_id, w.kind.as_str(), &w.grid_id)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (doc_id, grid_id, hash, bytes) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![w.doc_id, w.grid_id, w.hash, w.bytes])?;
            let fields = doc::read_fields(&w.doc, IndexRow::FIELDS.iter().copied());
            let row = IndexRow::from_fields(
                &w.doc_id,
                w.kind,
                &w.grid_id,
                &fields,
                doc::has_conflicts(&w.doc),
            );
            store_doc(
                &tx,
                &w.doc,
                &row,
                &[(w.hash.clone(), w.bytes.clone())],
                None,
            )?;
        }
        more(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// A visit that met the household moves the household's last visit and next due date.
    fn prepare_household_after_visit(
        &mut self,
        visit: &Map<String, Value>,
    ) -> Result<Option<Prepared>> {
        let Some(household_id) = visit.get("household_id").and_then(Value::as_str) else {
            return Ok(None);
        };
        // Nobody home, a refusal or a household that moved away is no visit: it stays due.
        let met = visit
            .get("outcome")
            .and_then(|v| serde_json::from_value::<record::VisitOutcome>(v.clone()).ok())
            == Some(record::VisitOutcome::Met);
        if !met {
            return Ok(None);
        }
        let started = visit
            .get("started_at")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<DateTime<Utc>>().ok());
        let Some(started) = started else {
            return Ok(None);
        };
        let doc = self.load(household_id)?;
        let mut fields = doc::read_root(&doc);
        let newer = fields
            .get("last_visit_at")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
            .is_some_and(|last| last >= started);
        let grid_id = fields
            .get("grid_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if newer || grid_id.is_empty() {
            self.cache.put(household_id.to_string(), doc);
            return Ok(None);
        }
        let class: VisitClass = fields
            .get("visit_class")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let due = visit
            .get("next_visit_due")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                (started + chrono::Duration::days(class.interval_days()))
                    .date_naive()
                    .to_string()
            });
        fields.insert(
            "last_visit_at".into(),
            started.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
        );
        fields.insert("next_visit_due".into(), due.into());
        self.prepare(household_id, Kind::Household, &grid_id, doc, &fields)
            .map(Some)
    }
}

impl ValidationContext for Replica {
    fn household_exists(&self, id: &str) -> bool {
        self.conn
            .query_row(
                "SELECT 1 FROM records WHERE doc_id = ?1 AND kind = 'household' AND deleted = 0",
                [id],
                |_| Ok(()),
            )
            .optional()
            .ok()
            .flatten()
            .is_some()
    }

    fn deadline_rules(&self) -> DeadlineRules {
        self.rules
    }

    fn author(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.worker_id.as_str())
    }
}

/// Stores a document's new changes and its index row. When the changes since the last snapshot
/// would pass [`COMPACT_AFTER`], a new snapshot is stored in their place: `snapshot` when the
/// caller made it already (off the database, see `apply_remote`), else one made here.
fn store_doc(
    tx: &rusqlite::Transaction<'_>,
    doc: &Automerge,
    row: &IndexRow,
    fresh: &[(Vec<u8>, Vec<u8>)],
    snapshot: Option<&[u8]>,
) -> Result<()> {
    sql::upsert_index(tx, row, &doc::heads_to_bytes(&doc.get_heads()))?;
    if let Some(snapshot) = snapshot {
        sql::compact(tx, &row.id, snapshot)?;
    } else if sql::changes_since_snapshot(tx, &row.id)? + fresh.len() > COMPACT_AFTER {
        sql::compact(tx, &row.id, &doc::save_snapshot(doc))?;
    } else {
        for (hash, bytes) in fresh {
            sql::insert_change(tx, &row.id, hash, bytes)?;
        }
    }
    Ok(())
}

/// A document from its stored snapshot and the changes stored after it. One nested too deep
/// (stored before the limit existed) is refused before anything reads it.
fn build_doc(doc_id: &str, stored: &sql::StoredDoc, actor: &ActorId) -> Result<Automerge> {
    let doc = build_doc_unchecked(doc_id, stored, actor)?;
    doc::check_depth(&doc).map_err(|reason| too_deep(doc_id, reason))?;
    Ok(doc)
}

/// [`build_doc`] without the nesting check, for a caller that checks the document once it has
/// merged what it received into it, before anything reads it (`sync_side::receive`): one walk
/// over the record instead of two. Applying changes reads no values, so it is safe on a
/// document nested too deep.
fn build_doc_unchecked(
    doc_id: &str,
    stored: &sql::StoredDoc,
    actor: &ActorId,
) -> Result<Automerge> {
    let mut doc = doc::from_stored(stored.snapshot.as_deref(), &stored.changes)
        .map_err(|e| corrupt(doc_id, &e.to_string()))?;
    doc.set_actor(actor.clone());
    Ok(doc)
}

fn read_identity(conn: &Connection) -> Result<Option<Identity>> {
    let (Some(device_id), Some(worker_id), Some(grids), Some(server_url), Some(token)) = (
        sql::get_meta(conn, "device_id")?,
        sql::get_meta(conn, "worker_id")?,
        sql::get_meta(conn, "grids")?,
        sql::get_meta(conn, "server_url")?,
        sql::get_meta(conn, "token")?,
    ) else {
        return Ok(None);
    };
    Ok(Some(Identity {
        device_id,
        worker_id,
        display_name: sql::get_meta(conn, "display_name")?.unwrap_or_default(),
        role: sql::get_meta(conn, "role")?.unwrap_or_default(),
        grids: grids
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        server_url,
        utc_offset_minutes: sql::get_meta(conn, "utc_offset_minutes")?
            .and_then(|m| m.parse().ok())
            .filter(|m| {
                CommunityZone {
                    utc_offset_minutes: *m,
                }
                .offset()
                .is_some()
            }),
        token,
    }))
}

fn where_clause(q: &Query) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    let mut add = |cond: &str, value: &Option<String>| {
        if let Some(v) = value {
            args.push(v.clone());
            conds.push(format!("{cond} ?{}", args.len()));
        }
    };
    add("kind =", &q.kind.map(|k| k.as_str().to_string()));
    add("grid_id =", &q.grid);
    add("status =", &q.status);
    add("household_id =", &q.household);
    add("assigned_to =", &q.assigned_to);
    add("due_at <", &q.due_before);
    if !q.include_deleted {
        conds.push("deleted = 0".into());
    }
    if q.not_closed {
        conds.push("(status IS NULL OR status <> 'closed')".into());
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

/// The fields the replica sets on every new record.
fn system_fields(
    id: &str,
    kind: Kind,
    grid_id: &str,
    identity: &Identity,
    now: &str,
) -> Map<String, Value> {
    let mut all = Map::new();
    all.insert("id".into(), id.into());
    all.insert("kind".into(), kind.as_str().into());
    all.insert("grid_id".into(), grid_id.into());
    all.insert("created_by".into(), identity.worker_id.clone().into());
    all.insert("device_id".into(), identity.device_id.clone().into());
    all.insert("created_at".into(), now.into());
    all.insert("schema_version".into(), SCHEMA_VERSION.into());
    all.insert("updated_at".into(), now.into());
    all.insert("updated_by".into(), identity.worker_id.clone().into());
    all
}

/// Refuses a write nesting values deeper than a record may hold: the relay and every other
/// device would refuse the change, and the record could not be opened here any more.
fn shallow_enough(fields: &Map<String, Value>) -> Result<()> {
    doc::check_json_depth(fields).map_err(|e| ValidationError::Field(e.to_string()).into())
}

fn through_household() -> Error {
    ValidationError::Field(
        "household_private is written and read through its household (ID numbers, health and \
         disability details go in the household's residents)"
            .into(),
    )
    .into()
}

fn too_deep(doc_id: &str, reason: doc::TooDeep) -> Error {
    Error::TooDeep {
        doc_id: doc_id.to_string(),
        reason,
    }
}

fn corrupt(doc_id: &str, message: &str) -> Error {
    Error::CorruptDocument {
        doc_id: doc_id.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests;
