//! What sessions need from a cluster, as a trait the cluster implements: the records and shared
//! settings (PostgreSQL), and a way to tell the other nodes that a record changed (Redis pub/sub).
//! Sessions never name the cluster, so the dependency runs one way: cluster -> sessions.

use super::SessionError;
use async_trait::async_trait;
use commonpad_core::Role;
use serde::{Deserialize, Serialize};

/// A change to one session that every node must act on: re-read the record, and close the
/// connections of `kick`'s role (all of them, and unload, when `deleted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionChange {
    pub id: String,
    pub kick: Option<Role>,
    pub deleted: bool,
}

/// Session records (as JSON text, the serde form the disk backend writes) and named settings
/// shared by the nodes of a cluster.
#[async_trait]
pub trait SharedRecords: Send + Sync + 'static {
    async fn record(&self, id: &str) -> Result<Option<String>, SessionError>;
    async fn records(&self) -> Result<Vec<String>, SessionError>;
    async fn put_record(&self, id: &str, json: &str) -> Result<(), SessionError>;
    /// Bumps one role's link generation atomically (two nodes rotating at once both count) and
    /// returns the new record, or `None` if there is no such session.
    async fn bump_generation(&self, id: &str, role: Role) -> Result<Option<String>, SessionError>;
    /// The stored value, or `value` stored now if there was none (the first node wins).
    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, SessionError>;
    async fn put_setting(&self, name: &str, value: &str) -> Result<(), SessionError>;
    /// Tells the other nodes (best effort: they also re-read every record periodically).
    async fn announce(&self, change: &SessionChange);
}
