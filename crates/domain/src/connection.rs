//! Connections: a dealer's configured link to one upstream system (a Stages
//! endpoint, an interactive services provider), with the rules for their fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::tenancy::{DealerId, UserId};

/// Time-ordered (v7) id made by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub Uuid);

impl ConnectionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The upstream systems the service knows how to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Stages,
    AlarmCom,
    TotalConnect,
    BrinksHome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderCategory {
    /// A central-station automation platform.
    CentralStation,
    /// An interactive services provider (ISP).
    InteractiveServices,
}

/// One credential field a provider asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialField {
    pub name: &'static str,
    pub label: &'static str,
    /// Stored encrypted, never returned.
    pub secret: bool,
}

/// A supported provider and what a connection to it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provider {
    pub kind: ProviderKind,
    pub name: &'static str,
    pub category: ProviderCategory,
    pub default_connection_name: &'static str,
    pub credential_fields: Vec<CredentialField>,
    /// Whether each user may hold their own credentials (`auth_mode = user`).
    pub supports_user_auth: bool,
}

const USERNAME: CredentialField = CredentialField {
    name: "username",
    label: "Username",
    secret: false,
};
const PASSWORD: CredentialField = CredentialField {
    name: "password",
    label: "Password",
    secret: true,
};

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        Self::Stages,
        Self::AlarmCom,
        Self::TotalConnect,
        Self::BrinksHome,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stages => "stages",
            Self::AlarmCom => "alarm_com",
            Self::TotalConnect => "total_connect",
            Self::BrinksHome => "brinks_home",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn describe(self) -> Provider {
        match self {
            Self::Stages => Provider {
                kind: self,
                name: "Stages",
                category: ProviderCategory::CentralStation,
                default_connection_name: "Stages",
                credential_fields: vec![USERNAME, PASSWORD],
                supports_user_auth: true,
            },
            Self::AlarmCom => Provider {
                kind: self,
                name: "Alarm.com",
                category: ProviderCategory::InteractiveServices,
                default_connection_name: "Alarm.com",
                credential_fields: vec![USERNAME, PASSWORD],
                supports_user_auth: false,
            },
            Self::TotalConnect => Provider {
                kind: self,
                name: "Total Connect",
                category: ProviderCategory::InteractiveServices,
                default_connection_name: "Total Connect",
                credential_fields: vec![USERNAME, PASSWORD],
                supports_user_auth: false,
            },
            Self::BrinksHome => Provider {
                kind: self,
                name: "Brinks Home",
                category: ProviderCategory::InteractiveServices,
                default_connection_name: "Brinks Home",
                credential_fields: vec![USERNAME, PASSWORD],
                supports_user_auth: false,
            },
        }
    }
}

/// Whose upstream credentials a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// One credential for the whole dealer.
    #[default]
    Dealer,
    /// Each user stores their own.
    User,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dealer => "dealer",
            Self::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dealer" => Some(Self::Dealer),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// How a connection settles a field that both sides changed since the last
/// sync (S18, S19). Whatever the policy, the decision is `sync::decide`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// Neither side changes for that field; the conflict waits in the inbox.
    #[default]
    Hold,
    /// Billing's value goes to Stages.
    BillingWins,
    /// Stages' value comes to billing.
    StagesWins,
    /// The side whose record changed last wins; held when that is unknown.
    NewestWins,
}

impl ConflictPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::BillingWins => "billing_wins",
            Self::StagesWins => "stages_wins",
            Self::NewestWins => "newest_wins",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Hold,
            Self::BillingWins,
            Self::StagesWins,
            Self::NewestWins,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    #[default]
    Active,
    Inactive,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// A connection name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionName(String);

impl ConnectionName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An upstream endpoint: an absolute http(s) URL with a host and no embedded
/// credentials (those live in the credential store, encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Endpoint(Url);

impl Endpoint {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        let url = Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http or https URL".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials; set them with the credentials routes".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment".into());
        }
        Ok(Self(url))
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// Same scheme, host and port (a default port counts as given): the
    /// server a credential was given for. Only the path may differ.
    pub fn same_origin(&self, other: &Endpoint) -> bool {
        self.0.origin() == other.0.origin()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A stored connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: ConnectionId,
    pub dealer: DealerId,
    pub name: ConnectionName,
    pub provider: ProviderKind,
    pub endpoint: Endpoint,
    pub auth_mode: AuthMode,
    pub auto_sync: bool,
    /// How a field changed on both sides is settled.
    pub conflict_policy: ConflictPolicy,
    pub status: ConnectionStatus,
    /// What an interactive services provider entry is set up to do (I1, I2, I4, I5).
    pub settings: ProviderSettings,
    /// Take over the billing ids already in Stages when the connection first
    /// works (S20); see [`crate::migration`].
    pub migrate_on_connect: bool,
    /// The reconcile queued as this connection's migration, once there is one.
    pub migration: Option<MigrationJob>,
    /// Bumped on every change; the ETag of the resource.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewConnection {
    pub dealer: DealerId,
    pub name: ConnectionName,
    pub provider: ProviderKind,
    pub endpoint: Endpoint,
    pub auth_mode: AuthMode,
    pub auto_sync: bool,
    pub conflict_policy: ConflictPolicy,
    pub status: ConnectionStatus,
    pub migrate_on_connect: bool,
}

/// The job of a connection's migration and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationJob {
    pub job_id: crate::jobs::JobId,
    pub state: crate::jobs::JobState,
}

/// A partial change; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionChanges {
    pub name: Option<ConnectionName>,
    pub endpoint: Option<Endpoint>,
    pub auth_mode: Option<AuthMode>,
    pub auto_sync: Option<bool>,
    pub conflict_policy: Option<ConflictPolicy>,
    pub status: Option<ConnectionStatus>,
    pub migrate_on_connect: Option<bool>,
    /// The whole new settings (see `isp::settings_after`, which checks them).
    pub settings: Option<ProviderSettings>,
}

/// The settings of an interactive services provider entry beyond its
/// credentials. Stored as JSON on the connection; fields that do not apply to
/// the provider stay at their defaults (the change rules in `isp` refuse them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    /// Pre-fills new ISP accounts; one of the provider's plans when it was set.
    pub default_service_plan: Option<crate::adc::AdcPackageId>,
    /// Builder Program customers and commitments may be created (I5).
    pub builder_program: bool,
    /// Payments and payment-method changes made at the provider are received (I4).
    pub billing_notifications: bool,
    /// Where the provider was told to send Alarm.net callbacks (I2): this
    /// service's public address of `POST /v1/webhooks/alarmnet/{id}`.
    pub alarmnet_callback_url: Option<Endpoint>,
}

/// What [`crate::store::ConnectionStore::update_connection_as`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionUpdate {
    pub connection: Connection,
    /// The endpoint moved to another scheme, host or port, and the
    /// credentials stored for the old one were deleted.
    pub credentials_dropped: bool,
}

impl ConnectionChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Whose upstream credential a stored credential is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialOwner {
    Dealer,
    User(UserId),
}

/// An upstream credential as stored (the password decrypted only in memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub username: String,
    pub password: crate::Secret,
    pub updated_at: DateTime<Utc>,
    /// The connection's endpoint, read in the same statement as the
    /// credential: a move to another server drops the credential, so this is
    /// the only origin it may be sent to.
    pub endpoint: Endpoint,
}

impl Connection {
    /// Which stored credential a call by `user` must use.
    pub fn credential_owner_for(&self, user: &UserId) -> CredentialOwner {
        match self.auth_mode {
            AuthMode::Dealer => CredentialOwner::Dealer,
            AuthMode::User => CredentialOwner::User(user.clone()),
        }
    }
}

/// The Basic credentials Stages uses to call this service back for one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundCredential {
    pub username: String,
    pub secret: crate::Secret,
    pub rotated_at: DateTime<Utc>,
}

/// What unit tests start from: dealer `d`'s active Stages connection
/// "Stages", in dealer auth mode.
#[cfg(test)]
pub(crate) fn test_connection() -> Connection {
    let now = Utc::now();
    Connection {
        id: ConnectionId::new(),
        dealer: DealerId("d".into()),
        name: ConnectionName::parse("Stages").unwrap(),
        provider: ProviderKind::Stages,
        endpoint: Endpoint::parse("http://h").unwrap(),
        auth_mode: AuthMode::Dealer,
        auto_sync: true,
        conflict_policy: ConflictPolicy::Hold,
        status: ConnectionStatus::Active,
        settings: ProviderSettings::default(),
        migrate_on_connect: true,
        migration: None,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        let e = |s: &str| Endpoint::parse(s).unwrap();
        let base = e("https://stages.example.com/api");
        for same in [
            "https://stages.example.com/",
            "https://STAGES.example.com:443/v2/",
            "https://stages.example.com/api/../other",
        ] {
            assert!(base.same_origin(&e(same)), "{same}");
        }
        for other in [
            "http://stages.example.com/api",
            "https://stages.example.com:8443/api",
            "https://stages.example.com.evil.net/api",
            "https://127.0.0.1/api",
        ] {
            assert!(!base.same_origin(&e(other)), "{other}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ConnectionName::parse("  Rapid ").unwrap().as_str(), "Rapid");
        assert!(ConnectionName::parse("   ").is_err());
        assert!(ConnectionName::parse(&"x".repeat(101)).is_err());
        assert!(ConnectionName::parse(&"é".repeat(100)).is_ok());
        assert!(ConnectionName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert!(Endpoint::parse("https://stages.example.com/").is_ok());
        assert!(Endpoint::parse("http://127.0.0.1:9000").is_ok());
        for bad in [
            "",
            "not a url",
            "ftp://host/",
            "https://user:pw@host/",
            "https://host/?a=1",
            "mailto:someone@example.com",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn providers_round_trip_by_name() {
        for p in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(p.as_str()), Some(p));
            assert!(!p.describe().credential_fields.is_empty());
        }
        assert_eq!(ProviderKind::parse("nope"), None);
    }

    #[test]
    fn user_mode_uses_the_callers_own_credential() {
        let mut c = test_connection();
        let u = UserId("u1".into());
        assert_eq!(c.credential_owner_for(&u), CredentialOwner::Dealer);
        c.auth_mode = AuthMode::User;
        assert_eq!(c.credential_owner_for(&u), CredentialOwner::User(u.clone()));
    }
}
