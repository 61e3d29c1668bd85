//! Who is asking: the dealer (tenant) every row belongs to, the user, and their roles.

use serde::{Deserialize, Serialize};

/// The tenant. Every stored row belongs to exactly one dealer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DealerId(pub String);

/// A user of the billing system, as named by the token's `sub` claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl std::fmt::Display for DealerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Roles are ordered: an admin may do what an operator may, an operator what a viewer may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Operations: push, link, sync, tests, imports.
    Operator,
    /// Connections and provider credentials.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub dealer: DealerId,
    pub user: UserId,
    pub roles: Vec<Role>,
}

impl Caller {
    /// Whether any of the caller's roles reaches `needed`.
    pub fn has(&self, needed: Role) -> bool {
        self.roles.iter().any(|r| *r >= needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[Role]) -> Caller {
        Caller {
            dealer: DealerId("d".into()),
            user: UserId("u".into()),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn higher_roles_include_lower_ones() {
        assert!(caller(&[Role::Admin]).has(Role::Viewer));
        assert!(caller(&[Role::Operator]).has(Role::Operator));
        assert!(!caller(&[Role::Operator]).has(Role::Admin));
        assert!(!caller(&[Role::Viewer]).has(Role::Operator));
        assert!(!caller(&[]).has(Role::Viewer));
    }
}
