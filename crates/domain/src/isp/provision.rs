//! Provisioning an ISP account (I3, I5): creating a customer, or a Builder
//! Program customer or commitment, at Alarm.com for a billing customer, or
//! linking one that exists, and recording it. Never two accounts for one
//! billing customer on one connection: the account is reserved before the
//! provider is called, and a create whose answer was lost is found again by
//! the billing id it carries.

use chrono::Utc;

use super::builder_programs::programs_of;
use super::{
    check_builder_program, completed_from, missing_builder_permission, not_alarm_com, not_found_as,
    pending_timeout, provider_error, require_active, CompletedIspAccount, IspAccount, IspAccountId,
    IspAccountKind, IspAccountOrigin, IspPorts, NewIspAccount,
};
use crate::adc::{
    AdcAccountAddress, AdcAddress, AdcApi, AdcCentralStationInfo, AdcCustomer, AdcCustomerId,
    AdcCustomerQuery, AdcError, AdcPackageId, NewAdcCommitment, NewAdcCustomer,
};
use crate::billing::{BillingCustomer, BillingId, BillingSite, CustomerKind};
use crate::connection::{Connection, ConnectionId, ProviderKind};
use crate::operations::OperationError;
use crate::store::StoreError;
use crate::tenancy::{Caller, DealerId};
use crate::upstream::{adc_client, ActingAs};
use crate::validation::ValidationError;

/// What to do for a billing customer at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionAction {
    /// A new customer account; a Builder Program customer when
    /// `builder_program_id` is given.
    CreateCustomer {
        builder_program_id: Option<i64>,
        login_name: Option<String>,
    },
    /// A Builder Program commitment.
    CreateCommitment { builder_program_id: i64 },
    /// An account that exists already.
    Link { customer_id: AdcCustomerId },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    pub billing_customer_id: BillingId,
    /// The site whose address is the installation address (the customer's own otherwise).
    pub site_id: Option<BillingId>,
    /// Else the connection's default service plan.
    pub package_id: Option<AdcPackageId>,
    pub panel_type: String,
    pub modem_serial_number: String,
    pub action: ProvisionAction,
}

/// An installation address from a billing site or customer.
fn address_of(address1: &str, address2: &str, city: &str, state: &str, zip: &str) -> AdcAddress {
    AdcAddress {
        street1: address1.to_owned(),
        street2: address2.to_owned(),
        city: city.to_owned(),
        state: state.to_owned(),
        zip: zip.to_owned(),
        country_id: String::new(),
    }
}

/// The provider account a billing customer (and the site it is installed at) maps to.
pub fn new_adc_customer(
    customer: &BillingCustomer,
    site: Option<&BillingSite>,
    package_id: AdcPackageId,
    login_name: &str,
    builder_program_id: Option<i64>,
) -> NewAdcCustomer {
    let f = &customer.fields;
    let own = address_of(&f.address1, &f.address2, &f.city, &f.state, &f.zip);
    let installation = match site {
        Some(s) => {
            let s = &s.fields;
            address_of(&s.address1, &s.address2, &s.city, &s.state, &s.zip)
        }
        None => own.clone(),
    };
    NewAdcCustomer {
        account_address: AdcAccountAddress {
            first_name: f.first_name.clone(),
            last_name: f.last_name.clone(),
            company_name: match f.kind {
                CustomerKind::Business => f.business_name.clone(),
                CustomerKind::Person => String::new(),
            },
            phone: f.phone.clone(),
            address: own,
        },
        email: f.email.clone(),
        phone: f.phone.clone(),
        dealer_customer_id: customer.id.as_str().to_owned(),
        desired_login_name: login_name.to_owned(),
        installation_address: installation,
        // The fields the import maps the other way: where the panel reports,
        // and the two-way voice service billing sells.
        central_station: AdcCentralStationInfo {
            account_number: f.account_number.trim().to_owned(),
            receiver_number: f.receiver_number.trim().to_owned(),
        },
        add_on_features: add_ons_of(customer),
        package_id: Some(package_id),
        builder_program_id,
        ..NewAdcCustomer::default()
    }
}

/// The add-on features a billing customer's fields call for.
pub fn add_ons_of(customer: &BillingCustomer) -> Vec<String> {
    let mut add_ons = Vec::new();
    if customer.fields.two_way_voice {
        add_ons.push(crate::adc::TWO_WAY_VOICE.to_owned());
    }
    add_ons
}

/// A login name ADC would take: what was asked, else the customer's email.
fn login_name_for(
    asked: Option<&str>,
    customer: &BillingCustomer,
) -> Result<String, ValidationError> {
    let name = asked
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(customer.fields.email.trim());
    if name.is_empty() {
        return Err(ValidationError::field(
            "login_name",
            "give the customer's Alarm.com login name (the billing customer has no email to use)",
        ));
    }
    if name.chars().count() > 100 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::field(
            "login_name",
            "must be 1 to 100 characters without spaces",
        ));
    }
    Ok(name.to_owned())
}

/// Creates a customer or a commitment at the provider for a billing customer,
/// or links one that exists, and records the account. Never two accounts for
/// one billing customer on one connection: the account is reserved before the
/// provider is called, and a create whose answer was lost is found again by
/// the billing id it carries.
pub async fn provision(
    ports: &IspPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    request: ProvisionRequest,
) -> Result<IspAccount, OperationError> {
    let dealer = &caller.dealer;
    let connection = provisioning_connection(ports, dealer, connection_id).await?;
    let (customer, site) = customer_and_site(ports, dealer, &request).await?;
    let asked = Provisioning::of(&request, &connection, &customer)?;
    let api = adc_client(ports.connections, ports.adc, ActingAs::Dealer, &connection).await?;
    if let Some(program) = asked.builder_program_id {
        builder_program_allowed(ports, &connection, api.as_ref(), program).await?;
    }
    let reserved = reserve(ports, caller, connection_id, &customer, &request, &asked).await?;
    let made = provision_reserved(
        api.as_ref(),
        &connection,
        &customer,
        site.as_ref(),
        &request,
        &asked,
    )
    .await;
    let done = match made {
        Ok(done) => done,
        Err(e) => {
            // Nothing to keep; a create that did land is recovered next time.
            if let Err(release) = ports
                .accounts
                .release_isp_account(dealer, reserved.id)
                .await
            {
                tracing::warn!(error = %release, account = %reserved.id, "could not release an ISP account reservation");
            }
            return Err(e);
        }
    };
    complete(ports, dealer, connection_id, reserved.id, done).await
}

/// The connection to provision on: an active Alarm.com one.
async fn provisioning_connection(
    ports: &IspPorts<'_>,
    dealer: &DealerId,
    connection_id: ConnectionId,
) -> Result<Connection, OperationError> {
    let connection = ports
        .connections
        .connection(dealer, connection_id)
        .await
        .map_err(not_found_as("no such connection".into()))?;
    if connection.provider != ProviderKind::AlarmCom {
        return Err(not_alarm_com(
            &connection,
            "creating or linking ISP accounts",
        ));
    }
    require_active(&connection)?;
    Ok(connection)
}

/// The billing customer of the request, and the site it names, which must be
/// one of that customer's.
async fn customer_and_site(
    ports: &IspPorts<'_>,
    dealer: &DealerId,
    request: &ProvisionRequest,
) -> Result<(BillingCustomer, Option<BillingSite>), OperationError> {
    let customer = ports
        .billing
        .customer(dealer, &request.billing_customer_id)
        .await
        .map_err(|e| -> OperationError {
            match e {
                StoreError::NotFound => ValidationError::field(
                    "billing_customer_id",
                    format!("no billing customer '{}'", request.billing_customer_id),
                )
                .into(),
                other => other.into(),
            }
        })?;
    let site = match &request.site_id {
        None => None,
        Some(id) => {
            let site = ports.billing.site(dealer, id).await.map_err(|e| match e {
                StoreError::NotFound => {
                    ValidationError::field("site_id", format!("no billing site '{id}'")).into()
                }
                other => OperationError::from(other),
            })?;
            if site.fields.customer_id.as_ref() != Some(&customer.id) {
                return Err(ValidationError::field(
                    "site_id",
                    format!("site '{id}' does not belong to customer '{}'", customer.id),
                )
                .into());
            }
            Some(site)
        }
    };
    Ok((customer, site))
}

/// What a request asks the provider for, worked out before it is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Provisioning {
    builder_program_id: Option<i64>,
    /// The plan of a new account (none when linking).
    package_id: Option<AdcPackageId>,
    /// The login of a new customer (empty otherwise).
    login_name: String,
}

impl Provisioning {
    fn of(
        request: &ProvisionRequest,
        connection: &Connection,
        customer: &BillingCustomer,
    ) -> Result<Self, OperationError> {
        let builder_program_id = match &request.action {
            ProvisionAction::CreateCustomer {
                builder_program_id, ..
            } => *builder_program_id,
            ProvisionAction::CreateCommitment { builder_program_id } => Some(*builder_program_id),
            ProvisionAction::Link { .. } => None,
        };
        let package_id = match request.action {
            ProvisionAction::Link { .. } => None,
            _ => Some(
                request
                    .package_id
                    .or(connection.settings.default_service_plan)
                    .ok_or_else(|| {
                        ValidationError::field(
                            "package_id",
                            "give a package_id, or have an admin set the connection's default service plan",
                        )
                    })?,
            ),
        };
        let login_name = match &request.action {
            ProvisionAction::CreateCustomer { login_name, .. } => {
                login_name_for(login_name.as_deref(), customer)?
            }
            _ => String::new(),
        };
        Ok(Self {
            builder_program_id,
            package_id,
            login_name,
        })
    }
}

/// A Builder Program account needs the program turned on for the connection,
/// the permission at Alarm.com, and a program the account has.
async fn builder_program_allowed(
    ports: &IspPorts<'_>,
    connection: &Connection,
    api: &dyn AdcApi,
    program: i64,
) -> Result<(), OperationError> {
    if !connection.settings.builder_program {
        return Err(OperationError::Conflict {
            code: "builder_program_off",
            message: format!(
                "the Builder Program is not turned on for connection '{}'; an admin sets settings.builder_program",
                connection.name.as_str()
            ),
        });
    }
    let permissions = api
        .permissions()
        .await
        .map_err(|e| provider_error(connection, e))?;
    if !permissions.builder_program {
        return Err(missing_builder_permission(connection));
    }
    let programs = programs_of(ports, connection, api).await?;
    check_builder_program(program, &programs)?;
    Ok(())
}

/// The account reserved before the provider is called; `isp_account_exists`
/// when the billing customer has one on the connection.
async fn reserve(
    ports: &IspPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    customer: &BillingCustomer,
    request: &ProvisionRequest,
    asked: &Provisioning,
) -> Result<IspAccount, OperationError> {
    let kind = match request.action {
        ProvisionAction::CreateCommitment { .. } => IspAccountKind::Commitment,
        _ => IspAccountKind::Customer,
    };
    ports
        .accounts
        .reserve_isp_account(
            &caller.dealer,
            NewIspAccount {
                id: IspAccountId::new(),
                connection_id,
                billing_customer_id: customer.id.clone(),
                kind,
                origin: match request.action {
                    ProvisionAction::Link { .. } => IspAccountOrigin::Linked,
                    _ => IspAccountOrigin::Created,
                },
                builder_program_id: asked.builder_program_id,
                created_by: caller.user.0.clone(),
            },
            Utc::now() - pending_timeout(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(message) => OperationError::Conflict {
                code: "isp_account_exists",
                message,
            },
            other => other.into(),
        })
}

/// Records what the provider made of the reservation; a failure drops the
/// reservation (`isp_account_exists` when the provider account is linked to
/// another billing customer).
async fn complete(
    ports: &IspPorts<'_>,
    dealer: &DealerId,
    connection_id: ConnectionId,
    id: IspAccountId,
    done: CompletedIspAccount,
) -> Result<IspAccount, OperationError> {
    match ports.accounts.complete_isp_account(dealer, id, done).await {
        Ok(account) => {
            tracing::info!(account = %account.id, connection = %connection_id, external_id = ?account.external_id, origin = account.origin.as_str(), "ISP account recorded");
            Ok(account)
        }
        Err(e) => {
            let _ = ports.accounts.release_isp_account(dealer, id).await;
            Err(match e {
                StoreError::Conflict(message) => OperationError::Conflict {
                    code: "isp_account_exists",
                    message,
                },
                other => other.into(),
            })
        }
    }
}

/// An account ADC already holds for this billing customer (its `DealerCustomerId`).
async fn existing_for_billing_id(
    api: &dyn AdcApi,
    connection: &Connection,
    billing_id: &BillingId,
) -> Result<Option<AdcCustomer>, OperationError> {
    let ids = api
        .customer_ids(&AdcCustomerQuery {
            alternate_id: Some(billing_id.as_str().to_owned()),
            ..AdcCustomerQuery::default()
        })
        .await
        .map_err(|e| provider_error(connection, e))?;
    for id in ids.into_iter().take(5) {
        let customer = api
            .customer(id)
            .await
            .map_err(|e| provider_error(connection, e))?;
        if customer.dealer_customer_id == billing_id.as_str() && !customer.is_terminated {
            return Ok(Some(customer));
        }
    }
    Ok(None)
}

/// Asks the provider for what the reserved account is to be: the existing
/// account to link, one an earlier create made, or a new one.
async fn provision_reserved(
    api: &dyn AdcApi,
    connection: &Connection,
    customer: &BillingCustomer,
    site: Option<&BillingSite>,
    request: &ProvisionRequest,
    asked: &Provisioning,
) -> Result<CompletedIspAccount, OperationError> {
    let (package_id, login_name, builder_program_id) = (
        asked.package_id,
        asked.login_name.as_str(),
        asked.builder_program_id,
    );
    if let ProvisionAction::Link { customer_id } = request.action {
        let found = api.customer(customer_id).await.map_err(|e| match e {
            AdcError::NotFound(_) => ValidationError::field(
                "customer_id",
                format!("Alarm.com has no customer {customer_id}"),
            )
            .into(),
            other => provider_error(connection, other),
        })?;
        if found.is_terminated {
            return Err(ValidationError::field(
                "customer_id",
                format!("Alarm.com customer {customer_id} is terminated"),
            )
            .into());
        }
        return Ok(completed_from(&found, IspAccountOrigin::Linked));
    }
    if let Some(existing) = existing_for_billing_id(api, connection, &customer.id).await? {
        return Ok(completed_from(&existing, IspAccountOrigin::Recovered));
    }
    let package_id = package_id.unwrap_or(AdcPackageId(0));
    let mut new = new_adc_customer(customer, site, package_id, login_name, builder_program_id);
    new.panel_type = request.panel_type.clone();
    new.modem_serial_number = request.modem_serial_number.clone();
    match request.action {
        ProvisionAction::CreateCommitment { builder_program_id } => {
            new.desired_login_name.clear();
            let made = api
                .create_commitment(&NewAdcCommitment {
                    builder_program_id,
                    customer: new,
                })
                .await
                .map_err(|e| provider_error(connection, e))?;
            Ok(CompletedIspAccount {
                external_id: made.customer_id.to_string(),
                kind: IspAccountKind::Commitment,
                origin: IspAccountOrigin::Created,
                builder_program_id: Some(builder_program_id),
                commitment_id: made.commitment_id,
                package_id: Some(package_id),
                login_name: String::new(),
            })
        }
        _ => {
            let id = api
                .create_customer(&new)
                .await
                .map_err(|e| provider_error(connection, e))?;
            Ok(CompletedIspAccount {
                external_id: id.to_string(),
                kind: IspAccountKind::Customer,
                origin: IspAccountOrigin::Created,
                builder_program_id,
                commitment_id: None,
                package_id: Some(package_id),
                login_name: login_name.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::{BillingRecord, CustomerFields, SiteFields};

    fn customer() -> BillingCustomer {
        BillingRecord {
            id: BillingId::parse("C-1").unwrap(),
            dealer: DealerId("d".into()),
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            fields: CustomerFields {
                kind: CustomerKind::Business,
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                business_name: "Engines Ltd".into(),
                phone: "555-0100".into(),
                email: "ada@example.com".into(),
                address1: "1 Main St".into(),
                city: "Springfield".into(),
                state: "IL".into(),
                zip: "62701".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_billing_customer_maps_onto_a_new_account() {
        let c = customer();
        let new = new_adc_customer(&c, None, AdcPackageId(3), "ada", None);
        assert_eq!(new.dealer_customer_id, "C-1");
        assert_eq!(new.account_address.company_name, "Engines Ltd");
        assert_eq!(new.account_address.address.street1, "1 Main St");
        assert_eq!(new.installation_address, new.account_address.address);
        assert_eq!(new.package_id, Some(AdcPackageId(3)));
        assert_eq!(new.desired_login_name, "ada");

        let site = BillingRecord {
            id: BillingId::parse("S-1").unwrap(),
            dealer: DealerId("d".into()),
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            fields: SiteFields {
                customer_id: Some(c.id.clone()),
                address1: "9 Lake Rd".into(),
                city: "Shelbyville".into(),
                ..Default::default()
            },
        };
        let new = new_adc_customer(&c, Some(&site), AdcPackageId(3), "ada", Some(7));
        assert_eq!(new.installation_address.street1, "9 Lake Rd");
        assert_eq!(new.account_address.address.street1, "1 Main St");
        assert_eq!(new.builder_program_id, Some(7));
    }

    #[test]
    fn login_names_default_to_the_email() {
        let mut c = customer();
        assert_eq!(login_name_for(None, &c).unwrap(), "ada@example.com");
        assert_eq!(login_name_for(Some(" ada1 "), &c).unwrap(), "ada1");
        assert!(login_name_for(Some("a b"), &c).is_err());
        c.fields.email.clear();
        assert!(login_name_for(None, &c).is_err());
    }
}
