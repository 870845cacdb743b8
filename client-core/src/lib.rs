#![doc = include_str!("../README.md")]

pub mod access;
pub mod doc;
mod error;
pub mod parallel;
pub mod protocol;
pub mod record;
pub mod store;
pub mod sync;
#[cfg(feature = "ws-client")]
pub mod transport;

pub use error::{Error, Result};
pub use store::{Identity, Query, Replica, ReplicaKey, ZoneSource};
