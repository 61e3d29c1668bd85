//! API-side mirrors of domain enums, so the OpenAPI document lists their
//! values while `domain` stays free of the documentation crate.

use domain::connection::{
    AuthMode, ConflictPolicy, ConnectionStatus, ProviderCategory, ProviderKind,
};
use domain::linking::PushAction as DomainPushAction;
use domain::migration::MigrationState;
use domain::operations::TestOutcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! mirror_enum {
    ($(#[$meta:meta])* $dto:ident <=> $domain:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $dto { $($variant),+ }

        impl From<$domain> for $dto {
            fn from(v: $domain) -> Self {
                match v { $($domain::$variant => Self::$variant),+ }
            }
        }

        impl From<$dto> for $domain {
            fn from(v: $dto) -> Self {
                match v { $($dto::$variant => Self::$variant),+ }
            }
        }
    };
}

mirror_enum!(
    /// An upstream system the service can talk to.
    ProviderDto <=> ProviderKind { Stages, AlarmCom, TotalConnect, BrinksHome }
);
mirror_enum!(ProviderCategoryDto <=> ProviderCategory { CentralStation, InteractiveServices });
mirror_enum!(
    /// `dealer`: one credential for the dealer; `user`: each user stores their own.
    AuthModeDto <=> AuthMode { Dealer, User }
);
mirror_enum!(ConnectionStatusDto <=> ConnectionStatus { Active, Inactive });
mirror_enum!(
    /// How a field changed on both sides since the last sync is settled:
    /// `hold` (the default: neither side changes, the conflict waits in
    /// `GET /v1/conflicts`), `billing_wins`, `stages_wins`, or `newest_wins`
    /// (the side whose record changed last; held when Stages' time is not known).
    ConflictPolicyDto <=> ConflictPolicy { Hold, BillingWins, StagesWins, NewestWins }
);
mirror_enum!(
    /// Where a Stages connection's automatic migration (S20) stands:
    /// `pending` (on; the connection has not worked yet), `queued`,
    /// `running`, `done`, `failed` (failed, dead or cancelled: the next
    /// credential set that works, or the next passing `:test`, queues it
    /// again), or `off` (`migrate_on_connect` is false and none was queued).
    MigrationStateDto <=> MigrationState { Pending, Queued, Running, Done, Failed, Off }
);
mirror_enum!(
    /// What a push did with one record: `created` in Stages, `reused` (an
    /// existing Stages record of the same billing id was linked),
    /// `already_linked` (nothing to do), or, in a dry run, `would_create`.
    PushAction <=> DomainPushAction { Created, Reused, AlreadyLinked, WouldCreate }
);
mirror_enum!(
    /// The result of a connection test.
    TestOutcomeDto <=> TestOutcome { Ok, MissingCredentials, BadCredentials, Unreachable, Timeout, RateLimited, BadAnswer, NotVerified, EgressRefused }
);

// Closed sets of values that travel as plain strings: these types only give
// the OpenAPI document their values (`#[schema(value_type = ...)]`); what is
// accepted and answered on the wire is the string itself. Unit tests keep
// each in step with the values the code can produce.

/// The kind of a background job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    AutoSyncPush,
    StagesCallback,
    Reconcile,
    AdcImport,
    WebhookDelivery,
    /// The items of a batch (B7).
    Batch,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        Self::AutoSyncPush,
        Self::StagesCallback,
        Self::Reconcile,
        Self::AdcImport,
        Self::WebhookDelivery,
        Self::Batch,
    ];
}

/// A choice list of the central station.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LookupListName {
    Regions,
    TimeZones,
    SiteTypes,
    DispatchTypes,
    UlCodes,
    Authorities,
    OosCategories,
    DeviceTypes,
    TimerTestTypes,
    CommTypes,
    LidTypes,
}

impl LookupListName {
    pub const ALL: [LookupListName; 11] = [
        Self::Regions,
        Self::TimeZones,
        Self::SiteTypes,
        Self::DispatchTypes,
        Self::UlCodes,
        Self::Authorities,
        Self::OosCategories,
        Self::DeviceTypes,
        Self::TimerTestTypes,
        Self::CommTypes,
        Self::LidTypes,
    ];
}

/// What became of a callback: `accepted` (stored now, applied shortly) or
/// `duplicate` (its event id was received before; ignored).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Accepted,
    Duplicate,
}

/// A `site.send_to_billing` callback's outcome: the billing records were made.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SentToBillingStatus {
    Created,
}

/// The kind of a contact's phone number, as Stages takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhoneKind {
    Home,
    Work,
    Mobile,
    Other,
}

impl PhoneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Home => "home",
            Self::Work => "work",
            Self::Mobile => "mobile",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(v: impl Serialize) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_job_kinds_are_the_registered_ones() {
        let mut registered = crate::worker::registry().kinds();
        registered.sort();
        let mut documented: Vec<String> = JobKind::ALL.into_iter().map(wire).collect();
        documented.sort();
        assert_eq!(documented, registered, "update dto::JobKind");
    }

    #[test]
    fn the_lookup_lists_are_the_domain_ones() {
        let domain: Vec<&str> = domain::stages::LookupList::ALL
            .iter()
            .map(|l| l.as_str())
            .collect();
        let documented: Vec<String> = LookupListName::ALL.into_iter().map(wire).collect();
        assert_eq!(documented, domain);
    }

    #[test]
    fn the_documented_answers_are_the_ones_made() {
        // The strings the handlers and the domain write.
        for v in [
            DomainPushAction::Created,
            DomainPushAction::Reused,
            DomainPushAction::AlreadyLinked,
            DomainPushAction::WouldCreate,
        ] {
            assert_eq!(wire(PushAction::from(v)), wire(v));
        }
        assert_eq!(wire(ReceiptStatus::Accepted), "accepted");
        assert_eq!(wire(ReceiptStatus::Duplicate), "duplicate");
        assert_eq!(wire(SentToBillingStatus::Created), "created");
    }

    #[test]
    fn phone_kinds_travel_as_their_names() {
        for kind in [
            PhoneKind::Home,
            PhoneKind::Work,
            PhoneKind::Mobile,
            PhoneKind::Other,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!(serde_json::from_value::<PhoneKind>("cell".into()).is_err());
    }
}
