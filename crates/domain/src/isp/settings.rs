//! The settings of a provider entry (I1 default service plan, I2 Alarm.net
//! callback URL, I4 billing notifications, I5 Builder Program flag): a partial
//! change, each changed field checked against the provider before it is kept.

use super::{missing_billing_permission, missing_builder_permission};
use super::{not_alarm_com, provider_error};
use crate::adc::{AdcConnector, AdcPackageId};
use crate::connection::{Connection, Endpoint, ProviderKind, ProviderSettings};
use crate::operations::OperationError;
use crate::store::ConnectionStore;
use crate::upstream::{adc_client, ActingAs};
use crate::validation::ValidationError;

/// A partial change of `ProviderSettings`; `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderSettingsPatch {
    pub default_service_plan: Option<Option<AdcPackageId>>,
    pub builder_program: Option<bool>,
    pub billing_notifications: Option<bool>,
    pub alarmnet_callback_url: Option<Option<Endpoint>>,
}

impl ProviderSettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Providers whose callbacks come through Alarm.net (the Honeywell-based ones).
pub fn uses_alarmnet_callbacks(provider: ProviderKind) -> bool {
    provider == ProviderKind::TotalConnect
}

/// The settings `patch` leads to, after checking each changed field against
/// the provider: a default plan must be one of the provider's plans, and the
/// Builder Program and billing notifications are turned on only when the
/// provider login holds the permission they need.
pub async fn settings_after(
    connections: &dyn ConnectionStore,
    adc: &dyn AdcConnector,
    connection: &Connection,
    patch: &ProviderSettingsPatch,
) -> Result<ProviderSettings, OperationError> {
    let mut next = connection.settings.clone();
    let needs_alarm_com = matches!(patch.default_service_plan, Some(Some(_)))
        || patch.builder_program == Some(true)
        || patch.billing_notifications == Some(true);
    if needs_alarm_com && connection.provider != ProviderKind::AlarmCom {
        return Err(not_alarm_com(
            connection,
            "a default service plan, the Builder Program or billing notifications",
        ));
    }
    if matches!(patch.alarmnet_callback_url, Some(Some(_)))
        && !uses_alarmnet_callbacks(connection.provider)
    {
        return Err(OperationError::WrongProvider(format!(
            "connection '{}' is a {} connection; Alarm.net callbacks are for the Honeywell-based providers (total_connect)",
            connection.name.as_str(),
            connection.provider.as_str()
        )));
    }
    if needs_alarm_com {
        let api = adc_client(connections, adc, ActingAs::Dealer, connection).await?;
        if let Some(Some(plan)) = patch.default_service_plan {
            let plans = api
                .service_plans()
                .await
                .map_err(|e| provider_error(connection, e))?;
            if !plans.iter().any(|p| p.package_id == plan) {
                let known = plans
                    .iter()
                    .map(|p| format!("{} ({})", p.package_id, p.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ValidationError::field(
                    "settings.default_service_plan",
                    format!("{plan} is not one of the provider's service plans: {known}"),
                )
                .into());
            }
        }
        if patch.builder_program == Some(true) || patch.billing_notifications == Some(true) {
            let permissions = api
                .permissions()
                .await
                .map_err(|e| provider_error(connection, e))?;
            if patch.builder_program == Some(true) && !permissions.builder_program {
                return Err(missing_builder_permission(connection));
            }
            if patch.billing_notifications == Some(true) && !permissions.billing {
                return Err(missing_billing_permission(connection));
            }
        }
    }
    if let Some(plan) = patch.default_service_plan {
        next.default_service_plan = plan;
    }
    if let Some(on) = patch.builder_program {
        next.builder_program = on;
    }
    if let Some(on) = patch.billing_notifications {
        next.billing_notifications = on;
    }
    if let Some(url) = &patch.alarmnet_callback_url {
        next.alarmnet_callback_url = url.clone();
    }
    Ok(next)
}
