//! The map of loaded rooms, keyed by the document name folded to lower case. Two names that
//! differ only in case name the same files on a case-insensitive filesystem (and a session's id
//! and its upper-case twin on any), so the hub holds one place for both: a lookup by the exact
//! name finds its room, and [`Rooms::conflict`] finds a loaded twin.

use std::collections::HashMap;

pub(super) struct Rooms<E> {
    by_folded: HashMap<String, (String, E)>,
}

impl<E> Default for Rooms<E> {
    fn default() -> Self {
        Rooms { by_folded: HashMap::new() }
    }
}

fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl<E> Rooms<E> {
    pub(super) fn get(&self, name: &str) -> Option<&E> {
        self.by_folded.get(&fold(name)).filter(|(n, _)| n == name).map(|(_, e)| e)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut E> {
        self.by_folded.get_mut(&fold(name)).filter(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// The loaded room whose name differs from `name` only in case, if any.
    pub(super) fn conflict(&self, name: &str) -> Option<&str> {
        self.by_folded.get(&fold(name)).map(|(n, _)| n.as_str()).filter(|n| *n != name)
    }

    pub(super) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets the entry of `name` (never called while a twin is loaded: see `conflict`).
    pub(super) fn insert(&mut self, name: String, entry: E) {
        self.by_folded.insert(fold(&name), (name, entry));
    }

    pub(super) fn remove(&mut self, name: &str) {
        if self.get(name).is_some() {
            self.by_folded.remove(&fold(name));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.by_folded.len()
    }
}
