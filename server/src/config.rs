//! Server configuration: defaults that run locally with zero set-up; flags and environment
//! variables override them (see `gridsync-server --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where devices and browsers connect.
    pub listen: SocketAddr,
    /// Where the SQLite store lives.
    pub data_dir: PathBuf,
    /// Documents held decoded in memory at most; the relay's memory does not grow beyond this
    /// however many records it stores.
    pub doc_cache: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            doc_cache: 1000,
        }
    }
}
