//! What relays on one database tell each other, through PostgreSQL's `NOTIFY`: the commits
//! each made (so that the others push them to their live devices and drop cached copies), and
//! the sign-in attempts each counted (so that the throttle holds across relays). A relay
//! listens on a connection of its own ([`PostgresStorage::listen`]) and skips its own notices.

use tokio_postgres::NoTls;

use super::{Commit, PostgresStorage, Result};
use crate::accounts::Outcome;

/// The channel every commit notifies on: `NOTIFY gridsync_log` with a [`LogNotice`] as JSON,
/// sent by PostgreSQL when (and only if) the commit is durable.
pub const LOG_CHANNEL: &str = "gridsync_log";
/// The channel of sign-in attempts: a [`SignInNotice`] as JSON per attempt.
pub const SIGN_IN_CHANNEL: &str = "gridsync_sign_in";
/// A notice's payload stays below PostgreSQL's limit (8000 bytes): a commit naming more
/// documents of a grid sends several.
const NOTICE_BYTES: usize = 6000;

/// A commit another relay on the database made: the grid's log grew to `seq`, and these
/// documents changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogNotice {
    /// The committing store's instance, to skip one's own notices.
    from: String,
    pub grid_id: String,
    pub seq: u64,
    pub docs: Vec<String>,
}

/// A sign-in attempt another relay on the database counted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SignInNotice {
    from: String,
    outcome: Outcome,
}

/// What another relay told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Log(LogNotice),
    SignIn(Outcome),
}

/// The notices of other relays, on a connection of their own; see [`PostgresStorage::listen`].
pub struct Listener {
    /// Kept so that the connection stays open.
    _client: tokio_postgres::Client,
    notices: tokio::sync::mpsc::Receiver<Notice>,
}

impl Listener {
    /// The next notice; `None` once the connection is gone (listen anew, and trust nothing
    /// cached meanwhile: notices sent while no one listened are lost).
    pub async fn recv(&mut self) -> Option<Notice> {
        self.notices.recv().await
    }
}

/// One notification as the notice it carries, unless it is this store's own (or no notice).
fn notice(channel: &str, payload: &str, own: &str) -> Option<Notice> {
    let read = match channel {
        LOG_CHANNEL => serde_json::from_str::<LogNotice>(payload)
            .ok()
            .map(|n| (n.from.clone(), Notice::Log(n))),
        SIGN_IN_CHANNEL => serde_json::from_str::<SignInNotice>(payload)
            .ok()
            .map(|n| (n.from, Notice::SignIn(n.outcome))),
        _ => None,
    };
    match read {
        Some((from, notice)) => (from != own).then_some(notice),
        None => {
            tracing::warn!("a notice on {channel} that gridsync cannot read");
            None
        }
    }
}

impl PostgresStorage {
    /// Listens for the commits and sign-in attempts of other relays (other stores on the
    /// database), on a connection of its own. This store's own are left out.
    pub async fn listen(&self) -> Result<Listener> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (tx, notices) = tokio::sync::mpsc::channel(1024);
        let own = self.instance.clone();
        tokio::spawn(async move {
            // Ends with the connection, or when nobody reads the notices any more.
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                let tokio_postgres::AsyncMessage::Notification(n) = message else {
                    continue;
                };
                if let Some(notice) = notice(n.channel(), n.payload(), &own)
                    && tx.send(notice).await.is_err()
                {
                    return;
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {LOG_CHANNEL}; LISTEN {SIGN_IN_CHANNEL}"))
            .await?;
        Ok(Listener {
            _client: client,
            notices,
        })
    }

    /// Tells the other relays on the database of these sign-in attempts.
    pub async fn share_sign_ins(&self, outcomes: &[Outcome]) -> Result<()> {
        let payloads: Vec<String> = outcomes
            .iter()
            .filter_map(|&outcome| {
                serde_json::to_string(&SignInNotice {
                    from: self.instance.clone(),
                    outcome,
                })
                .ok()
            })
            .collect();
        self.client()
            .await?
            .execute(
                "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n",
                &[&SIGN_IN_CHANNEL, &payloads],
            )
            .await?;
        Ok(())
    }

    /// The notices of a commit: per grid of its changes, the documents of that grid it wrote.
    pub(super) fn notices(&self, commit: &Commit, seq: u64) -> Vec<String> {
        let mut grids: Vec<&str> = commit.changes.iter().map(|c| c.grid_id.as_str()).collect();
        grids.sort();
        grids.dedup();
        let mut out = Vec::new();
        for grid in grids {
            let mut docs: Vec<String> = commit
                .docs
                .iter()
                .filter(|d| d.grid_id == grid)
                .map(|d| d.doc_id.clone())
                .chain(
                    commit
                        .changes
                        .iter()
                        .filter(|c| c.grid_id == grid)
                        .map(|c| c.doc_id.clone()),
                )
                .collect();
            docs.sort();
            docs.dedup();
            let mut notice = LogNotice {
                from: self.instance.clone(),
                grid_id: grid.to_string(),
                seq,
                docs: Vec::new(),
            };
            let mut size = 0;
            for doc in docs {
                if size + doc.len() > NOTICE_BYTES && !notice.docs.is_empty() {
                    out.extend(serde_json::to_string(&notice).ok());
                    (notice.docs, size) = (Vec::new(), 0);
                }
                size += doc.len() + 3;
                notice.docs.push(doc);
            }
            out.extend(serde_json::to_string(&notice).ok());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn test_a_notice_is_read_from_its_channel_and_ones_own_are_skipped() {
        let outcome = Outcome {
            account: [7; 16],
            addr: "10.0.0.9".parse().unwrap(),
            right: false,
        };
        let payload = |from: &str| {
            serde_json::to_string(&SignInNotice {
                from: from.into(),
                outcome,
            })
            .unwrap()
        };
        assert_eq!(
            notice(SIGN_IN_CHANNEL, &payload("other"), "me"),
            Some(Notice::SignIn(outcome))
        );
        assert_eq!(notice(SIGN_IN_CHANNEL, &payload("me"), "me"), None);
        assert_eq!(notice(LOG_CHANNEL, &payload("other"), "me"), None);
        let log = r#"{"from":"other","grid_id":"g1","seq":4,"docs":["d"]}"#;
        assert!(matches!(
            notice(LOG_CHANNEL, log, "me"),
            Some(Notice::Log(n)) if n.seq == 4 && n.docs == ["d"]
        ));
    }
}
