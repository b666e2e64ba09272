//! Who is attached to one room, counted for the limits: editors and viewers apart (so that viewers
//! at their cap never lock editors out), and per client address (so that one address cannot take
//! a document's every place). The server's own attachments only keep the room loaded.

use super::{AttachError, Limits, Who};
use crate::metrics::Reject;
use crate::Role;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Default)]
pub(super) struct Occupancy {
    /// Everyone attached, the server included: a room unloads only at zero.
    all: usize,
    editors: usize,
    viewers: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Occupancy {
    pub(super) fn is_empty(&self) -> bool {
        self.all == 0
    }

    /// Counts `who` in, unless a limit says no.
    pub(super) fn admit(&mut self, who: &Who, limits: &Limits) -> Result<(), AttachError> {
        if let Who::Client { role, ip } = who {
            let (count, max, full) = match role {
                Role::Edit => (self.editors, limits.max_editors_per_doc, AttachError::EditorsFull),
                Role::View => (self.viewers, limits.max_viewers_per_doc, AttachError::ViewersFull),
            };
            if count >= max {
                return Err(full);
            }
            if self.per_ip.get(ip).copied().unwrap_or(0) >= limits.max_conns_per_ip_per_doc {
                return Err(AttachError::AddressFull);
            }
        }
        self.join(who);
        Ok(())
    }

    /// Counts `who` in without a check (the first attachment of a new room).
    pub(super) fn join(&mut self, who: &Who) {
        self.all += 1;
        if let Who::Client { role, ip } = who {
            *self.count(*role) += 1;
            *self.per_ip.entry(*ip).or_default() += 1;
        }
    }

    pub(super) fn leave(&mut self, who: &Who) {
        self.all = self.all.saturating_sub(1);
        if let Who::Client { role, ip } = who {
            let count = self.count(*role);
            *count = count.saturating_sub(1);
            if let Some(n) = self.per_ip.get_mut(ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(ip);
                }
            }
        }
    }

    fn count(&mut self, role: Role) -> &mut usize {
        match role {
            Role::Edit => &mut self.editors,
            Role::View => &mut self.viewers,
        }
    }
}

impl AttachError {
    /// The `/metrics` reason a refusal is counted under.
    pub(super) fn reject(&self) -> Option<Reject> {
        match self {
            AttachError::EditorsFull => Some(Reject::DocEditorLimit),
            AttachError::ViewersFull => Some(Reject::DocViewerLimit),
            AttachError::AddressFull => Some(Reject::AddressLimit),
            AttachError::NameConflict => Some(Reject::BadName),
            AttachError::ServerFull | AttachError::ShuttingDown => None,
        }
    }
}
