//! The customer wizard (B12): billing records made from a Stages site and
//! linked, or made and pushed to Stages, in one all-or-nothing request.

use actix_web::{web, HttpResponse};
use domain::linking::StagesSiteExtras;
use domain::stages::{NewStagesConfiguration, NewStagesContact, StagesDeviceFields};
use domain::tenancy::Role;
use domain::validation::ValidationError;
use domain::wizard::{self, NewDevice, WizardCustomer, WizardOutcome, WizardPull, WizardPush};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{connection_id, JsonBody};
use crate::problem::ApiResult;
use crate::routes::billing::{customer_fields, site_fields, PutCustomerRequest, PutSiteRequest};
use crate::routes::links::billing_id;
use crate::routes::stages::{ConfigurationBody, ContactBody, DeviceFieldsBody, SiteExtrasBody};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/connections/{connection_id}/wizard:pull",
        web::post().to(pull),
    )
    .route(
        "/connections/{connection_id}/wizard:push",
        web::post().to(push),
    );
}

/// Exactly one of `customer_id` (an existing billing customer) or
/// `new_customer` (made by the wizard, with the fields of a customer PUT).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WizardCustomerBody {
    pub customer_id: Option<String>,
    pub new_customer: Option<PutCustomerRequest>,
}

/// A device to make in Stages, with its zones. Its billing system takes the
/// transmitter code as system number and the device type as panel type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceBody {
    /// The device fields; `transmitter_code` is required.
    pub device: DeviceFieldsBody,
    #[serde(default)]
    pub configurations: Vec<ConfigurationBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WizardPullBody {
    /// The Stages site to take; it must not be linked on this connection.
    pub site_no: String,
    pub customer: WizardCustomerBody,
    /// The site's devices to take, each becoming a billing system; left out,
    /// every device of the site.
    pub device_ids: Option<Vec<String>>,
    /// Devices to make in Stages at the site, each with its billing system.
    #[serde(default)]
    pub new_devices: Vec<NewDeviceBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WizardPushBody {
    pub customer: WizardCustomerBody,
    /// The billing site (its `customer_id` is left out: it is the wizard's customer).
    pub site: PutSiteRequest,
    /// The Stages-only site fields, checked against the central station's lists.
    pub stages_site: Option<SiteExtrasBody>,
    #[serde(default)]
    pub contacts: Vec<ContactBody>,
    /// The systems, each made in billing and sent to Stages as a device.
    #[serde(default)]
    pub systems: Vec<NewDeviceBody>,
}

/// How a system's device came to be.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WizardDeviceDto {
    /// A device the Stages site had.
    Existing,
    /// Made in Stages by this request.
    Created,
    /// Made by an earlier attempt that failed later, found and taken.
    Reused,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WizardSystemResponse {
    pub system_id: String,
    pub device_id: String,
    pub link_id: Uuid,
    pub device: WizardDeviceDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WizardResponse {
    pub customer_id: String,
    pub customer_created: bool,
    pub site_id: String,
    pub site_no: String,
    pub site_link_id: Uuid,
    pub systems: Vec<WizardSystemResponse>,
}

impl From<WizardOutcome> for WizardResponse {
    fn from(o: WizardOutcome) -> Self {
        Self {
            customer_id: o.customer_id,
            customer_created: o.customer_created,
            site_id: o.site_id,
            site_no: o.site_no,
            site_link_id: o.site_link_id.0,
            systems: o
                .systems
                .into_iter()
                .map(|s| WizardSystemResponse {
                    system_id: s.system_id,
                    device_id: s.device_id,
                    link_id: s.link_id.0,
                    device: match s.device {
                        "existing" => WizardDeviceDto::Existing,
                        "reused" => WizardDeviceDto::Reused,
                        _ => WizardDeviceDto::Created,
                    },
                })
                .collect(),
        }
    }
}

fn customer(v: &mut ValidationError, b: WizardCustomerBody) -> Option<WizardCustomer> {
    match (b.customer_id, b.new_customer) {
        (Some(id), None) => {
            billing_id(v, "customer.customer_id", &id).map(WizardCustomer::Existing)
        }
        (None, Some(new)) => match customer_fields(new) {
            Ok(fields) => Some(WizardCustomer::New(Box::new(fields))),
            Err(e) => {
                v.errors.extend(e.prefixed("customer.new_customer.").errors);
                None
            }
        },
        _ => {
            v.push(
                "customer",
                "give exactly one of customer_id or new_customer",
            );
            None
        }
    }
}

fn new_devices(devices: Vec<NewDeviceBody>) -> Vec<NewDevice> {
    devices
        .into_iter()
        .map(|d| NewDevice {
            device: StagesDeviceFields::from(d.device),
            configurations: d
                .configurations
                .into_iter()
                .map(NewStagesConfiguration::from)
                .collect(),
        })
        .collect()
}

/// Take a Stages site into new billing records.
///
/// The customer wizard's pull: makes a billing site from the Stages site and a billing system
/// from each of its devices (all, or those in `device_ids`), under an existing billing customer
/// or a new one, makes the `new_devices` in Stages at that site, and links everything, with the
/// billing ids written into Stages. All or nothing: a failure at any step takes back what the
/// steps before it did, in Stages and in billing. New devices are made last, since Stages cannot
/// delete them; one made by an attempt that failed later is found by its transmitter code and
/// taken, never made twice.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/wizard:pull", tag = "links", operation_id = "wizard_pull", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    request_body = WizardPullBody,
    responses((status = 201, description = "Made and linked", body = WizardResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The site (or a device) is linked already", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn pull(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    body: JsonBody<WizardPullBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let cid = connection_id(&path)?;
    let b = body.0;
    let mut v = ValidationError::default();
    let customer = customer(&mut v, b.customer);
    v.into_result()?;
    let request = WizardPull {
        site_no: b.site_no,
        customer: customer.expect("checked"),
        device_ids: b.device_ids,
        new_devices: new_devices(b.new_devices),
    };
    let outcome = wizard::pull(state.linking(), caller, cid, request).await?;
    Ok(HttpResponse::Created().json(WizardResponse::from(outcome)))
}

/// Make billing records and push them to Stages.
///
/// The customer wizard's push: makes the billing customer (or uses an existing one), the site
/// and its systems, sends them to Stages as a new site with its devices, contacts and zones,
/// and links them. Everything is checked (fields, the central station's lists) before anything
/// is written; if Stages refuses or fails, the billing records are taken back, and Stages,
/// which stores a new site whole or not at all, holds nothing either.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/wizard:push", tag = "links", operation_id = "wizard_push", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    request_body = WizardPushBody,
    responses((status = 201, description = "Made, pushed and linked", body = WizardResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn push(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    body: JsonBody<WizardPushBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let cid = connection_id(&path)?;
    let b = body.0;
    let mut v = ValidationError::default();
    let customer = customer(&mut v, b.customer);
    if b.site.customer_id.is_some() {
        v.push(
            "site.customer_id",
            "the site goes under the wizard's customer; leave this out",
        );
    }
    let site = match site_fields(b.site) {
        Ok(site) => Some(site),
        Err(e) => {
            v.errors.extend(e.prefixed("site.").errors);
            None
        }
    };
    v.into_result()?;
    let request = WizardPush {
        customer: customer.expect("checked"),
        site: site.expect("checked"),
        extras: b
            .stages_site
            .map(StagesSiteExtras::from)
            .unwrap_or_default(),
        contacts: b.contacts.into_iter().map(NewStagesContact::from).collect(),
        systems: new_devices(b.systems),
    };
    let outcome = wizard::push(state.linking(), caller, cid, request).await?;
    Ok(HttpResponse::Created().json(WizardResponse::from(outcome)))
}
