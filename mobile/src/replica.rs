//! `Replica`: the records of one signed-in worker on this phone, and everything an app does
//! with them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use gridsync_core::protocol::LoginRequest;
use gridsync_core::store::KeyProblem;
use gridsync_core::transport::{self, Progress, SyncOptions};
use gridsync_core::{Error as CoreError, Replica as CoreReplica, ReplicaKey};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::error::{ErrorCode, GridsyncError, Result, already_signed_in};
use crate::live::{LiveSession, LiveSessionListener};
use crate::observe::{Hub, Observation, QueryListener, RecordListener};
use crate::runtime::block_on;
use crate::types::{
    Account, FieldRecord, OpenOptions, RecordConflict, RecordQuery, RecordSummary, Recovery,
    SignInOptions, SyncOnceOptions, SyncProgress, SyncResult, SyncStatus, parse_kind,
};

/// The records of one signed-in worker on this phone, in one folder.
///
/// Safe to use from any thread. Calls that read or write the replica take its lock for that
/// call only, and a sync takes it for one step at a time (storing one received batch at
/// most), so a screen's reads are never held up by a sync for longer than one batch. Calls
/// marked *blocks on the network* (`signIn`, `syncOnce`) wait for the relay: keep them off the
/// main thread (a coroutine on `Dispatchers.IO`, a WorkManager worker, a Swift `Task`).
/// Writes are on disk when they return, and need no network.
#[derive(uniffi::Object)]
pub struct Replica {
    pub(crate) shared: Arc<Shared>,
}

/// The replicas open in this process, by folder.
static OPEN: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

/// What a replica's sessions, observers and calls share.
pub(crate) struct Shared {
    pub(crate) replica: Arc<Mutex<CoreReplica>>,
    /// Told of every local write, so a live session uploads it at once.
    pub(crate) local_writes: Arc<Notify>,
    pub(crate) hub: Arc<Hub>,
    /// A live session of this replica is running (one at a time).
    pub(crate) live: Mutex<bool>,
    folder: PathBuf,
    /// The key it was opened with: opening the folder again while it is open needs the same.
    key: Option<ReplicaKey>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, CoreReplica> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a local write: observers re-run, a live session uploads.
    pub(crate) fn written(&self) {
        self.local_writes.notify_one();
        self.hub.changed();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.hub.close();
    }
}

#[uniffi::export]
impl Replica {
    /// Opens the replica in `options.folder`, creating the folder and an empty replica if
    /// there is none. Fast and local; a new replica needs `signIn` before its first write.
    /// Opening a folder that is open already in this process gives the same replica, with the
    /// same key only.
    #[uniffi::constructor]
    pub fn open(options: OpenOptions) -> Result<Arc<Replica>> {
        let folder = PathBuf::from(options.folder.trim());
        if folder.as_os_str().is_empty() {
            return Err(GridsyncError::invalid_argument(
                "需要副本文件夹",
                "a folder for the replica is needed",
            ));
        }
        let io = |e| GridsyncError::from(CoreError::Io(e));
        let key = options
            .key
            .as_deref()
            .map(ReplicaKey::from_bytes)
            .transpose()?;
        std::fs::create_dir_all(&folder).map_err(io)?;
        let folder = folder.canonicalize().map_err(io)?;
        // A worker job and a screen of the same app opening the folder share one replica: one
        // lock, one cache, and observers that see the job's sync.
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, shared)| shared.strong_count() > 0);
        if let Some(shared) = open
            .iter()
            .find(|(f, _)| *f == folder)
            .and_then(|(_, shared)| shared.upgrade())
        {
            // Open already, so SQLite would not be asked: the key is checked here instead.
            let problem = match (&shared.key, &key) {
                (Some(open_with), Some(given)) if open_with == given => None,
                (None, None) => None,
                (Some(_), None) => Some(KeyProblem::Missing),
                (Some(_), Some(_)) => Some(KeyProblem::Wrong),
                (None, Some(_)) => Some(KeyProblem::NotEncrypted),
            };
            return match problem {
                Some(problem) => Err(CoreError::ReplicaKey(problem).into()),
                None => Ok(Arc::new(Replica { shared })),
            };
        }
        let opened = match &key {
            Some(key) => CoreReplica::open_with_key(&folder, key),
            None => CoreReplica::open(&folder),
        };
        let replica = Arc::new(Mutex::new(opened?));
        let hub = Hub::start(&replica)?;
        let shared = Arc::new(Shared {
            replica,
            local_writes: Arc::new(Notify::new()),
            hub,
            live: Mutex::new(false),
            folder: folder.clone(),
            key,
        });
        open.push((folder, Arc::downgrade(&shared)));
        Ok(Arc::new(Replica { shared }))
    }

    /// The folder this replica lives in.
    pub fn folder(&self) -> String {
        self.shared.folder.to_string_lossy().into_owned()
    }

    /// Signs this replica in: checks the password with the relay, which enrols this phone as
    /// a device of the user, and keeps the device token for every later sync. Done once per
    /// replica; again only if the relay forgot the device (`UNAUTHORIZED`). *Blocks on the
    /// network* (up to about 40 s on a bad one).
    pub fn sign_in(&self, options: SignInOptions) -> Result<Account> {
        let server = options.server.trim().to_string();
        if !["http://", "https://", "ws://", "wss://"]
            .iter()
            .any(|scheme| server.starts_with(scheme))
        {
            return Err(GridsyncError::invalid_argument(
                format!("服务器地址无效：{server}"),
                format!("invalid server address `{server}`: use http://host:port"),
            ));
        }
        let user = options.user.trim().to_string();
        let actor = {
            let replica = self.shared.lock();
            // Checked before the relay is asked, which would enrol a device for nothing.
            if let Ok(identity) = replica.identity()
                && identity.worker_id != user
            {
                let (code, zh, en) = already_signed_in(&identity.worker_id);
                return Err(GridsyncError::new(code, zh, en));
            }
            replica.actor_hex()
        };
        let request = LoginRequest {
            username: user,
            password: options.password,
            device_name: options.device_name,
            actor,
        };
        let ca = options.ca_cert.as_deref();
        if let Some(pem) = ca {
            transport::check_ca_certificate(pem)?;
        }
        let signed_in = block_on("signIn", transport::login_with_ca(&server, ca, request))??;
        let mut replica = self.shared.lock();
        replica.enrol_in_zone(&server, &signed_in.account, ca, signed_in.zone)?;
        let account = Account::from(replica.identity()?);
        drop(replica);
        self.shared.hub.changed();
        Ok(account)
    }

    /// What opening this replica found and did when its file was damaged or its journal lost
    /// (after a crash): none when it opened whole. Show the message once.
    pub fn recovery(&self) -> Option<Recovery> {
        self.shared.lock().recovery().map(Recovery::from)
    }

    /// Who this replica is signed in as; none before `signIn` (show the sign-in screen).
    pub fn who_am_i(&self) -> Option<Account> {
        self.shared.lock().identity().ok().map(Account::from)
    }

    /// Creates a record of `kind` (`household`, `visit`, `patrol`, `case`, `report`) from the
    /// JSON object `json`, in the worker's first grid unless it names a `grid_id`. Returns the
    /// stored record, with its new `id`. On disk when it returns; no network needed.
    pub fn create(&self, kind: String, json: String) -> Result<FieldRecord> {
        let kind = parse_kind(&kind)?;
        let fields = parse_object(&json)?;
        let record = self.shared.lock().create(kind, fields)?;
        self.shared.written();
        Ok(record.into())
    }

    /// Changes a record by a JSON merge patch (RFC 7396): only the fields named change,
    /// `null` removes one, nested objects merge. Lists that several people append to (case
    /// actions, visit issues, patrol incidents, report follow-ups) take the entries to add.
    pub fn update(&self, id: String, patch: String) -> Result<FieldRecord> {
        let patch = parse_object(&patch)?;
        let record = self.shared.lock().update(&id, patch)?;
        self.shared.written();
        Ok(record.into())
    }

    /// Marks a record deleted: hidden from lists, kept in history and in sync.
    pub fn delete(&self, id: String) -> Result<FieldRecord> {
        let record = self.shared.lock().delete(&id)?;
        self.shared.written();
        Ok(record.into())
    }

    /// One record with all its fields; none if this device does not hold it.
    pub fn get(&self, id: String) -> Result<Option<FieldRecord>> {
        get_record(&mut self.shared.lock(), &id)
    }

    /// The rows of a query, most recently updated first. From the index: no record is opened.
    pub fn list(&self, query: RecordQuery) -> Result<Vec<RecordSummary>> {
        list_records(&self.shared.lock(), &query)
    }

    /// How many records a query matches.
    pub fn count(&self, query: RecordQuery) -> Result<u64> {
        let replica = self.shared.lock();
        let (core, text) = query.to_core(replica.utc_offset())?;
        match text {
            None => Ok(replica.count(&core)?),
            Some(_) => Ok(list_records(&replica, &query)?.len() as u64),
        }
    }

    /// Records whose fields hold values written concurrently on several devices, with every
    /// value and who wrote it. Writing such a field again settles it.
    pub fn conflicts(&self) -> Result<Vec<RecordConflict>> {
        let all = self.shared.lock().conflicts()?;
        Ok(all.into_iter().map(RecordConflict::from).collect())
    }

    /// Unsent and refused changes, the last sync and how far each grid was received.
    pub fn status(&self) -> Result<SyncStatus> {
        Ok(self.shared.lock().status()?.into())
    }

    /// Uploads every unsent change and receives everything new, then disconnects. *Blocks on
    /// the network*: for a WorkManager job or a BGTaskScheduler task. With a deadline it stops
    /// cleanly when the deadline comes (`complete` is then false) and the next call resumes;
    /// a sync cut off by the app being killed resumes the same way. Observers are called for
    /// what it stored.
    pub fn sync_once(&self, options: SyncOnceOptions) -> Result<SyncResult> {
        let deadline = options.deadline.map(|d| Instant::now() + d);
        let progress = options.progress.map(|listener| {
            Box::new(move |p: Progress| {
                let progress = SyncProgress {
                    received: p.done,
                    total: p.total,
                };
                // A listener that throws must not end the sync.
                let call = std::panic::AssertUnwindSafe(|| listener.on_progress(progress));
                if std::panic::catch_unwind(call).is_err() {
                    tracing::warn!("a sync progress listener failed");
                }
            }) as Box<dyn FnMut(Progress) + Send>
        });
        let hub = self.shared.hub.clone();
        let sync_options = SyncOptions {
            progress,
            deadline,
            on_change: Some(Box::new(move || hub.changed())),
            ..SyncOptions::default()
        };
        let replica = self.shared.replica.clone();
        let result = block_on(
            "syncOnce",
            transport::sync_once_shared(replica, sync_options),
        )?;
        // A revoked device was wiped, a refused change marked: observers look again.
        self.shared.hub.changed();
        Ok(result?.into())
    }

    /// A live sync session for this replica, not yet started: while it runs, local writes are
    /// uploaded at once and other devices' changes arrive within moments. One session of a
    /// replica runs at a time.
    pub fn live_session(&self, listener: Option<Arc<dyn LiveSessionListener>>) -> Arc<LiveSession> {
        LiveSession::new(self.shared.clone(), listener)
    }

    /// Calls `listener` with the rows of `query` soon after registering and again whenever
    /// they change (after a local write or a received change), on the replica's callback
    /// thread. Keep the returned observation while the screen shows them.
    pub fn observe_query(
        &self,
        query: RecordQuery,
        listener: Arc<dyn QueryListener>,
    ) -> Result<Arc<Observation>> {
        query.to_core(self.shared.lock().utc_offset())?;
        Ok(self.shared.hub.observe_query(query, listener))
    }

    /// Calls `listener` with the record `id` soon after registering and again whenever it
    /// changes, on the replica's callback thread.
    pub fn observe_record(
        &self,
        id: String,
        listener: Arc<dyn RecordListener>,
    ) -> Arc<Observation> {
        self.shared.hub.observe_record(id, listener)
    }
}

pub(crate) fn get_record(replica: &mut CoreReplica, id: &str) -> Result<Option<FieldRecord>> {
    match replica.get(id) {
        Ok(record) => Ok(Some(record.into())),
        Err(gridsync_core::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn list_records(
    replica: &CoreReplica,
    query: &RecordQuery,
) -> Result<Vec<RecordSummary>> {
    let (core, text) = query.to_core(replica.utc_offset())?;
    let rows = replica.list(&core)?;
    let rows = rows.into_iter().map(RecordSummary::from);
    Ok(match text {
        None => rows.collect(),
        Some(text) => rows
            .filter(|r| r.title.to_lowercase().contains(&text))
            .take(query.limit.map_or(usize::MAX, |l| l as usize))
            .collect(),
    })
}

fn parse_object(json: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GridsyncError::new(
            ErrorCode::InvalidArgument,
            "记录必须是 JSON 对象",
            "a record must be a JSON object",
        )),
        Err(e) => Err(GridsyncError::new(
            ErrorCode::InvalidArgument,
            "JSON 无效",
            format!("invalid JSON: {e}"),
        )),
    }
}
