//! Office writes as CRDT changes. Each staff member has a server-side "dashboard device" (a row
//! in `devices` with its own Automerge actor); a write is built on the relay's current copy of
//! the document with that actor, signed with the staff username as the change message, and
//! handed to `Relay::accept` with the dashboard device's identity. So an office change is
//! checked, logged, indexed and pushed to devices exactly like a phone's.

use std::collections::HashSet;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, ObjId, ObjType, Prop, ROOT, Value as AmValue};
use axum::http::StatusCode;
use chrono::{SecondsFormat, Utc};
use gridsync_core::doc;
use gridsync_core::protocol::UpChange;
use gridsync_core::record::{DeadlineRules, Kind, ValidationContext};
use serde_json::{Map, Value};

use super::Fail;
use super::auth::Staff;
use crate::AppState;
use crate::accounts::Identity;
use crate::relay::StoredRecord;
use crate::storage::{KindFilter, RecordQuery};

/// What an office write does to a document.
pub enum Edit {
    /// Make the root fields equal to these (minimal operations). Keys listed in `force` are
    /// written even when unchanged, which settles concurrent values held there.
    Fields {
        fields: Map<String, Value>,
        force: Vec<String>,
    },
    /// Put one value at a path (`status`, `address.door`, `residents[2].phone`), replacing
    /// every concurrent value held there.
    Path { path: String, value: Value },
}

/// The identity of a staff member's dashboard device, enrolling one on first use.
pub(super) async fn office_identity(state: &AppState, staff: &Staff) -> Result<Identity, Fail> {
    crate::relay::dashboard_identity(
        state.accounts.as_ref(),
        &staff.user,
        staff.grids.clone(),
        staff.former_grids.clone(),
    )
    .await
    .map_err(|e| Fail::storage(staff.lang, e))
}

/// Loads a record the staff member may see, or says it is not there.
pub async fn load(state: &AppState, staff: &Staff, id: &str) -> Result<StoredRecord, Fail> {
    let found = state
        .relay
        .document(id)
        .await
        .map_err(|e| Fail::storage(staff.lang, e))?;
    match found {
        Some(r) if staff.grids.contains(&r.grid_id) && r.kind.is_some() => Ok(r),
        _ => Err(Fail::not_found(staff.lang)),
    }
}

/// Creates a record from the office, as a device creates one: the system fields, its lists and
/// texts made with it (so later appends from phones merge), one change by the staff member's
/// dashboard device, accepted by the relay like a device upload. `fields` must have passed
/// validation. Returns the new record's id.
pub async fn create(
    state: &AppState,
    staff: &Staff,
    kind: Kind,
    grid: &str,
    fields: Map<String, Value>,
) -> Result<String, Fail> {
    let lang = staff.lang;
    if !staff.grids.iter().any(|g| g == grid) {
        return Err(Fail::not_found(lang));
    }
    let _one_at_a_time = state.dashboard.write_lock.lock().await;
    let identity = office_identity(state, staff).await?;
    let actor: ActorId = identity.actors[0]
        .parse()
        .map_err(|_| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, lang.t("err.storage")))?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let stamp = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let username = staff.user.username.as_str();
    let mut all = Map::new();
    for (key, value) in [
        ("id", Value::from(id.as_str())),
        ("kind", kind.as_str().into()),
        ("grid_id", grid.into()),
        ("created_by", username.into()),
        ("device_id", identity.device_id.as_str().into()),
        ("created_at", stamp.as_str().into()),
        (
            "schema_version",
            gridsync_core::record::SCHEMA_VERSION.into(),
        ),
        ("updated_at", stamp.as_str().into()),
        ("updated_by", username.into()),
    ] {
        all.insert(key.into(), value);
    }
    for list in kind.append_only_fields() {
        all.insert(list.into(), Value::Array(Vec::new()));
    }
    for text in kind.text_fields() {
        all.insert(text.into(), Value::String(String::new()));
    }
    all.extend(fields);
    let mut doc = automerge::Automerge::new().with_actor(actor);
    let built = {
        let mut tx = doc.transaction();
        match doc::reconcile_root(&mut tx, kind, &Map::new(), &all) {
            Ok(()) => {
                tx.commit_with(
                    CommitOptions::default()
                        .with_message(username.to_string())
                        .with_time(now.timestamp()),
                );
                Ok(())
            }
            Err(e) => {
                tx.rollback();
                Err(e)
            }
        }
    };
    built.map_err(|e| {
        tracing::error!("office create of a {kind}: {e}");
        Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.t("err.bad_request"))
    })?;
    let Some(change) = doc.get_last_local_change() else {
        return Err(Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            lang.t("err.bad_request"),
        ));
    };
    let up = UpChange {
        doc_id: id.clone(),
        grid: grid.to_string(),
        bytes: change.raw_bytes().to_vec(),
    };
    let (rejected, _) = state
        .relay
        .accept(&identity, vec![up])
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    if let Some(r) = rejected.first() {
        tracing::warn!("office create of a {kind} refused: {}", r.reason);
        return Err(Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}{}{}", lang.t("err.refused"), lang.colon(), r.reason),
        ));
    }
    Ok(id)
}

/// Builds an office change on the current document and accepts it like a device upload.
/// Returns the log position after it (to close a review only up to it).
pub async fn commit(
    state: &AppState,
    staff: &Staff,
    id: &str,
    build: impl FnOnce(&StoredRecord) -> Result<Edit, Fail>,
) -> Result<u64, Fail> {
    let lang = staff.lang;
    let _one_at_a_time = state.dashboard.write_lock.lock().await;
    let identity = office_identity(state, staff).await?;
    let record = load(state, staff, id).await?;
    let edit = build(&record)?;
    let kind: Kind = record.kind.ok_or_else(|| Fail::not_found(lang))?;
    let mut doc = record.doc;
    let actor: ActorId = identity.actors[0]
        .parse()
        .map_err(|_| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, lang.t("err.storage")))?;
    doc.set_actor(actor);
    let now = Utc::now();
    let current = doc::read_root(&doc);
    let stamp = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let applied = {
        let mut tx = doc.transaction();
        let result = apply(&mut tx, kind, &current, edit, &staff.user.username, &stamp);
        match result {
            Ok(()) => {
                tx.commit_with(
                    CommitOptions::default()
                        .with_message(staff.user.username.clone())
                        .with_time(now.timestamp()),
                );
                Ok(())
            }
            Err(e) => {
                tx.rollback();
                Err(e)
            }
        }
    };
    applied.map_err(|e| {
        tracing::error!("office write on {id}: {e}");
        Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.t("err.bad_request"))
    })?;
    let Some(change) = doc.get_last_local_change() else {
        return Ok(0);
    };
    let up = UpChange {
        doc_id: id.to_string(),
        grid: record.grid_id.clone(),
        bytes: change.raw_bytes().to_vec(),
    };
    let (rejected, witnesses) = state
        .relay
        .accept(&identity, vec![up])
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    if let Some(r) = rejected.first() {
        tracing::warn!("office write on {id} refused: {}", r.reason);
        return Err(Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}{}{}", lang.t("err.refused"), lang.colon(), r.reason),
        ));
    }
    Ok(witnesses
        .iter()
        .find(|w| w.grid == record.grid_id)
        .map_or(0, |w| w.seq))
}

fn apply<T: Transactable>(
    tx: &mut T,
    kind: Kind,
    current: &Map<String, Value>,
    edit: Edit,
    username: &str,
    now: &str,
) -> Result<(), automerge::AutomergeError> {
    match edit {
        Edit::Fields { fields, force } => {
            let mut current = current.clone();
            for key in &force {
                current.remove(key);
            }
            let mut new = fields;
            new.insert("updated_at".into(), now.into());
            new.insert("updated_by".into(), username.into());
            doc::reconcile_root(tx, kind, &current, &new)
        }
        Edit::Path { path, value } => {
            let steps = parse_path(&path);
            let Some((last, parents)) = steps.split_last() else {
                return Ok(());
            };
            let mut obj = ROOT;
            for step in parents {
                match tx.get(&obj, step.clone())? {
                    Some((AmValue::Object(_), id)) => obj = id,
                    _ => return Err(automerge::AutomergeError::InvalidOp(ObjType::Map)),
                }
            }
            let is_text = parents.is_empty() && matches!(last, Prop::Map(k) if kind.is_text(k));
            put_json(tx, &obj, last.clone(), &value, is_text)?;
            tx.put(ROOT, "updated_at", now)?;
            tx.put(ROOT, "updated_by", username)?;
            Ok(())
        }
    }
}

/// `residents[2].phone` → [Map("residents"), Seq(2), Map("phone")].
pub fn parse_path(path: &str) -> Vec<Prop> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        if name_end > 0 {
            out.push(Prop::Map(rest[..name_end].to_string()));
        }
        rest = &rest[name_end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else { break };
            if let Ok(i) = inner[..close].parse::<usize>() {
                out.push(Prop::Seq(i));
            }
            rest = &inner[close + 1..];
        }
    }
    out
}

/// Puts a JSON value at `prop`, overwriting whatever (and however many values) are there.
fn put_json<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    value: &Value,
    is_text: bool,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Value::String(s) if is_text => {
            let text = tx.put_object(obj, prop, ObjType::Text)?;
            tx.splice_text(&text, 0, 0, s)?;
        }
        Value::Object(map) => {
            let child = tx.put_object(obj, prop, ObjType::Map)?;
            for (k, v) in map {
                put_json(tx, &child, k.as_str().into(), v, false)?;
            }
        }
        Value::Array(items) => {
            let child = tx.put_object(obj, prop, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                insert_json(tx, &child, i, item)?;
            }
        }
        Value::String(s) => tx.put(obj, prop, s.as_str())?,
        Value::Bool(b) => tx.put(obj, prop, *b)?,
        Value::Number(n) => match n.as_i64() {
            Some(i) => tx.put(obj, prop, i)?,
            None => tx.put(obj, prop, n.as_f64().unwrap_or_default())?,
        },
        Value::Null => tx.put(obj, prop, automerge::ScalarValue::Null)?,
    }
    Ok(())
}

fn insert_json<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    i: usize,
    value: &Value,
) -> Result<(), automerge::AutomergeError> {
    // A placeholder first, then the value over it: one code path for every shape.
    tx.insert(list, i, automerge::ScalarValue::Null)?;
    put_json(tx, list, Prop::Seq(i), value, false)
}

/// What validation knows on the server: which households exist, and the office's deadlines.
pub struct ServerContext {
    pub households: HashSet<String>,
    pub rules: DeadlineRules,
}

impl ValidationContext for ServerContext {
    fn household_exists(&self, id: &str) -> bool {
        self.households.contains(id)
    }

    fn deadline_rules(&self) -> DeadlineRules {
        self.rules
    }
}

/// A validation context knowing the household a record names, if the relay holds it.
pub async fn context(
    state: &AppState,
    staff: &Staff,
    fields: &Map<String, Value>,
) -> Result<ServerContext, Fail> {
    let mut households = HashSet::new();
    if let Some(h) = fields.get("household_id").and_then(Value::as_str) {
        let q = RecordQuery {
            grids: staff
                .grids
                .iter()
                .chain(&staff.former_grids)
                .cloned()
                .collect(),
            kinds: KindFilter::one(Kind::Household),
            ids: vec![h.to_string()],
            ..RecordQuery::default()
        };
        let page = state
            .relay
            .queries()
            .list_records(&q)
            .await
            .map_err(|e| Fail::storage(staff.lang, e))?;
        households.extend(page.rows.into_iter().map(|r| r.row.id));
    }
    Ok(ServerContext {
        households,
        rules: state.dashboard.rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_paths_parse_into_map_keys_and_list_indexes() {
        assert_eq!(parse_path("status"), vec![Prop::Map("status".into())]);
        assert_eq!(
            parse_path("residents[2].phone"),
            vec![
                Prop::Map("residents".into()),
                Prop::Seq(2),
                Prop::Map("phone".into())
            ]
        );
    }
}
