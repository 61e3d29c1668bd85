//! `StagesApi` over the routes of `STAGES-API.md`: one method, one route.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::stages::*;
use domain::upstream::{CallObserver, UpstreamTarget};
use domain::Page;
use reqwest::Method;
use serde::Deserialize;
use upstream_http::Connector;

use crate::transport::{Request, Transport};

/// A Stages connection: one endpoint, one set of credentials.
///
/// Made from a [`Connector`], whose pool and rate limiter it shares.
pub struct HttpStagesClient {
    transport: Transport,
}

impl std::fmt::Debug for HttpStagesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `UpstreamTarget`'s Debug leaves the password out.
        f.debug_struct("HttpStagesClient")
            .field("target", self.target())
            .finish_non_exhaustive()
    }
}

/// `{"items": [...]}`, the shape of every list but the paged one.
#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(serde::Serialize)]
struct ChangeXmit<'a> {
    new_transmitter_code: &'a str,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn history_request<'a>(
    route: &'static str,
    segments: &'a [&'a str],
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Request<'a> {
    let mut req = Request::new(Method::GET, route, segments);
    if let Some(from) = from {
        req = req.query("from", rfc3339(from));
    }
    if let Some(to) = to {
        req = req.query("to", rfc3339(to));
    }
    req
}

impl HttpStagesClient {
    /// A client of `connector`'s, to `target`.
    pub fn new(connector: &Connector<dyn CallObserver>, target: UpstreamTarget) -> Self {
        Self {
            transport: Transport {
                upstream: connector.upstream(&target.key.clone(), target),
            },
        }
    }

    pub fn target(&self) -> &UpstreamTarget {
        &self.transport.upstream.target
    }

    async fn items<T: serde::de::DeserializeOwned>(
        &self,
        req: Request<'_>,
    ) -> StagesResult<Vec<T>> {
        self.transport
            .call_json::<Items<T>>(req)
            .await
            .map(|i| i.items)
    }
}

#[async_trait]
impl StagesApi for HttpStagesClient {
    async fn ping(&self) -> StagesResult<()> {
        let req = Request::new(Method::GET, "/api/v1/ping", &["ping"]);
        self.transport.call_empty(req).await
    }

    async fn lookup(&self, list: LookupList) -> StagesResult<Vec<LookupItem>> {
        let segments = ["lookups", list.as_str()];
        self.items(Request::new(
            Method::GET,
            "/api/v1/lookups/{list}",
            &segments,
        ))
        .await
    }

    async fn list_sites(&self, query: &StagesSiteQuery) -> StagesResult<Page<StagesSite>> {
        let mut req = Request::new(Method::GET, "/api/v1/sites", &["sites"]);
        if let Some(billing_id) = &query.billing_id {
            req = req.query("billing_id", billing_id.clone());
        }
        if query.unlinked {
            req = req.query("unlinked", "true");
        }
        if let Some(q) = &query.q {
            req = req.query("q", q.clone());
        }
        if let Some(token) = &query.page_token {
            req = req.query("page_token", token.clone());
        }
        if let Some(size) = query.page_size {
            req = req.query("page_size", size.to_string());
        }
        self.transport.call_json(req).await
    }

    async fn create_site(&self, site: &NewStagesSite) -> StagesResult<CreatedStagesSite> {
        let req = Request::new(Method::POST, "/api/v1/sites", &["sites"]).json(site)?;
        self.transport.call_json(req).await
    }

    async fn get_site(&self, site_no: &SiteNo) -> StagesResult<StagesSite> {
        let segments = ["sites", site_no];
        let req = Request::new(Method::GET, "/api/v1/sites/{site_no}", &segments);
        self.transport.call_json(req).await
    }

    async fn update_site(
        &self,
        site_no: &SiteNo,
        patch: &StagesSitePatch,
    ) -> StagesResult<StagesSite> {
        let segments = ["sites", site_no];
        let req = Request::new(Method::PATCH, "/api/v1/sites/{site_no}", &segments).json(patch)?;
        self.transport.call_json(req).await
    }

    async fn site_history(
        &self,
        site_no: &SiteNo,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> StagesResult<Vec<StagesHistoryEntry>> {
        let segments = ["sites", site_no, "history"];
        self.items(history_request(
            "/api/v1/sites/{site_no}/history",
            &segments,
            from,
            to,
        ))
        .await
    }

    async fn list_devices(&self, site_no: &SiteNo) -> StagesResult<Vec<StagesDevice>> {
        let segments = ["sites", site_no, "devices"];
        self.items(Request::new(
            Method::GET,
            "/api/v1/sites/{site_no}/devices",
            &segments,
        ))
        .await
    }

    async fn list_all_devices(
        &self,
        query: &StagesDeviceQuery,
    ) -> StagesResult<Page<StagesDevice>> {
        let mut req = Request::new(Method::GET, "/api/v1/devices", &["devices"]);
        if let Some(billing_id) = &query.billing_id {
            req = req.query("billing_id", billing_id.clone());
        }
        if let Some(site_no) = &query.site_no {
            req = req.query("site_no", site_no.clone());
        }
        if let Some(has) = query.has_billing_id {
            req = req.query("has_billing_id", has.to_string());
        }
        if let Some(token) = &query.page_token {
            req = req.query("page_token", token.clone());
        }
        if let Some(size) = query.page_size {
            req = req.query("page_size", size.to_string());
        }
        self.transport.call_json(req).await
    }

    async fn create_device(
        &self,
        site_no: &SiteNo,
        device: &NewStagesDevice,
    ) -> StagesResult<StagesDevice> {
        let segments = ["sites", site_no, "devices"];
        let req = Request::new(Method::POST, "/api/v1/sites/{site_no}/devices", &segments)
            .json(device)?;
        self.transport.call_json(req).await
    }

    async fn get_device(&self, device_id: &DeviceId) -> StagesResult<StagesDevice> {
        let segments = ["devices", device_id];
        let req = Request::new(Method::GET, "/api/v1/devices/{device_id}", &segments);
        self.transport.call_json(req).await
    }

    async fn update_device(
        &self,
        device_id: &DeviceId,
        patch: &StagesDevicePatch,
    ) -> StagesResult<StagesDevice> {
        let segments = ["devices", device_id];
        let req =
            Request::new(Method::PATCH, "/api/v1/devices/{device_id}", &segments).json(patch)?;
        self.transport.call_json(req).await
    }

    async fn change_transmitter_code(
        &self,
        device_id: &DeviceId,
        new_code: &TransmitterCode,
    ) -> StagesResult<StagesDevice> {
        let segments = ["devices", device_id, "change-xmit"];
        let body = ChangeXmit {
            new_transmitter_code: new_code,
        };
        let req = Request::new(
            Method::POST,
            "/api/v1/devices/{device_id}/change-xmit",
            &segments,
        )
        .json(&body)?;
        self.transport.call_json(req).await
    }

    async fn device_history(
        &self,
        device_id: &DeviceId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> StagesResult<Vec<StagesHistoryEntry>> {
        let segments = ["devices", device_id, "history"];
        self.items(history_request(
            "/api/v1/devices/{device_id}/history",
            &segments,
            from,
            to,
        ))
        .await
    }

    async fn list_configurations(
        &self,
        device_id: &DeviceId,
    ) -> StagesResult<Vec<StagesConfiguration>> {
        let segments = ["devices", device_id, "configurations"];
        self.items(Request::new(
            Method::GET,
            "/api/v1/devices/{device_id}/configurations",
            &segments,
        ))
        .await
    }

    async fn create_configuration(
        &self,
        device_id: &DeviceId,
        config: &NewStagesConfiguration,
    ) -> StagesResult<StagesConfiguration> {
        let segments = ["devices", device_id, "configurations"];
        let req = Request::new(
            Method::POST,
            "/api/v1/devices/{device_id}/configurations",
            &segments,
        )
        .json(config)?;
        self.transport.call_json(req).await
    }

    async fn update_configuration(
        &self,
        device_id: &DeviceId,
        config_id: &str,
        patch: &StagesConfigurationPatch,
    ) -> StagesResult<StagesConfiguration> {
        let segments = ["devices", device_id, "configurations", config_id];
        let req = Request::new(
            Method::PATCH,
            "/api/v1/devices/{device_id}/configurations/{config_id}",
            &segments,
        )
        .json(patch)?;
        self.transport.call_json(req).await
    }

    async fn list_contacts(&self, site_no: &SiteNo) -> StagesResult<Vec<StagesContact>> {
        let segments = ["sites", site_no, "contacts"];
        self.items(Request::new(
            Method::GET,
            "/api/v1/sites/{site_no}/contacts",
            &segments,
        ))
        .await
    }

    async fn create_contact(
        &self,
        site_no: &SiteNo,
        contact: &NewStagesContact,
    ) -> StagesResult<StagesContact> {
        let segments = ["sites", site_no, "contacts"];
        let req = Request::new(Method::POST, "/api/v1/sites/{site_no}/contacts", &segments)
            .json(contact)?;
        self.transport.call_json(req).await
    }

    async fn update_contact(
        &self,
        site_no: &SiteNo,
        contact_id: &str,
        patch: &StagesContactPatch,
    ) -> StagesResult<StagesContact> {
        let segments = ["sites", site_no, "contacts", contact_id];
        let req = Request::new(
            Method::PATCH,
            "/api/v1/sites/{site_no}/contacts/{contact_id}",
            &segments,
        )
        .json(patch)?;
        self.transport.call_json(req).await
    }

    async fn delete_contact(&self, site_no: &SiteNo, contact_id: &str) -> StagesResult<()> {
        let segments = ["sites", site_no, "contacts", contact_id];
        let req = Request::new(
            Method::DELETE,
            "/api/v1/sites/{site_no}/contacts/{contact_id}",
            &segments,
        );
        self.transport.call_empty(req).await
    }

    async fn list_notes(&self, site_no: &SiteNo) -> StagesResult<Vec<StagesNote>> {
        let segments = ["sites", site_no, "notes"];
        self.items(Request::new(
            Method::GET,
            "/api/v1/sites/{site_no}/notes",
            &segments,
        ))
        .await
    }

    async fn create_note(
        &self,
        site_no: &SiteNo,
        note: &NewStagesNote,
    ) -> StagesResult<StagesNote> {
        let segments = ["sites", site_no, "notes"];
        let req =
            Request::new(Method::POST, "/api/v1/sites/{site_no}/notes", &segments).json(note)?;
        self.transport.call_json(req).await
    }

    async fn list_tests(&self, device_id: &DeviceId) -> StagesResult<Vec<StagesTest>> {
        let segments = ["devices", device_id, "tests"];
        self.items(Request::new(
            Method::GET,
            "/api/v1/devices/{device_id}/tests",
            &segments,
        ))
        .await
    }

    async fn start_test(
        &self,
        device_id: &DeviceId,
        test: &NewStagesTest,
    ) -> StagesResult<StagesTest> {
        let segments = ["devices", device_id, "tests"];
        let req = Request::new(Method::POST, "/api/v1/devices/{device_id}/tests", &segments)
            .json(test)?;
        self.transport.call_json(req).await
    }

    async fn end_test(&self, device_id: &DeviceId, test_id: &str) -> StagesResult<()> {
        let segments = ["devices", device_id, "tests", test_id];
        let req = Request::new(
            Method::DELETE,
            "/api/v1/devices/{device_id}/tests/{test_id}",
            &segments,
        );
        self.transport.call_empty(req).await
    }
}
