//! Roles, permissions and the per-organization role policy (PRODUCT.md §3).
//!
//! The permission table is data: [`Role::default_grants`] is the default, and an organization's
//! [`RolePolicy`] may move the three movable permissions (`credential.create`,
//! `credential.attach`, `credential.reveal`) between roles. Everything else is fixed.

use std::collections::BTreeMap;

/// The six roles, bound to a principal at organization or workspace scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything but resolve: members, settings, delete and purge.
    Admin,
    /// Creates and rotates credentials, wires connections.
    IntegrationEngineer,
    /// Builds pipelines and connections from existing credentials.
    Builder,
    /// Reads metadata, the audit log and review reports.
    Auditor,
    /// Reads metadata.
    Viewer,
    /// Resolves connections to plaintext for pipeline runs; nothing else.
    Worker,
}

impl Role {
    /// All roles, in table order.
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::IntegrationEngineer,
        Role::Builder,
        Role::Auditor,
        Role::Viewer,
        Role::Worker,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::IntegrationEngineer => "integration_engineer",
            Role::Builder => "builder",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
            Role::Worker => "worker",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The fixed grants of this role (the non-movable rows of the table).
    fn fixed_grants(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[MetadataRead, CredentialDelete, OrgAdmin, AuditRead],
            Role::IntegrationEngineer | Role::Builder | Role::Viewer => &[MetadataRead],
            Role::Auditor => &[MetadataRead, AuditRead],
            Role::Worker => &[Resolve],
        }
    }
}

/// What a principal may do. The first three are movable by the organization's role policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Permission {
    /// Create, rotate, disable and enable credentials (movable).
    #[serde(rename = "credential.create")]
    CredentialCreate,
    /// Attach credentials, create connections and pipelines, run Test connection (movable).
    #[serde(rename = "credential.attach")]
    CredentialAttach,
    /// Read plaintext through the API (movable; nobody by default).
    #[serde(rename = "credential.reveal")]
    CredentialReveal,
    /// Read metadata of credentials, connections and pipelines.
    #[serde(rename = "metadata.read")]
    MetadataRead,
    /// Delete, restore and purge credentials.
    #[serde(rename = "credential.delete")]
    CredentialDelete,
    /// Members, role bindings, tokens of others, role policy, enabled types, settings.
    #[serde(rename = "org.admin")]
    OrgAdmin,
    /// Read the audit log and review reports.
    #[serde(rename = "audit.read")]
    AuditRead,
    /// Resolve a connection to plaintext for a pipeline run.
    #[serde(rename = "connection.resolve")]
    Resolve,
}

impl Permission {
    /// The permissions an organization may move between roles.
    pub const MOVABLE: [Permission; 3] = [
        Permission::CredentialCreate,
        Permission::CredentialAttach,
        Permission::CredentialReveal,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CredentialCreate => "credential.create",
            Permission::CredentialAttach => "credential.attach",
            Permission::CredentialReveal => "credential.reveal",
            Permission::MetadataRead => "metadata.read",
            Permission::CredentialDelete => "credential.delete",
            Permission::OrgAdmin => "org.admin",
            Permission::AuditRead => "audit.read",
            Permission::Resolve => "connection.resolve",
        }
    }
}

/// An organization's assignment of the movable permissions to roles. Only the movable
/// permissions may appear; anything else is refused when parsed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePolicy {
    /// Roles holding `credential.create`.
    #[serde(rename = "credential.create")]
    pub credential_create: Vec<Role>,
    /// Roles holding `credential.attach`.
    #[serde(rename = "credential.attach")]
    pub credential_attach: Vec<Role>,
    /// Roles holding `credential.reveal`.
    #[serde(rename = "credential.reveal")]
    pub credential_reveal: Vec<Role>,
}

impl Default for RolePolicy {
    fn default() -> Self {
        RolePolicy {
            credential_create: vec![Role::Admin, Role::IntegrationEngineer],
            credential_attach: vec![Role::Admin, Role::IntegrationEngineer, Role::Builder],
            credential_reveal: vec![],
        }
    }
}

impl RolePolicy {
    /// Whether `role` holds `perm` under this policy.
    pub fn grants(&self, role: Role, perm: Permission) -> bool {
        match perm {
            Permission::CredentialCreate => self.credential_create.contains(&role),
            Permission::CredentialAttach => self.credential_attach.contains(&role),
            Permission::CredentialReveal => self.credential_reveal.contains(&role),
            other => role.fixed_grants().contains(&other),
        }
    }

    /// Whether any of `roles` holds `perm`.
    pub fn any_grants(&self, roles: &[Role], perm: Permission) -> bool {
        roles.iter().any(|r| self.grants(*r, perm))
    }

    /// The full table, for display: permission → roles.
    pub fn table(&self) -> BTreeMap<&'static str, Vec<Role>> {
        let all = [
            Permission::MetadataRead,
            Permission::CredentialCreate,
            Permission::CredentialAttach,
            Permission::CredentialDelete,
            Permission::OrgAdmin,
            Permission::AuditRead,
            Permission::Resolve,
            Permission::CredentialReveal,
        ];
        all.into_iter()
            .map(|p| {
                (
                    p.as_str(),
                    Role::ALL.into_iter().filter(|r| self.grants(*r, p)).collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_matches_the_product_table() {
        let p = RolePolicy::default();
        use Permission::*;
        use Role::*;
        let expect: &[(Permission, &[Role])] = &[
            (MetadataRead, &[Admin, IntegrationEngineer, Builder, Auditor, Viewer]),
            (CredentialCreate, &[Admin, IntegrationEngineer]),
            (CredentialAttach, &[Admin, IntegrationEngineer, Builder]),
            (CredentialDelete, &[Admin]),
            (OrgAdmin, &[Admin]),
            (AuditRead, &[Admin, Auditor]),
            (Resolve, &[Worker]),
            (CredentialReveal, &[]),
        ];
        for (perm, roles) in expect {
            for r in Role::ALL {
                assert_eq!(p.grants(r, *perm), roles.contains(&r), "{perm:?} for {r:?}");
            }
        }
    }

    #[test]
    fn a_policy_moves_only_movable_permissions() {
        let mut p = RolePolicy::default();
        p.credential_create.push(Role::Builder);
        assert!(p.grants(Role::Builder, Permission::CredentialCreate));
        assert!(!p.grants(Role::Builder, Permission::OrgAdmin));
        assert!(!p.grants(Role::Admin, Permission::Resolve));
    }
}
