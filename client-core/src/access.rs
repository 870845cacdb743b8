//! The access rules: which role may read and which may write each kind of record (within its
//! grids). One copy for both sides: the relay holds every upload and every catch-up to them
//! (`server/src/accounts.rs` re-exports them), and a device holds its own writes to them, so a
//! write its role may never make is refused at once, in the words the relay would use, instead
//! of being stored, shown as unsent and refused at every sync. `docs/security.md` states the
//! rules in prose; the access-matrix test checks every cell against a real relay.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::record::Kind;

/// What a user is, which decides the kinds of record they read and write. Set when the account
/// is made; a device learns it at sign-in (`LoginResponse::role`) and keeps it in its replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 网格员: one or more grids, every kind of record.
    GridWorker,
    /// 巡逻志愿者: patrol logs of their grid; households read-only without sensitive data.
    Volunteer,
    /// 社区办公室: every grid of their community, every kind.
    Office,
    /// 管理员: everything, and the accounts.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::GridWorker, Role::Volunteer, Role::Office, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::GridWorker => "grid_worker",
            Role::Volunteer => "volunteer",
            Role::Office => "office",
            Role::Admin => "admin",
        }
    }

    /// The Chinese name people know the role by.
    pub fn label_zh(self) -> &'static str {
        match self {
            Role::GridWorker => "网格员",
            Role::Volunteer => "巡逻志愿者",
            Role::Office => "社区办公室",
            Role::Admin => "管理员",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role `{s}`: use grid_worker, volunteer, office or admin")
            })
    }
}

/// Whether `role` may receive records of `kind` (within its grids).
pub fn can_read(role: Role, kind: Kind) -> bool {
    match role {
        Role::GridWorker | Role::Office | Role::Admin => true,
        Role::Volunteer => matches!(kind, Kind::Patrol | Kind::Household),
    }
}

/// Whether `role` may write records of `kind` (within its grids).
pub fn can_write(role: Role, kind: Kind) -> bool {
    match role {
        Role::GridWorker | Role::Office | Role::Admin => true,
        Role::Volunteer => kind == Kind::Patrol,
    }
}

/// The kinds a role may read, as stored in the relay log's `kind` column; empty means every
/// kind (which also covers documents whose kind is not known yet).
pub fn readable_kinds(role: Role) -> Vec<String> {
    if Kind::ALL_STORED.into_iter().all(|k| can_read(role, k)) {
        return Vec::new();
    }
    Kind::ALL_STORED
        .into_iter()
        .filter(|k| can_read(role, *k))
        .map(|k| k.as_str().to_string())
        .collect()
}

/// A write `role` may never make, whatever the grid: the reason the relay gives for refusing the
/// change, and the device for not storing it (Chinese first, as the CLI prints errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}无权写入{} a {role} may not write {kind} records", role.label_zh(), kind.label_zh())]
pub struct NotAllowed {
    pub role: Role,
    pub kind: Kind,
}

/// [`can_write`] with the reason when it says no.
pub fn check_write(role: Role, kind: Kind) -> Result<(), NotAllowed> {
    if can_write(role, kind) {
        Ok(())
    } else {
        Err(NotAllowed { role, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_volunteers_see_no_cases_and_no_sensitive_data() {
        assert!(!can_read(Role::Volunteer, Kind::Case));
        assert!(!can_read(Role::Volunteer, Kind::HouseholdPrivate));
        assert!(can_read(Role::Volunteer, Kind::Household));
        assert!(!can_write(Role::Volunteer, Kind::Household));
        assert!(can_write(Role::Volunteer, Kind::Patrol));
        assert_eq!(readable_kinds(Role::Volunteer), ["household", "patrol"]);
        assert!(readable_kinds(Role::GridWorker).is_empty());
    }

    #[test]
    fn test_a_refusal_names_the_role_and_the_kind_in_both_languages() {
        let refused = check_write(Role::Volunteer, Kind::Case).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "巡逻志愿者无权写入帮扶个案 a volunteer may not write case records"
        );
        assert_eq!(check_write(Role::Volunteer, Kind::Patrol), Ok(()));
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("inspector".parse::<Role>().is_err());
    }
}
