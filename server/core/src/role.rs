//! How a connection may use a document: edit or view. The one place the role meets its spelling
//! ("edit", "view"), used by tokens, the API, metrics labels and cluster messages alike, so that no
//! layer maps it by hand.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Edit,
    View,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Edit, Role::View];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Edit => "edit",
            Role::View => "view",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spelling was neither "edit" nor "view".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a role is \"edit\" or \"view\"")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or(UnknownRole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips_and_matches_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<Role>(&format!("\"{role}\"")).unwrap(), role);
        }
        assert_eq!("Edit".parse::<Role>(), Err(UnknownRole));
        assert_eq!("".parse::<Role>(), Err(UnknownRole));
    }
}
