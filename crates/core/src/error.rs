//! The one error type of the core. Each variant maps to one HTTP status and a stable machine
//! `code` in the API layer. Messages are written for the caller and never carry secret values;
//! internal causes (database, crypto) are logged by the API layer and answered generically.

use credvault_crypto::CryptoError;
use credvault_domain::credential_types::FieldError;
use credvault_domain::problems::Code;
use credvault_domain::roles::Permission;
use credvault_store::StoreError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No valid token (missing, unknown, expired, revoked, or its principal is disabled).
    #[error("authentication required")]
    Unauthenticated,
    /// Too many failed authentications from the caller's address: try again later.
    #[error("too many failed authentications from this address; retry in {retry_after_secs} s")]
    Throttled {
        /// Seconds until the address's window ends.
        retry_after_secs: u64,
    },
    /// The thing does not exist, or the caller may not know that it does.
    #[error("no such {what}")]
    NotFound {
        /// What kind of thing, e.g. `credential`.
        what: &'static str,
    },
    /// The caller can see the thing but lacks the permission.
    #[error("missing permission {}", permission.as_str())]
    Forbidden {
        /// The permission that was needed.
        permission: Permission,
    },
    /// One input field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the offending field, e.g. `fields.port`.
        field: String,
        /// Stable machine code.
        code: Code,
        /// Human explanation.
        message: String,
    },
    /// Several credential fields are wrong (schema validation).
    #[error("credential fields are invalid")]
    InvalidFields(Vec<FieldError>),
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable machine code, e.g. `name_taken`.
        code: Code,
        /// Human explanation.
        message: String,
    },
    /// A dependency is unavailable (e.g. audit forwarding is too far behind).
    #[error("{message}")]
    Unavailable {
        /// Stable code, e.g. `audit_unavailable`.
        code: Code,
        /// Human explanation.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Encryption or decryption failed (wrong keyring, tampered data).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Authorization refused a scoped operation. The service records it in the audit journal
    /// and turns it into [`CoreError::NotFound`] or [`CoreError::Forbidden`]; callers outside
    /// the core never see this variant.
    #[error("denied")]
    Denied(Box<Denial>),
    /// A refusal that must leave a trace (e.g. resolving a disabled credential): the service
    /// appends the event in its own transaction and returns the inner error.
    #[error("{}", .0.0)]
    Audited(Box<(CoreError, crate::audit::Draft)>),
    /// Internal: an OAuth access token must be refreshed before resolving (never leaves the core).
    #[doc(hidden)]
    #[error("needs an OAuth refresh")]
    NeedsRefresh(String),
    /// Internal: these host names must be resolved before the destination check can decide
    /// (never leaves the core; see `destinations::Service::with_dns`).
    #[doc(hidden)]
    #[error("needs DNS answers")]
    NeedsDns(Vec<String>),
    /// Internal: a resolve replayed from memory found the store's state changed before its
    /// record was written; it runs again on the writer (never leaves the core; see
    /// `resolve::cache`).
    #[doc(hidden)]
    #[error("state changed since the resolve's reads")]
    Stale,
    /// Something that should not happen did (a bug); details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// Shorthand for [`CoreError::Invalid`].
    pub fn invalid(field: impl Into<String>, code: Code, message: impl Into<String>) -> Self {
        CoreError::Invalid {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
    /// Shorthand for [`CoreError::Conflict`].
    pub fn conflict(code: Code, message: impl Into<String>) -> Self {
        CoreError::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<serde_json::Error> for CoreError {
    fn from(e: serde_json::Error) -> Self {
        CoreError::Internal(format!("json: {e}"))
    }
}

/// Result alias for the core.
pub type CoreResult<T> = Result<T, CoreError>;

/// A refused operation, with the audit event that records it.
#[derive(Debug)]
pub struct Denial {
    /// The event to append (outcome `denied`).
    pub draft: crate::audit::Draft,
    /// `Some(what)`: answer 404 (the caller is outside the scope); `None`: answer 403.
    pub hidden: Option<&'static str>,
    /// The permission that was needed.
    pub permission: Permission,
}

impl Denial {
    /// The error the caller sees.
    pub fn public_error(&self) -> CoreError {
        match self.hidden {
            Some(what) => CoreError::NotFound { what },
            None => CoreError::Forbidden {
                permission: self.permission,
            },
        }
    }
}

impl CoreError {
    /// The problem code an error carries itself (`Invalid`, `Conflict`, `Unavailable`).
    pub(crate) fn code(&self) -> Option<Code> {
        match self {
            CoreError::Invalid { code, .. }
            | CoreError::Conflict { code, .. }
            | CoreError::Unavailable { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Why the store cannot be reached, when that is the error (the API answers 503 then).
    pub fn store_unavailable(&self) -> Option<&str> {
        match self {
            CoreError::Store(StoreError::Unavailable(cause)) => Some(cause),
            _ => None,
        }
    }
}
