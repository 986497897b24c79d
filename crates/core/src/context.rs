//! Who is asking and from where: the authenticated [`Actor`] and the [`RequestCtx`] that every
//! audit event records.

use credvault_domain::roles::Role;
use credvault_domain::{OrgId, PrincipalId, PrincipalKind, TokenId, WorkspaceId};

/// Request metadata recorded in audit events. Never holds secrets.
#[derive(Clone, Debug, Default)]
pub struct RequestCtx {
    /// The request's identifier (also in the response header and logs).
    pub request_id: String,
    /// The peer address.
    pub source_ip: Option<String>,
    /// The `User-Agent` header, truncated.
    pub user_agent: Option<String>,
    /// When the request arrived (microseconds since the epoch; 0 for work the server started
    /// itself). Concurrent requests use it to share work begun before they arrived (an OAuth
    /// refresh under way).
    pub received_at: i64,
}

impl RequestCtx {
    /// When the request arrived, or now when that is unknown.
    pub fn received_at(&self) -> i64 {
        if self.received_at > 0 {
            self.received_at
        } else {
            credvault_domain::time::now_micros()
        }
    }
}

/// One role binding of the actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorBinding {
    /// The role.
    pub role: Role,
    /// `None` for an organization-wide binding.
    pub workspace_id: Option<WorkspaceId>,
}

/// An authenticated principal with its bindings, loaded once per request.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The principal.
    pub principal_id: PrincipalId,
    /// User or service account.
    pub kind: PrincipalKind,
    /// The principal's name.
    pub name: String,
    /// The organization the principal belongs to.
    pub org_id: OrgId,
    /// May create organizations and acts as admin in every organization.
    pub instance_admin: bool,
    /// The token used for this request.
    pub token_id: TokenId,
    /// Role bindings, all inside `org_id`.
    pub bindings: Vec<ActorBinding>,
}

impl Actor {
    /// Roles that apply at organization level.
    pub fn org_roles(&self) -> Vec<Role> {
        if self.instance_admin {
            return vec![Role::Admin];
        }
        self.bindings
            .iter()
            .filter(|b| b.workspace_id.is_none())
            .map(|b| b.role)
            .collect()
    }

    /// Roles that apply inside workspace `ws` (organization bindings included).
    pub fn workspace_roles(&self, ws: &WorkspaceId) -> Vec<Role> {
        if self.instance_admin {
            return vec![Role::Admin];
        }
        self.bindings
            .iter()
            .filter(|b| b.workspace_id.as_ref().is_none_or(|w| w == ws))
            .map(|b| b.role)
            .collect()
    }

    /// All roles the actor holds anywhere in its organization.
    pub fn any_roles(&self) -> Vec<Role> {
        if self.instance_admin {
            return vec![Role::Admin];
        }
        self.bindings.iter().map(|b| b.role).collect()
    }

    /// Whether the actor can see anything of organization `org`.
    pub fn in_org(&self, org: &OrgId) -> bool {
        self.instance_admin || (&self.org_id == org && !self.bindings.is_empty())
    }
}
