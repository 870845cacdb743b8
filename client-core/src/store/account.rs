//! The replica's owner: enrolment after a sign-in, the scope the server grants, and erasure.

use rusqlite::params;

use super::{Replica, read_identity, sql};
use crate::error::{Error, Result};
use crate::protocol::{CommunityZone, LoginResponse};

/// A zone no place has is the relay's mistake: refused, not stored.
fn check_zone(zone: CommunityZone) -> Result<()> {
    match zone.offset() {
        Some(_) => Ok(()),
        None => Err(Error::Protocol(format!(
            "the relay's time zone, {} minutes from UTC, is not one",
            zone.utc_offset_minutes
        ))),
    }
}

impl Replica {
    /// This replica's Automerge actor id, which sign-in binds to the new device.
    pub fn actor_hex(&self) -> String {
        self.actor.to_hex_string()
    }

    /// Binds this replica to the user and device a sign-in returned. Signing in again as the
    /// same user (the relay no longer knows the device, say after a restore) keeps every record
    /// and unsent change; another user's sign-in is refused: the data on it is not theirs.
    pub fn enrol(&mut self, server_url: &str, login: &LoginResponse) -> Result<()> {
        self.enrol_trusting(server_url, login, None)
    }

    /// [`Replica::enrol`], also keeping `ca_pem`, the CA certificate the sign-in trusted besides
    /// the public roots, for every later sync (`None` keeps the one already kept, if any).
    /// `transport::sign_in_with_ca` has checked that it is one certificate.
    pub fn enrol_trusting(
        &mut self,
        server_url: &str,
        login: &LoginResponse,
        ca_pem: Option<&str>,
    ) -> Result<()> {
        self.enrol_in_zone(server_url, login, ca_pem, None)
    }

    /// [`Replica::enrol_trusting`], also keeping the community's time zone the relay gave at
    /// sign-in (`None`: a relay before protocol 5 gave none; a zone kept before stays).
    pub fn enrol_in_zone(
        &mut self,
        server_url: &str,
        login: &LoginResponse,
        ca_pem: Option<&str>,
        zone: Option<CommunityZone>,
    ) -> Result<()> {
        if let Some(identity) = &self.identity
            && identity.worker_id != login.username
        {
            return Err(Error::AlreadyInitialised(identity.worker_id.clone()));
        }
        let tx = self.conn.transaction()?;
        sql::set_meta(&tx, "device_id", &login.device_id)?;
        sql::set_meta(&tx, "worker_id", &login.username)?;
        sql::set_meta(&tx, "display_name", &login.display_name)?;
        sql::set_meta(&tx, "role", &login.role)?;
        sql::set_meta(&tx, "grids", &login.grids.join(","))?;
        sql::set_meta(&tx, "server_url", server_url)?;
        sql::set_meta(&tx, "token", &login.token)?;
        if let Some(pem) = ca_pem {
            sql::set_meta(&tx, "ca_cert", pem)?;
        }
        if let Some(zone) = zone {
            check_zone(zone)?;
            sql::set_meta(
                &tx,
                "utc_offset_minutes",
                &zone.utc_offset_minutes.to_string(),
            )?;
        }
        tx.commit()?;
        self.identity = read_identity(&self.conn)?;
        Ok(())
    }

    /// The CA certificate (PEM) this replica trusts for its relay besides the public roots, as
    /// given at sign-in. Erased with everything else by [`Replica::wipe`].
    pub fn trusted_ca(&self) -> Result<Option<String>> {
        sql::get_meta(&self.conn, "ca_cert")
    }

    /// Keeps the community's time zone the relay said in a session, for every later local day
    /// and time (the relay's setting may have changed since the sign-in).
    pub fn set_community_zone(&mut self, zone: CommunityZone) -> Result<()> {
        check_zone(zone)?;
        sql::set_meta(
            &self.conn,
            "utc_offset_minutes",
            &zone.utc_offset_minutes.to_string(),
        )?;
        if let Some(identity) = self.identity.as_mut() {
            identity.utc_offset_minutes = Some(zone.utc_offset_minutes);
        }
        Ok(())
    }

    /// Records the grids the server says this device holds now.
    pub fn set_scope(&mut self, grids: &[String]) -> Result<()> {
        sql::set_meta(&self.conn, "grids", &grids.join(","))?;
        if let Some(identity) = self.identity.as_mut() {
            identity.grids = grids.to_vec();
        }
        Ok(())
    }

    /// Erases the records of grids outside the current scope, except where local changes are
    /// still unsent or were refused: unsynced work is never purged. Returns how many documents
    /// were erased.
    pub fn purge_outside_scope(&mut self) -> Result<usize> {
        let grids = self.identity()?.grids.clone();
        let json = serde_json::to_string(&grids).unwrap_or_else(|_| "[]".into());
        let tx = self.conn.transaction()?;
        let stale: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT grid_id FROM docs
                 WHERE grid_id NOT IN (SELECT value FROM json_each(?1))
                   AND grid_id NOT IN (SELECT grid_id FROM outbox)",
            )?;
            let rows = stmt.query_map([&json], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        // A record the office moved to a grid outside the scope is filed there, but its unsent
        // changes stay under the grid they were written in: it goes once they are acknowledged.
        let keep = "doc_id NOT IN (SELECT doc_id FROM outbox)";
        let mut erased = 0;
        for grid in &stale {
            tx.execute(
                &format!(
                    "DELETE FROM doc_changes WHERE doc_id IN
                        (SELECT doc_id FROM docs WHERE grid_id = ?1 AND {keep})"
                ),
                [grid],
            )?;
            tx.execute(
                &format!("DELETE FROM records WHERE grid_id = ?1 AND {keep}"),
                [grid],
            )?;
            erased += tx.execute(
                &format!("DELETE FROM docs WHERE grid_id = ?1 AND {keep}"),
                [grid],
            )?;
            tx.execute("DELETE FROM cursors WHERE grid_id = ?1", [grid])?;
            tx.execute("DELETE FROM witnesses WHERE grid_id = ?1", params![grid])?;
        }
        if erased > 0 {
            // Fetched attachments are not kept by grid: the cache goes whole (it is fetched
            // again on demand), so no photo of a grid the device left stays on it.
            tx.execute(
                "DELETE FROM attachments WHERE origin = 'fetched' OR upload = 'uploaded'",
                [],
            )?;
        }
        tx.commit()?;
        if erased > 0 {
            self.cache.clear();
        }
        Ok(erased)
    }

    /// Erases everything this replica holds (records, unsent changes, identity), as the server
    /// orders for a revoked device. Deleted pages are overwritten and the file is rebuilt, so the
    /// data is not left in free pages of the SQLite file; damaged copies a salvage moved aside
    /// are deleted.
    pub fn wipe(&mut self) -> Result<()> {
        self.conn.pragma_update(None, "secure_delete", "ON")?;
        let tx = self.conn.transaction()?;
        for table in [
            "attachment_pieces",
            "attachments",
            "doc_changes",
            "docs",
            "outbox",
            "records",
            "cursors",
            "witnesses",
            "meta",
        ] {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
        tx.commit()?;
        self.conn.execute_batch("VACUUM")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        self.cache.clear();
        self.identity = None;
        // A damaged copy a salvage moved aside holds the same data.
        if let Some(dir) = self
            .conn
            .path()
            .and_then(|p| std::path::Path::new(p).parent())
        {
            super::salvage::remove_damaged_copies(dir)?;
        }
        // The old actor was bound to the revoked device: a later sign-in gets a fresh one.
        self.actor = automerge::ActorId::random();
        sql::set_meta(&self.conn, "actor", &self.actor.to_hex_string())?;
        Ok(())
    }
}
