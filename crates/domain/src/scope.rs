//! Scopes: what a key may do.

use std::fmt;

use thiserror::Error;

/// One scope of the product document's table, in the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `*`: full access.
    All,
    /// `users:read`
    UsersRead,
    /// `users:write`
    UsersWrite,
    /// `sessions:read`
    SessionsRead,
    /// `sessions:write`
    SessionsWrite,
    /// `organizations:read`
    OrganizationsRead,
    /// `organizations:write`
    OrganizationsWrite,
    /// `webhooks:read`
    WebhooksRead,
    /// `webhooks:write`
    WebhooksWrite,
    /// `audit-logs:read`
    AuditLogsRead,
}

impl Scope {
    /// Every scope, in the document's (canonical) order.
    pub const ALL: [Scope; 10] = [
        Scope::All,
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::SessionsRead,
        Scope::SessionsWrite,
        Scope::OrganizationsRead,
        Scope::OrganizationsWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::AuditLogsRead,
    ];

    /// The wire name, such as `users:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "*",
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::SessionsRead => "sessions:read",
            Scope::SessionsWrite => "sessions:write",
            Scope::OrganizationsRead => "organizations:read",
            Scope::OrganizationsWrite => "organizations:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::AuditLogsRead => "audit-logs:read",
        }
    }

    /// Whether only a secret key may use this scope (docs/api.md, "Scopes"):
    /// every `:write` scope, `audit-logs:read` and `webhooks:read`.
    /// Publishable keys are public by design.
    pub fn is_sensitive(self) -> bool {
        matches!(
            self,
            Scope::UsersWrite
                | Scope::SessionsWrite
                | Scope::OrganizationsWrite
                | Scope::WebhooksRead
                | Scope::WebhooksWrite
                | Scope::AuditLogsRead
        )
    }

    /// Parses a wire name (exact).
    ///
    /// # Errors
    /// [`ScopesError::Unknown`] for a name not in the document's table.
    pub fn parse(s: &str) -> Result<Self, ScopesError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or(ScopesError::Unknown)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a list of scopes was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ScopesError {
    /// The list was empty.
    #[error("scopes must not be empty")]
    Empty,
    /// A name that is not one of the documented scopes.
    #[error("unknown scope; known scopes are *, users:read, users:write, sessions:read, sessions:write, organizations:read, organizations:write, webhooks:read, webhooks:write, audit-logs:read")]
    Unknown,
    /// `*` together with other scopes.
    #[error("`*` grants everything and must stand alone")]
    WildcardNotAlone,
}

/// A valid, canonical set of scopes: non-empty, `*` only alone, no duplicates,
/// in the document's table order. A bit set, so it is `Copy`: an
/// authenticated caller costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u16);

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Scopes")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl Scope {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl Scopes {
    /// `["*"]`, the default for new keys.
    pub fn full() -> Self {
        Scopes(Scope::All.bit())
    }

    /// Builds the canonical set from parsed scopes.
    ///
    /// # Errors
    /// [`ScopesError::Empty`] or [`ScopesError::WildcardNotAlone`].
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, ScopesError> {
        let bits = scopes.into_iter().fold(0u16, |bits, s| bits | s.bit());
        if bits == 0 {
            Err(ScopesError::Empty)
        } else if bits & Scope::All.bit() != 0 && bits != Scope::All.bit() {
            Err(ScopesError::WildcardNotAlone)
        } else {
            Ok(Scopes(bits))
        }
    }

    /// Parses wire names; see [`Scopes::new`] for the rules.
    ///
    /// # Errors
    /// [`ScopesError`] for an empty list, an unknown name or `*` not alone.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopesError> {
        let parsed = names
            .into_iter()
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Scopes::new(parsed)
    }

    /// Whether these scopes grant `required` (`*` grants everything).
    pub fn allows(&self, required: Scope) -> bool {
        self.is_full_access() || self.0 & required.bit() != 0
    }

    /// Whether a key of `key_type` holding these scopes may use `required`:
    /// as [`Scopes::allows`], except that a publishable key never satisfies
    /// a sensitive scope ([`Scope::is_sensitive`]), whatever it holds (its
    /// `*` stands for the other scopes only).
    pub fn allow_for(&self, key_type: crate::KeyType, required: Scope) -> bool {
        self.allows(required)
            && !(key_type == crate::KeyType::Publishable && required.is_sensitive())
    }

    /// The first sensitive scope listed by name (not through `*`), which a
    /// publishable key may not be given.
    pub fn first_sensitive(&self) -> Option<Scope> {
        self.iter().find(|s| s.is_sensitive())
    }

    /// Whether this is `["*"]`.
    pub fn is_full_access(&self) -> bool {
        self.0 == Scope::All.bit()
    }

    /// The scopes in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::ALL.into_iter().filter(|s| self.0 & s.bit() != 0)
    }

    /// The wire names in canonical order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.iter().map(Scope::as_str)
    }
}
