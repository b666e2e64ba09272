//! The cluster's side of sessions: records and shared settings in PostgreSQL, announcements over
//! Redis pub/sub. Sessions reach it only through [`SharedRecords`].

use super::bus::Control;
use super::{Cluster, ClusterError};
use crate::sessions::{SessionChange, SessionError, SharedRecords};
use async_trait::async_trait;
use commonpad_core::Role;

impl From<ClusterError> for SessionError {
    fn from(e: ClusterError) -> SessionError {
        SessionError::Shared(e.to_string())
    }
}

#[async_trait]
impl SharedRecords for Cluster {
    async fn record(&self, id: &str) -> Result<Option<String>, SessionError> {
        Ok(self.pg.session(id).await?)
    }

    async fn records(&self) -> Result<Vec<String>, SessionError> {
        Ok(self.pg.sessions().await?)
    }

    async fn put_record(&self, id: &str, json: &str) -> Result<(), SessionError> {
        Ok(self.pg.put_session(id, json).await?)
    }

    async fn bump_generation(&self, id: &str, role: Role) -> Result<Option<String>, SessionError> {
        // The record's field names, as `SessionRecord` serializes them.
        let field = format!("{role}_generation");
        Ok(self.pg.bump_generation(id, &field).await?)
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, SessionError> {
        Ok(self.pg.setting_or_insert(name, value).await?)
    }

    async fn put_setting(&self, name: &str, value: &str) -> Result<(), SessionError> {
        Ok(self.pg.put_setting(name, value).await?)
    }

    async fn announce(&self, change: &SessionChange) {
        self.publish_control(&Control::Session(change.clone())).await;
    }
}
