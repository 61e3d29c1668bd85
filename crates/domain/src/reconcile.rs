//! Reconcile (B4, S20): rebuild and verify the link table from the billing ids
//! stored in Stages. Links an older integration left behind are taken over;
//! everything that does not add up is reported as drift, never guessed at.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::audit::NewAuditEntry;
use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::jobs::{
    new_job, summary, Attempt, Done, HasJobPorts, JobError, JobKind, NewJob, RunJob,
};
use crate::link::{Link, LinkFilter, LinkId, LinkKind, NewLink};
use crate::linking::LinkingPorts;
use crate::operations::{stages_as_caller, OperationError};
use crate::stages::{StagesDeviceQuery, StagesSiteQuery};
use crate::store::{PageRequest, StoreError};
use crate::tenancy::{Caller, Role, UserId};

/// A reconcile of one connection, as a job; one queued at a time per
/// connection and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileJob {
    pub connection_id: ConnectionId,
    pub dry_run: bool,
}

impl JobKind for ReconcileJob {
    const KIND: &'static str = "reconcile";
    const MAX_ATTEMPTS: u32 = 5;

    fn unique_key(&self) -> Option<String> {
        Some(format!("reconcile:{}:{}", self.connection_id, self.dry_run))
    }
}

impl ReconcileJob {
    /// Runs with the credentials of `caller`, who asked for it.
    pub fn new_job(&self, caller: &Caller) -> NewJob {
        new_job(&caller.dealer, self, &caller.user.0, Utc::now())
    }
}

#[async_trait]
impl<C: HasJobPorts + ?Sized> RunJob<C> for ReconcileJob {
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        let ports = ctx.job_ports();
        // The job acts with the credentials of whoever asked for it.
        let caller = Caller {
            dealer: attempt.job.dealer.clone(),
            user: UserId(attempt.job.created_by.clone()),
            roles: vec![Role::Operator],
        };
        let progress = attempt.progress(ports.jobs);
        let report = reconcile(
            ports.linking,
            &caller,
            self.connection_id,
            self.dry_run,
            &progress,
        )
        .await?;
        summary(&report)
    }
}

/// Where a long run reports how far it got. `false` means stop (cancelled).
#[async_trait]
pub trait Progress: Send + Sync {
    async fn report(&self, done: u64, total: Option<u64>) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// A Stages record carries a billing id that names no billing record.
    UnknownBillingRecord,
    /// Two or more Stages records carry the same billing id.
    DuplicateClaim,
    /// The pair was unlinked on purpose; it is not linked again.
    DeliberatelyUnlinked,
    /// The billing record or the Stages record is linked to something else.
    LinkedElsewhere,
    /// A link points at a Stages record that no longer exists.
    MissingExternal,
    /// A device carries a billing id but its site is not linked.
    SiteNotLinked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub record: LinkKind,
    pub external_id: String,
    pub billing_id: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub sites: u64,
    pub systems: u64,
}

impl KindCounts {
    fn add(&mut self, kind: LinkKind) {
        match kind {
            LinkKind::Site => self.sites += 1,
            LinkKind::System => self.systems += 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub sites_seen: u64,
    pub devices_seen: u64,
    pub already_linked: KindCounts,
    /// Links created from billing ids found in Stages (in a dry run: would be).
    pub taken_over: KindCounts,
    pub drift_counts: BTreeMap<String, u64>,
    /// The first `MAX_DRIFT_ITEMS` drift findings.
    pub drift: Vec<Drift>,
    pub drift_truncated: bool,
    /// Stopped early because the job was cancelled.
    pub stopped: bool,
}

pub const MAX_DRIFT_ITEMS: usize = 1000;
const PAGE: u32 = 500;

impl ReconcileReport {
    fn drift(&mut self, d: Drift) {
        let key = serde_json::to_value(d.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *self.drift_counts.entry(key).or_default() += 1;
        if self.drift.len() < MAX_DRIFT_ITEMS {
            self.drift.push(d);
        } else {
            self.drift_truncated = true;
        }
    }
}

/// A Stages record and the billing id it carries.
struct Claim {
    external_id: String,
    billing_id: String,
    /// A device's site number.
    site_no: Option<String>,
}

/// The links of one kind on the connection, both ways.
#[derive(Default)]
struct Known {
    by_billing: HashMap<String, Link>,
    by_external: HashMap<String, Link>,
}

pub async fn reconcile(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ReconcileReport, OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such connection".into()),
            other => other.into(),
        })?;
    let api = stages_as_caller(ports.connections, ports.stages, caller, &connection).await?;
    let upstream = |error| OperationError::Upstream {
        connection: connection.name.as_str().to_owned(),
        error,
    };
    let mut report = ReconcileReport {
        dry_run,
        ..Default::default()
    };

    // 1. Read Stages: every site and every device with their billing ids.
    let mut site_claims = Vec::new();
    let mut seen_sites = HashSet::new();
    let mut token = None;
    loop {
        let page = api
            .list_sites(&StagesSiteQuery {
                page_token: token.take(),
                page_size: Some(PAGE),
                ..Default::default()
            })
            .await
            .map_err(upstream)?;
        for s in page.items {
            report.sites_seen += 1;
            seen_sites.insert(s.site_no.clone());
            if let Some(b) = s.billing_id.filter(|b| !b.is_empty()) {
                site_claims.push(Claim {
                    external_id: s.site_no,
                    billing_id: b,
                    site_no: None,
                });
            }
        }
        if !progress.report(report.sites_seen, None).await {
            report.stopped = true;
            return Ok(report);
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut device_claims = Vec::new();
    let mut seen_devices = HashSet::new();
    loop {
        let page = api
            .list_all_devices(&StagesDeviceQuery {
                page_token: token.take(),
                page_size: Some(PAGE),
                ..Default::default()
            })
            .await
            .map_err(upstream)?;
        for d in page.items {
            report.devices_seen += 1;
            seen_devices.insert(d.device_id.clone());
            if let Some(b) = d.fields.billing_id.filter(|b| !b.is_empty()) {
                device_claims.push(Claim {
                    external_id: d.device_id,
                    billing_id: b,
                    site_no: Some(d.site_no),
                });
            }
        }
        if !progress
            .report(report.sites_seen + report.devices_seen, None)
            .await
        {
            report.stopped = true;
            return Ok(report);
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }

    // 2. What the service knows: links, deliberate unlinks, billing records.
    let mut sites = Known::default();
    let mut systems = Known::default();
    let mut after = None;
    loop {
        let page = ports
            .links
            .list_links(
                &caller.dealer,
                &LinkFilter {
                    connection_id: Some(connection_id),
                    ..Default::default()
                },
                PageRequest { after, limit: 1000 },
            )
            .await?;
        for l in page.items {
            let known = match l.kind {
                LinkKind::Site => &mut sites,
                LinkKind::System => &mut systems,
            };
            known.by_billing.insert(l.billing_id.to_string(), l.clone());
            known.by_external.insert(l.external_id.clone(), l);
        }
        match page.next_page_token {
            Some(t) => after = Some(t),
            None => break,
        }
    }
    let tombstones: HashSet<(LinkKind, String)> = ports
        .links
        .deliberate_unlinks(&caller.dealer, connection_id)
        .await?
        .into_iter()
        .flat_map(|t| {
            [
                (t.kind, t.billing_id.to_string()),
                (t.kind, format!("ext:{}", t.external_id)),
            ]
        })
        .collect();
    let existing_sites = existing(ports, caller, LinkKind::Site, &site_claims).await?;
    let existing_systems = existing(ports, caller, LinkKind::System, &device_claims).await?;

    // 3. Decide, sites first so devices can hang under sites taken over now.
    let mut new_site_links: Vec<NewLink> = Vec::new();
    let mut site_link_of: HashMap<String, LinkId> = sites
        .by_external
        .iter()
        .map(|(ext, l)| (ext.clone(), l.id))
        .collect();
    for claim in decide(
        LinkKind::Site,
        &site_claims,
        &sites,
        &existing_sites,
        &tombstones,
        &mut report,
    ) {
        let id = LinkId::new();
        site_link_of.insert(claim.external_id.clone(), id);
        new_site_links.push(new_link(id, connection_id, LinkKind::Site, claim, None)?);
    }
    let mut new_system_links = Vec::new();
    for claim in decide(
        LinkKind::System,
        &device_claims,
        &systems,
        &existing_systems,
        &tombstones,
        &mut report,
    ) {
        let site_no = claim.site_no.clone().unwrap_or_default();
        match site_link_of.get(&site_no) {
            Some(parent) => new_system_links.push(new_link(
                LinkId::new(),
                connection_id,
                LinkKind::System,
                claim,
                Some(*parent),
            )?),
            None => report.drift(Drift {
                kind: DriftKind::SiteNotLinked,
                record: LinkKind::System,
                external_id: claim.external_id.clone(),
                billing_id: Some(claim.billing_id.clone()),
                detail: format!(
                    "device's Stages site '{site_no}' is not linked, so the device cannot be"
                ),
            }),
        }
    }
    for (kind, known, seen) in [
        (LinkKind::Site, &sites, &seen_sites),
        (LinkKind::System, &systems, &seen_devices),
    ] {
        let mut gone: Vec<&Link> = known
            .by_external
            .values()
            .filter(|l| !seen.contains(&l.external_id))
            .collect();
        gone.sort_by_key(|l| l.id);
        for l in gone {
            report.drift(Drift {
                kind: DriftKind::MissingExternal,
                record: kind,
                external_id: l.external_id.clone(),
                billing_id: Some(l.billing_id.to_string()),
                detail: format!(
                    "link {} points at a Stages record that no longer exists",
                    l.id
                ),
            });
        }
    }

    // 4. Take over (unless this is a dry run).
    let total = report.sites_seen
        + report.devices_seen
        + (new_site_links.len() + new_system_links.len()) as u64;
    let mut done = report.sites_seen + report.devices_seen;
    for (kind, batch_source) in [
        (LinkKind::Site, new_site_links),
        (LinkKind::System, new_system_links),
    ] {
        if dry_run {
            for _ in &batch_source {
                report.taken_over.add(kind);
            }
            continue;
        }
        for batch in batch_source.chunks(200) {
            take_over(ports, caller, batch, &mut report).await?;
            done += batch.len() as u64;
            if !progress.report(done, Some(total)).await {
                report.stopped = true;
                return Ok(report);
            }
        }
    }
    progress.report(total, Some(total)).await;
    Ok(report)
}

async fn existing(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    kind: LinkKind,
    claims: &[Claim],
) -> Result<HashSet<String>, OperationError> {
    let mut ids: Vec<String> = claims.iter().map(|c| c.billing_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut found = HashSet::new();
    for chunk in ids.chunks(500) {
        found.extend(
            ports
                .billing
                .existing_billing_ids(&caller.dealer, kind, chunk)
                .await?,
        );
    }
    Ok(found)
}

/// The claims that can be taken over; every other claim is counted or reported.
fn decide<'c>(
    kind: LinkKind,
    claims: &'c [Claim],
    known: &Known,
    existing: &HashSet<String>,
    tombstones: &HashSet<(LinkKind, String)>,
    report: &mut ReconcileReport,
) -> Vec<&'c Claim> {
    let mut claimants: HashMap<&str, usize> = HashMap::new();
    for c in claims {
        *claimants.entry(c.billing_id.as_str()).or_default() += 1;
    }
    let mut takeovers = Vec::new();
    for c in claims {
        let drift = |kind_of: DriftKind, detail: String| Drift {
            kind: kind_of,
            record: kind,
            external_id: c.external_id.clone(),
            billing_id: Some(c.billing_id.clone()),
            detail,
        };
        if let Some(l) = known.by_billing.get(&c.billing_id) {
            if l.external_id == c.external_id {
                report.already_linked.add(kind);
            } else {
                report.drift(drift(
                    DriftKind::LinkedElsewhere,
                    format!(
                        "billing record is linked to Stages record '{}'",
                        l.external_id
                    ),
                ));
            }
        } else if let Some(l) = known.by_external.get(&c.external_id) {
            report.drift(drift(
                DriftKind::LinkedElsewhere,
                format!(
                    "Stages record is linked to billing record '{}'",
                    l.billing_id
                ),
            ));
        } else if claimants[c.billing_id.as_str()] > 1 {
            report.drift(drift(
                DriftKind::DuplicateClaim,
                format!(
                    "{} Stages records carry this billing id",
                    claimants[c.billing_id.as_str()]
                ),
            ));
        } else if !existing.contains(&c.billing_id) {
            report.drift(drift(
                DriftKind::UnknownBillingRecord,
                "no billing record has this id".into(),
            ));
        } else if tombstones.contains(&(kind, c.billing_id.clone()))
            || tombstones.contains(&(kind, format!("ext:{}", c.external_id)))
        {
            report.drift(drift(
                DriftKind::DeliberatelyUnlinked,
                "unlinked on purpose; link it again to restore".into(),
            ));
        } else {
            takeovers.push(c);
        }
    }
    takeovers
}

fn new_link(
    id: LinkId,
    connection_id: ConnectionId,
    kind: LinkKind,
    claim: &Claim,
    parent_id: Option<LinkId>,
) -> Result<NewLink, OperationError> {
    Ok(NewLink {
        id,
        connection_id,
        kind,
        billing_id: BillingId::parse(&claim.billing_id).map_err(|why| {
            OperationError::Conflict {
                code: "bad_billing_id",
                message: format!(
                    "Stages record '{}' carries an unusable billing id: {why}",
                    claim.external_id
                ),
            }
        })?,
        external_id: claim.external_id.clone(),
        parent_id,
    })
}

fn takeover_audit(caller: &Caller, l: &NewLink) -> NewAuditEntry {
    NewAuditEntry {
        actor: format!("system:reconcile ({})", caller.user),
        action: "reconcile_link".into(),
        connection_id: Some(l.connection_id),
        kind: l.kind.as_str().into(),
        billing_id: Some(l.billing_id.to_string()),
        external_id: Some(l.external_id.clone()),
        before: None,
        after: Some(serde_json::json!({"link_id": l.id, "external_id": l.external_id})),
    }
}

/// Inserts a batch at once; when something in it conflicts (a link made
/// meanwhile), one by one, reporting the ones that lost.
async fn take_over(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    batch: &[NewLink],
    report: &mut ReconcileReport,
) -> Result<(), OperationError> {
    let audit = batch.iter().map(|l| takeover_audit(caller, l)).collect();
    match ports
        .links
        .insert_links(&caller.dealer, batch.to_vec(), audit)
        .await
    {
        Ok(created) => {
            for l in created {
                report.taken_over.add(l.kind);
            }
            Ok(())
        }
        Err(StoreError::Conflict(_)) => {
            for l in batch {
                match ports
                    .links
                    .insert_links(
                        &caller.dealer,
                        vec![l.clone()],
                        vec![takeover_audit(caller, l)],
                    )
                    .await
                {
                    Ok(_) => report.taken_over.add(l.kind),
                    Err(StoreError::Conflict(why)) => report.drift(Drift {
                        kind: DriftKind::LinkedElsewhere,
                        record: l.kind,
                        external_id: l.external_id.clone(),
                        billing_id: Some(l.billing_id.to_string()),
                        detail: why,
                    }),
                    // A site taken over by someone else meanwhile leaves its devices orphaned: report.
                    Err(StoreError::NotFound) => report.drift(Drift {
                        kind: DriftKind::SiteNotLinked,
                        record: l.kind,
                        external_id: l.external_id.clone(),
                        billing_id: Some(l.billing_id.to_string()),
                        detail: "its site link could not be made".into(),
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
