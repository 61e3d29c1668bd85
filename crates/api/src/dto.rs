//! API-side mirrors of domain enums, so the OpenAPI document lists their
//! values while `domain` stays free of the documentation crate.

use domain::connection::{
    AuthMode, ConflictPolicy, ConnectionStatus, ProviderCategory, ProviderKind,
};
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
    /// The result of a connection test.
    TestOutcomeDto <=> TestOutcome { Ok, MissingCredentials, BadCredentials, Unreachable, Timeout, RateLimited, BadAnswer, NotVerified, EgressRefused }
);
