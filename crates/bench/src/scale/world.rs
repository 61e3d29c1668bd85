//! The world of `make bench-scale` (B15, B9): the dealers, their Stages
//! connections, the few Stages sites the load pushes to, and the one record
//! set made through the API that the SQL seeding copies.
//!
//! Dealer 1 makes the burst and owns the template; dealer 2 reconciles, on a
//! simulator of its own, so that its reconcile reads its own sites only (one
//! simulator shows every site to every login).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use reqwest::Method;
use serde_json::{json, Value};

use crate::scenarios::{self, SIM_PASSWORD, SIM_USER};
use crate::service::{self, Api};

/// The dealer whose 50,000 edits make the burst; its first record set is the template.
pub const BURST_DEALER: u32 = 1;
/// The dealer whose reconcile runs in the middle of the load.
pub const RECONCILE_DEALER: u32 = 2;

/// The dealer id (the token's `dealer` claim and every row's dealer column).
pub fn dealer(d: u32) -> String {
    format!("dealer-{d:05}")
}

/// Billing ids, unique over every dealer so that one simulator can hold
/// the live sites of all of them.
pub fn customer_id(d: u32, n: u32) -> String {
    format!("C{d:05}-{n:05}")
}

pub fn site_id(d: u32, n: u32) -> String {
    format!("S{d:05}-{n:05}")
}

pub fn system_id(d: u32, n: u32) -> String {
    format!("Y{d:05}-{n:05}")
}

/// The customer every billing site belongs to, as billing sends it.
fn customer_body() -> Value {
    json!({"first_name": "Pat", "last_name": "Scale", "phone": "(614) 555-0100",
        "email": "pat.scale@example.com", "address1": "1 Scale St", "city": "Columbus",
        "state": "OH", "zip": "43215"})
}

/// A billing site; `address1` is what the load's edits change.
pub fn site_body(customer: &str, address1: &str) -> Value {
    json!({"customer_id": customer, "name": "Scale home", "address1": address1,
        "city": "Columbus", "state": "OH", "zip": "43215", "phone": "614-555-0100",
        "info": SYNCED_INFO})
}

/// What the template's site takes from Stages in its first sync: the sync
/// leaves the change-feed event and the link's snapshot that every copy has.
const SYNCED_INFO: &str = "Gate code 1234";

/// The address the seeded sites carry (the template's).
pub const SEEDED_ADDRESS: &str = "1 Scale St";

fn system_body(site: &str) -> Value {
    json!({"site_id": site, "system_number": "1", "panel_type": "VISTA-128", "location": "Garage"})
}

/// A Stages site the load pushes to, and its device the system link names.
#[derive(Debug, Clone)]
pub struct Live {
    pub d: u32,
    pub n: u32,
    pub site_no: String,
    pub device_id: String,
}

/// One dealer's connection and what Stages calls back with.
#[derive(Debug, Clone)]
pub struct Conn {
    pub id: String,
    pub inbound_user: String,
    pub inbound_secret: String,
}

/// Starts a simulator with `sites` seeded sites; their numbers and first devices.
pub async fn sim_with(sites: usize) -> anyhow::Result<(stages_sim::Sim, Vec<(String, String)>)> {
    let sim = stages_sim::Sim::start(stages_sim::SimConfig {
        bind: "127.0.0.1:0".parse()?,
        username: SIM_USER.into(),
        password: SIM_PASSWORD.into(),
        seed_sites: sites,
        faults: vec![],
    })
    .await?;
    let mut out = Vec::with_capacity(sites);
    for site in sim.state().sites() {
        let device = sim
            .state()
            .devices(&site.site_no)
            .into_iter()
            .next()
            .with_context(|| format!("seeded site {} has no device", site.site_no))?;
        out.push((site.site_no, device.device_id));
    }
    if out.len() != sites {
        bail!("the simulator seeded {} sites, not {sites}", out.len());
    }
    Ok((sim, out))
}

/// Writes the billing ids of `live` into the simulator, as a link would have.
pub fn mark_linked(sim: &stages_sim::Sim, live: &[Live]) -> anyhow::Result<()> {
    for l in live {
        let patch: stages_sim::wire::SitePatch =
            serde_json::from_value(json!({ "billing_id": site_id(l.d, l.n) }))?;
        sim.state()
            .patch_site(&l.site_no, patch)
            .map_err(|e| anyhow::anyhow!("billing id of site {}: {e:?}", l.site_no))?;
        let patch: stages_sim::wire::DevicePatch =
            serde_json::from_value(json!({ "billing_id": system_id(l.d, l.n) }))?;
        sim.state()
            .patch_device(&l.device_id, patch)
            .map_err(|e| anyhow::anyhow!("billing id of device {}: {e:?}", l.device_id))?;
    }
    Ok(())
}

/// One API client per dealer, each with an admin token of that dealer.
pub fn dealer_apis(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    dealers: u32,
) -> anyhow::Result<Vec<Api>> {
    (1..=dealers)
        .map(|d| {
            Ok(Api::new(
                http.clone(),
                base,
                &service::admin_token(secret, &dealer(d))?,
            ))
        })
        .collect()
}

/// A Stages connection per dealer (the reconcile dealer's on `sim_b`) with
/// its dealer credential and a callback credential; `concurrency` in flight.
pub async fn connect_all(
    apis: &[Api],
    sim_a: &stages_sim::Sim,
    sim_b: &stages_sim::Sim,
    concurrency: usize,
) -> anyhow::Result<Vec<Conn>> {
    let urls = Arc::new((sim_a.base_url(), sim_b.base_url()));
    let apis = Arc::new(apis.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (apis, next, urls) = (apis.clone(), next.clone(), urls.clone());
        workers.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(api) = apis.get(i) else {
                    return Ok::<_, anyhow::Error>(made);
                };
                let d = i as u32 + 1;
                let endpoint = if d == RECONCILE_DEALER {
                    &urls.1
                } else {
                    &urls.0
                };
                made.push((i, connect(api, endpoint).await?));
            }
        });
    }
    let mut conns: Vec<Option<Conn>> = vec![None; apis.len()];
    while let Some(made) = workers.join_next().await {
        for (i, c) in made?? {
            conns[i] = Some(c);
        }
    }
    conns
        .into_iter()
        .map(|c| c.context("a dealer was left without a connection"))
        .collect()
}

/// [`scenarios::connect`] to `endpoint`, then a callback credential.
async fn connect(api: &Api, endpoint: &str) -> anyhow::Result<Conn> {
    let id = scenarios::connect_to(api, endpoint).await?;
    let rotated = api
        .call(
            Method::POST,
            &format!("/v1/connections/{id}/inbound-credentials:rotate"),
            None,
            &[200, 201],
        )
        .await?;
    let field = |f: &str| -> anyhow::Result<String> {
        Ok(rotated[f]
            .as_str()
            .with_context(|| format!("rotate answered no {f}"))?
            .to_owned())
    };
    Ok(Conn {
        inbound_user: field("username")?,
        inbound_secret: field("secret")?,
        id,
    })
}

/// The template: the burst dealer's first customer, site and system, made
/// and linked through the API, so the rows the seeding copies are the
/// service's own.
pub async fn make_template(
    api: &Api,
    sim: &stages_sim::Sim,
    conn: &Conn,
    live: &Live,
) -> anyhow::Result<()> {
    let (d, n) = (live.d, live.n);
    let customer = customer_id(d, n);
    let site = site_id(d, n);
    let system = system_id(d, n);
    let put = |path: String, body: Value| async move {
        api.call(Method::PUT, &path, Some(&body), &[200, 201])
            .await
            .map(drop)
    };
    put(format!("/v1/billing/customers/{customer}"), customer_body()).await?;
    let mut body = site_body(&customer, SEEDED_ADDRESS);
    body["info"] = json!("");
    put(format!("/v1/billing/sites/{site}"), body).await?;
    put(format!("/v1/billing/systems/{system}"), system_body(&site)).await?;
    let linked = api
        .call(
            Method::POST,
            "/v1/links",
            Some(&json!({"connection_id": conn.id, "billing_site_id": site,
            "stages_site_no": live.site_no,
            "systems": [{"billing_system_id": system, "stages_device_id": live.device_id}]})),
            &[201],
        )
        .await?;
    let link = linked["items"][0]["id"]
        .as_str()
        .context("POST /v1/links answered no site link")?;
    let patch: stages_sim::wire::SitePatch =
        serde_json::from_value(json!({ "info": SYNCED_INFO }))?;
    sim.state()
        .patch_site(&live.site_no, patch)
        .map_err(|e| anyhow::anyhow!("info of site {}: {e:?}", live.site_no))?;
    api.call(
        Method::POST,
        &format!("/v1/links/{link}:sync"),
        Some(&json!({"fields": {"info": "take_external"}})),
        &[200],
    )
    .await?;
    Ok(())
}
