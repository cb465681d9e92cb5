//! Raft metadata quorum for Runnel clusters.
//!
//! openraft drives consensus; this crate supplies its storage (LMDB, [`store`]), its transport
//! (length-prefixed JSON over TCP, [`network`]) and a small byte-oriented API ([`Quorum`]).
//! Commands and state are opaque bytes, so the broker's metadata types stay in the broker and
//! openraft's types stay in here.

mod config;
mod error;
mod network;
mod node;
mod store;
mod types;

pub use config::QuorumConfig;
pub use error::{CallError, ProposeError, QuorumError};
pub use node::Quorum;
pub use types::{AppHandler, Entry, Member, StateMachine};
