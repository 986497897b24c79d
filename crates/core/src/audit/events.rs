//! Events as stored and read back: columns, rows, hashes recomputed for verification.

use super::*;

/// One stored event, as the API returns it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Event {
    /// Sequence number (global, increasing along each chain).
    pub seq: i64,
    /// When, RFC 3339.
    pub at: String,
    /// Principal, if known.
    pub actor_id: Option<String>,
    /// `user`, `service_account`, `system` or `anonymous`.
    pub actor_kind: String,
    /// What happened.
    pub action: String,
    /// Kind of target.
    pub target_type: Option<String>,
    /// Target ID.
    pub target_id: Option<String>,
    /// Organization.
    pub org_id: Option<String>,
    /// Workspace.
    pub workspace_id: Option<String>,
    /// `success`, `denied` or `error`.
    pub outcome: String,
    /// Peer address.
    pub source_ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Request ID.
    pub request_id: Option<String>,
    /// Details (never secret).
    pub details: serde_json::Value,
    /// Hash of the previous event of the chain, hex.
    pub prev_hash: String,
    /// This event's hash, hex.
    pub hash: String,
    /// The chain (shard) the event is on, when it is not its organization's own chain
    /// (`{org}#k`); absent otherwise, and in exports from before shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

/// Columns selected for [`Event`] and verification, in order.
pub const EVENT_COLUMNS: &str = "seq, chain, at, org_id, workspace_id, actor_id, actor_kind, action, target_type, \
     target_id, outcome, source_ip, user_agent, request_id, details, prev_hash, hash";

/// A stored row with everything needed to re-hash it.
pub struct StoredEvent {
    pub(super) seq: i64,
    pub(super) chain: String,
    pub(super) at: Micros,
    pub(super) org_id: Option<String>,
    pub(super) workspace_id: Option<String>,
    pub(super) actor_id: Option<String>,
    pub(super) actor_kind: String,
    pub(super) action: String,
    pub(super) target_type: Option<String>,
    pub(super) target_id: Option<String>,
    pub(super) outcome: String,
    pub(super) source_ip: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) request_id: Option<String>,
    pub(super) details: String,
    pub(super) prev_hash: Vec<u8>,
    pub(super) hash: Vec<u8>,
}

impl StoredEvent {
    /// Reads a row selected with [`EVENT_COLUMNS`].
    pub fn from_row(r: &Row) -> CoreResult<StoredEvent> {
        Ok(StoredEvent {
            seq: r.int(0)?,
            chain: r.text(1)?,
            at: r.int(2)?,
            org_id: r.opt_text(3)?,
            workspace_id: r.opt_text(4)?,
            actor_id: r.opt_text(5)?,
            actor_kind: r.text(6)?,
            action: r.text(7)?,
            target_type: r.opt_text(8)?,
            target_id: r.opt_text(9)?,
            outcome: r.text(10)?,
            source_ip: r.opt_text(11)?,
            user_agent: r.opt_text(12)?,
            request_id: r.opt_text(13)?,
            details: r.text(14)?,
            prev_hash: r.bytes(15)?,
            hash: r.bytes(16)?,
        })
    }

    /// The sequence number.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Recomputes the hash from the fields and `prev_hash`.
    pub fn recompute(&self) -> CoreResult<Vec<u8>> {
        hash_event(
            &self.prev_hash,
            &Canonical {
                seq: self.seq,
                chain: &self.chain,
                at: self.at,
                org_id: self.org_id.as_deref(),
                workspace_id: self.workspace_id.as_deref(),
                actor_id: self.actor_id.as_deref(),
                actor_kind: &self.actor_kind,
                action: &self.action,
                target_type: self.target_type.as_deref(),
                target_id: self.target_id.as_deref(),
                outcome: &self.outcome,
                source_ip: self.source_ip.as_deref(),
                user_agent: self.user_agent.as_deref(),
                request_id: self.request_id.as_deref(),
                details: &self.details,
            },
        )
    }

    /// The API view.
    pub fn into_event(self) -> Event {
        let own = self.org_id.as_deref().unwrap_or(INSTANCE_CHAIN);
        let chain = (self.chain != own).then(|| self.chain.clone());
        Event {
            chain,
            seq: self.seq,
            at: to_rfc3339(self.at),
            actor_id: self.actor_id,
            actor_kind: self.actor_kind,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            org_id: self.org_id,
            workspace_id: self.workspace_id,
            outcome: self.outcome,
            source_ip: self.source_ip,
            user_agent: self.user_agent,
            request_id: self.request_id,
            details: serde_json::from_str(&self.details).unwrap_or(serde_json::Value::Null),
            prev_hash: hex::encode(&self.prev_hash),
            hash: hex::encode(&self.hash),
        }
    }
}

impl Event {
    /// Back to the stored form, to re-hash an exported event.
    /// The chain the event is on: its shard when it names one, else its organization's own
    /// chain (or the instance chain).
    pub fn chain_name(&self) -> String {
        self.chain
            .clone()
            .or_else(|| self.org_id.clone())
            .unwrap_or_else(|| INSTANCE_CHAIN.to_owned())
    }

    pub(super) fn to_stored(&self) -> Option<StoredEvent> {
        Some(StoredEvent {
            seq: self.seq,
            chain: self.chain_name(),
            at: credvault_domain::time::parse_rfc3339(&self.at)?,
            org_id: self.org_id.clone(),
            workspace_id: self.workspace_id.clone(),
            actor_id: self.actor_id.clone(),
            actor_kind: self.actor_kind.clone(),
            action: self.action.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            outcome: self.outcome.clone(),
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
            details: serde_json::to_string(&self.details).ok()?,
            prev_hash: hex::decode(&self.prev_hash).ok()?,
            hash: hex::decode(&self.hash).ok()?,
        })
    }
}
