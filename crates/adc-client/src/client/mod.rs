//! `AdcApi` over the SOAP operations of `ADC-API.md`: what each method sends
//! and how its result becomes a domain record.
//!
//! - `input`: the inputs of `CreateCustomer` and `GetCustomerList_V2`.
//! - `read`: results into customers, reps and service plans.

mod input;
mod read;

use async_trait::async_trait;
use domain::adc::*;
use domain::upstream::{CallObserver, UpstreamTarget};
use tokio::sync::OnceCell;
use upstream_http::Connector;

pub(crate) use input::customer_input;
use input::customer_list_input;
pub(crate) use read::{id_of, value_at};
use read::{read_customer, read_customer_ids, read_rep, read_service_plans};

use crate::operation::*;
use crate::transport::Transport;
use crate::unpublished;
use crate::xml::{Element, Fields, Node};

/// An ADC connection: one endpoint, one login.
///
/// Made from a [`Connector`], whose pool and rate limiter it shares.
/// It remembers ADC's `CallerVersion` and the dealer id after the first call
/// that needs them.
pub struct HttpAdcClient {
    transport: Transport,
    caller_version: OnceCell<i32>,
    dealer_id: OnceCell<i64>,
}

impl std::fmt::Debug for HttpAdcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `UpstreamTarget`'s Debug leaves the password out.
        f.debug_struct("HttpAdcClient")
            .field("target", self.target())
            .finish_non_exhaustive()
    }
}

impl HttpAdcClient {
    /// A client of `connector`'s, to `target`.
    pub fn new(connector: &Connector<dyn CallObserver>, target: UpstreamTarget) -> Self {
        Self {
            transport: Transport {
                upstream: connector.upstream(&target.key.clone(), target),
            },
            caller_version: OnceCell::new(),
            dealer_id: OnceCell::new(),
        }
    }

    pub fn target(&self) -> &UpstreamTarget {
        &self.transport.upstream.target
    }

    /// The dealer id of the login (`GetDealerId`), fetched once.
    pub async fn dealer_id(&self) -> AdcResult<i64> {
        self.dealer_id
            .get_or_try_init(|| self.fetch_dealer_id())
            .await
            .copied()
    }

    async fn fetch_dealer_id(&self) -> AdcResult<i64> {
        let result = self.transport.call(&GET_DEALER_ID, Vec::new()).await?;
        scalar(&GET_DEALER_ID, result.as_ref())
    }

    async fn caller_version(&self) -> AdcResult<i32> {
        self.caller_version
            .get_or_try_init(|| self.fetch_caller_version())
            .await
            .copied()
    }

    async fn fetch_caller_version(&self) -> AdcResult<i32> {
        let result = self
            .transport
            .call(&GET_LATEST_CALLER_VERSION, Vec::new())
            .await?;
        scalar(&GET_LATEST_CALLER_VERSION, result.as_ref())
    }
}

/// A result that is one number (`<GetDealerIdResult>123</GetDealerIdResult>`).
fn scalar<T: std::str::FromStr>(op: &Operation, result: Option<&Element>) -> AdcResult<T> {
    let text = result.and_then(Element::value).unwrap_or_default();
    text.parse().map_err(|_| {
        let text = upstream_http::excerpt(text);
        AdcError::BadAnswer(format!("{} answered {text:?}, not a number", op.name))
    })
}

#[async_trait]
impl AdcApi for HttpAdcClient {
    async fn check_credentials(&self) -> AdcResult<()> {
        // Always a call: a check must reach ADC even when the id is known.
        let dealer_id = self.fetch_dealer_id().await?;
        let _ = self.dealer_id.set(dealer_id);
        Ok(())
    }

    async fn latest_caller_version(&self) -> AdcResult<i32> {
        self.caller_version().await
    }

    async fn customer_ids(&self, query: &AdcCustomerQuery) -> AdcResult<Vec<AdcCustomerId>> {
        let result = self
            .transport
            .call(&GET_CUSTOMER_LIST_V2, customer_list_input(query))
            .await?;
        read_customer_ids(result.as_ref())
    }

    async fn customer(&self, id: AdcCustomerId) -> AdcResult<AdcCustomer> {
        let caller_version = self.caller_version().await?;
        let input = Fields::new()
            .text("CallerVersion", caller_version.to_string())
            .text("CustomerId", id.to_string());
        let body = vec![Node::parent("input", input.into_nodes())];
        let result = self.transport.call(&GET_CUSTOMER_INFO_V2, body).await?;
        read_customer(id, result.as_ref())
    }

    async fn create_customer(&self, customer: &NewAdcCustomer) -> AdcResult<AdcCustomerId> {
        let body = vec![Node::parent("input", customer_input(customer).into_nodes())];
        let result = self.transport.call(&CREATE_CUSTOMER, body).await?;
        result
            .as_ref()
            .and_then(|r| id_of(r, &["CustomerId"]))
            .filter(|id| *id > 0)
            .map(AdcCustomerId)
            .ok_or_else(|| {
                AdcError::BadAnswer("CreateCustomer succeeded without a CustomerId".into())
            })
    }

    async fn create_commitment(
        &self,
        commitment: &NewAdcCommitment,
    ) -> AdcResult<CreatedAdcCommitment> {
        let result = self
            .transport
            .call(
                &unpublished::CREATE_COMMITMENT,
                unpublished::create_commitment_body(commitment),
            )
            .await?;
        unpublished::read_created_commitment(result.as_ref())
    }

    async fn terminate_customer(&self, id: AdcCustomerId) -> AdcResult<()> {
        self.transport
            .call(
                &TERMINATE_CUSTOMER,
                unpublished::terminate_customer_body(id),
            )
            .await
            .map(drop)
    }

    async fn change_service_plan(
        &self,
        id: AdcCustomerId,
        package_id: AdcPackageId,
        add_ons: Option<&[String]>,
    ) -> AdcResult<()> {
        self.transport
            .call(
                &unpublished::CHANGE_SERVICE_PLAN,
                unpublished::change_service_plan_body(id, package_id, add_ons),
            )
            .await
            .map(drop)
    }

    async fn update_central_station_info(
        &self,
        id: AdcCustomerId,
        info: &AdcCentralStationInfo,
    ) -> AdcResult<()> {
        let input = Fields::new()
            .text("CustomerId", id.to_string())
            .text("AccountNumber", info.account_number.clone())
            .text("ReceiverNumber", info.receiver_number.clone());
        let body = vec![Node::parent("input", input.into_nodes())];
        self.transport
            .call(&UPDATE_CENTRAL_STATION_INFO_V2, body)
            .await
            .map(drop)
    }

    async fn reps(&self) -> AdcResult<Vec<AdcRep>> {
        let result = self.transport.call(&GET_REP_LIST, Vec::new()).await?;
        Ok(result
            .map(|r| r.children.iter().filter_map(read_rep).collect())
            .unwrap_or_default())
    }

    async fn service_plans(&self) -> AdcResult<Vec<ServicePlan>> {
        let dealer_id = self.dealer_id().await?;
        let caller_version = self.caller_version().await?;
        let input = Fields::new()
            .text("DealerId", dealer_id.to_string())
            .text("CallerVersion", caller_version.to_string());
        let body = vec![Node::parent("input", input.into_nodes())];
        let result = self.transport.call(&GET_PACKAGE_IDS, body).await?;
        Ok(read_service_plans(result.as_ref()))
    }

    async fn permissions(&self) -> AdcResult<AdcPermissions> {
        let result = self
            .transport
            .call(&unpublished::GET_DEALER_PERMISSIONS, Vec::new())
            .await?;
        Ok(unpublished::read_permissions(result.as_ref()))
    }

    async fn sub_dealers(&self) -> AdcResult<Vec<AdcSubDealer>> {
        let result = self
            .transport
            .call(&unpublished::GET_SUB_DEALER_LIST, Vec::new())
            .await?;
        Ok(unpublished::read_sub_dealers(result.as_ref()))
    }

    async fn roles(&self) -> AdcResult<Vec<AdcRole>> {
        let result = self
            .transport
            .call(&unpublished::GET_ROLE_LIST, Vec::new())
            .await?;
        Ok(unpublished::read_roles(result.as_ref()))
    }

    async fn builder_programs(&self) -> AdcResult<Vec<AdcBuilderProgram>> {
        let result = self
            .transport
            .call(&unpublished::GET_BUILDER_PROGRAM_LIST, Vec::new())
            .await?;
        Ok(unpublished::read_builder_programs(result.as_ref()))
    }
}
