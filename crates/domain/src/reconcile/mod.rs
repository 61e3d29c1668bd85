//! Reconcile (B4, S20): rebuild and verify the link table from the billing ids
//! stored in Stages. Links an older integration left behind are taken over;
//! everything that does not add up is reported as drift, never guessed at.
//! A link whose billing id was cleared or changed in Stages (Stages then stops
//! calling back for it) is drift too, and with `repair` its id is written back.

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
    /// Write the link's billing id back to Stages records that lost it.
    /// Left out of a plain run's payload, which stays as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
}

impl JobKind for ReconcileJob {
    const KIND: &'static str = "reconcile";
    const MAX_ATTEMPTS: u32 = 5;

    fn unique_key(&self) -> Option<String> {
        // A repairing run does more than a plain one: it does not coalesce with it.
        Some(match self.repair {
            false => format!("reconcile:{}:{}", self.connection_id, self.dry_run),
            true => format!("reconcile:{}:{}:repair", self.connection_id, self.dry_run),
        })
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
            Mode {
                dry_run: self.dry_run,
                repair: self.repair,
            },
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
    /// A linked Stages record carries no billing id any more.
    BillingIdCleared,
    /// A linked Stages record carries another billing id than its link's.
    BillingIdChanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub record: LinkKind,
    pub external_id: String,
    pub billing_id: Option<String>,
    pub detail: String,
    /// The link's billing id was written back (in a dry run: would be).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repaired: bool,
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
    pub repair: bool,
    pub sites_seen: u64,
    pub devices_seen: u64,
    pub already_linked: KindCounts,
    /// Links created from billing ids found in Stages (in a dry run: would be).
    pub taken_over: KindCounts,
    /// Links whose billing id was written back to Stages (in a dry run: would be).
    pub repaired: KindCounts,
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

/// How a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    /// Report what would change and change nothing.
    pub dry_run: bool,
    /// Write the link's billing id back where Stages lost or changed it.
    pub repair: bool,
}

pub async fn reconcile(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    mode: Mode,
    progress: &dyn Progress,
) -> Result<ReconcileReport, OperationError> {
    let dry_run = mode.dry_run;
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
        repair: mode.repair,
        ..Default::default()
    };

    // 1. Read Stages: every site and every device with their billing ids.
    let mut site_claims = Vec::new();
    // Every Stages record seen, with the billing id it carries.
    let mut seen_sites: HashMap<String, Option<String>> = HashMap::new();
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
            let carried = s.billing_id.filter(|b| !b.is_empty());
            seen_sites.insert(s.site_no.clone(), carried.clone());
            if let Some(b) = carried {
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
    let mut seen_devices: HashMap<String, Option<String>> = HashMap::new();
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
            let carried = d.fields.billing_id.filter(|b| !b.is_empty());
            seen_devices.insert(d.device_id.clone(), carried.clone());
            if let Some(b) = carried {
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
                repaired: false,
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
            .filter(|l| !seen.contains_key(&l.external_id))
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
                repaired: false,
            });
        }
    }

    let mut lost = lost_ids(&sites, &seen_sites, &mut report);
    lost.extend(lost_ids(&systems, &seen_devices, &mut report));

    // 4. Take over and repair (unless this is a dry run).
    let total = report.sites_seen
        + report.devices_seen
        + (new_site_links.len() + new_system_links.len()) as u64
        + if mode.repair { lost.len() as u64 } else { 0 };
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
    if mode.repair {
        for chunk in lost.chunks(200) {
            repair(
                ports,
                caller,
                api.as_ref(),
                &connection,
                chunk,
                dry_run,
                &mut report,
            )
            .await?;
            done += chunk.len() as u64;
            if !progress.report(done, Some(total)).await {
                report.stopped = true;
                return Ok(report);
            }
        }
    }
    progress.report(total, Some(total)).await;
    Ok(report)
}

/// A link whose Stages record lost its billing id (or carries another).
struct Lost {
    link: Link,
    /// What the record carries instead (none when cleared).
    carried: Option<String>,
    /// Its drift item's place in the report, if it made the list.
    item: Option<usize>,
}

/// Reports every link whose Stages record is there but does not carry the
/// link's billing id; these are what a repair writes back.
fn lost_ids(
    known: &Known,
    seen: &HashMap<String, Option<String>>,
    report: &mut ReconcileReport,
) -> Vec<Lost> {
    let mut lost: Vec<Lost> = known
        .by_external
        .values()
        .filter_map(|l| {
            let carried = seen.get(&l.external_id)?;
            (carried.as_deref() != Some(l.billing_id.as_str())).then(|| Lost {
                link: l.clone(),
                carried: carried.clone(),
                item: None,
            })
        })
        .collect();
    lost.sort_by_key(|l| l.link.id);
    for l in &mut lost {
        let (kind, detail) = match &l.carried {
            None => (
                DriftKind::BillingIdCleared,
                format!(
                    "link {} is there but the Stages record carries no billing id, so Stages does not call back for it",
                    l.link.id
                ),
            ),
            Some(other) => (
                DriftKind::BillingIdChanged,
                format!(
                    "link {} is there but the Stages record carries billing id '{other}'",
                    l.link.id
                ),
            ),
        };
        let at = report.drift.len();
        report.drift(Drift {
            kind,
            record: l.link.kind,
            external_id: l.link.external_id.clone(),
            billing_id: Some(l.link.billing_id.to_string()),
            detail,
            repaired: false,
        });
        l.item = (report.drift.len() > at).then_some(at);
    }
    lost
}

/// Writes each lost link's billing id back to its Stages record, audited. A
/// record Stages refuses to change is left as reported; an upstream that is
/// down fails the run (it is retried, and what was written stays written).
async fn repair(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    api: &dyn crate::stages::StagesApi,
    connection: &crate::connection::Connection,
    lost: &[Lost],
    dry_run: bool,
    report: &mut ReconcileReport,
) -> Result<(), OperationError> {
    let mut entries = Vec::new();
    for l in lost {
        let outcome = if dry_run {
            Ok(())
        } else {
            crate::linking::set_billing_id(
                api,
                l.link.kind,
                &l.link.external_id,
                l.link.billing_id.as_str(),
            )
            .await
        };
        let note = match outcome {
            Ok(()) => {
                report.repaired.add(l.link.kind);
                if !dry_run {
                    entries.push(repair_audit(caller, l));
                }
                None
            }
            Err(e) if e.is_transient() || matches!(e, crate::stages::StagesError::Unauthorized) => {
                // Record what was written before giving up.
                ports.audit.record_audit(&caller.dealer, entries).await?;
                return Err(crate::operations::upstream(connection)(e));
            }
            Err(e) => Some(format!("; not repaired: {e}")),
        };
        if let Some(item) = l.item.and_then(|i| report.drift.get_mut(i)) {
            match note {
                None => item.repaired = true,
                Some(note) => item.detail.push_str(&note),
            }
        }
    }
    if !entries.is_empty() {
        ports.audit.record_audit(&caller.dealer, entries).await?;
    }
    Ok(())
}

fn repair_audit(caller: &Caller, l: &Lost) -> NewAuditEntry {
    NewAuditEntry {
        actor: format!("system:reconcile ({})", caller.user),
        action: "reconcile_repair".into(),
        connection_id: Some(l.link.connection_id),
        kind: l.link.kind.as_str().into(),
        billing_id: Some(l.link.billing_id.to_string()),
        external_id: Some(l.link.external_id.clone()),
        before: Some(serde_json::json!({"stages_billing_id": l.carried})),
        after: Some(serde_json::json!({"stages_billing_id": l.link.billing_id.as_str()})),
    }
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
            repaired: false,
        };
        if let Some(l) = known.by_external.get(&c.external_id) {
            if l.billing_id.as_str() == c.billing_id {
                report.already_linked.add(kind);
            }
            // Otherwise the record is linked but carries another id: that
            // link is reported (billing_id_changed) by `lost_ids`, once.
        } else if let Some(l) = known.by_billing.get(&c.billing_id) {
            report.drift(drift(
                DriftKind::LinkedElsewhere,
                format!(
                    "billing record is linked to Stages record '{}'",
                    l.external_id
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
                        repaired: false,
                    }),
                    // A site taken over by someone else meanwhile leaves its devices orphaned: report.
                    Err(StoreError::NotFound) => report.drift(Drift {
                        kind: DriftKind::SiteNotLinked,
                        record: l.kind,
                        external_id: l.external_id.clone(),
                        billing_id: Some(l.billing_id.to_string()),
                        detail: "its site link could not be made".into(),
                        repaired: false,
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
