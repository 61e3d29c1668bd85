//! Sync use cases (S10, S11, S18, S19, B5): the diff of a link, record sync
//! and account sync on request, the Auto Sync push a billing change causes,
//! and the Stages callbacks that bring Stages' changes to billing. All of them
//! go through the same three-way merge, with the link's last synced values as
//! the base, which is also how a callback echoing our own push is recognised;
//! the automatic ones (Auto Sync, callbacks) settle each field with one rule,
//! `sync::decide`, so both directions agree on who wins (`settle`). Fields
//! that did not sync (held conflicts, refusals) are kept on the link.

pub mod jobs;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::{self, ChangedRecord, NewAuditEntry, WrittenSide};
use crate::billing::{BillingSite, BillingSystem, BillingWrite};
use crate::connection::{Connection, Credential, CredentialOwner};
use crate::events::{types, NewEvent};
use crate::field_issues::{IssueKind, IssueUpdate, LinkSettlement, NewFieldIssue};
use crate::link::{Link, LinkId, LinkKind};
use crate::linking::{link_of_external, LinkingPorts};
use crate::operations::{stages_as_caller, upstream, OperationError};
use crate::stages::{StagesApi, StagesCallback, StagesCallbackEvent, StagesError, StagesTarget};
use crate::store::{EventStore, StoreError};
use crate::sync::{self, FieldChoice, FieldDiff, FieldStatus, MergePlan, Side, Snapshot, Values};
use crate::tenancy::{Caller, DealerId};

/// The records of one link, both sides, as they are now.
struct Sides {
    link: Link,
    connection: Connection,
    api: Arc<dyn StagesApi>,
    billing: LinkedRecord,
    billing_values: Values,
    external_values: Values,
}

/// The billing record of a link.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkedRecord {
    Site(BillingSite),
    System(BillingSystem),
}

/// What settling a link reads from the store, in one read (see
/// [`crate::store::LinkStore::link_to_settle`]).
#[derive(Debug, Clone)]
pub struct LinkToSettle {
    pub link: Link,
    pub connection: Connection,
    /// The connection's dealer credential: background work acts with it.
    pub dealer_credential: Option<Credential>,
    /// `None` when the billing record is gone.
    pub billing: Option<LinkedRecord>,
}

fn snapshot_of(link: &Link) -> Option<Snapshot> {
    link.last_synced
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// The Stages API with the dealer credential, for work nobody is waiting on
/// (Auto Sync pushes, callbacks): it has no user to act as.
pub async fn stages_as_dealer(
    ports: LinkingPorts<'_>,
    connection: &Connection,
) -> Result<Arc<dyn StagesApi>, OperationError> {
    let credential = ports
        .connections
        .credential(&connection.dealer, connection.id, &CredentialOwner::Dealer)
        .await?;
    dealer_api(ports, connection, credential)
}

/// [`stages_as_dealer`] with the credential already read.
fn dealer_api(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    credential: Option<Credential>,
) -> Result<Arc<dyn StagesApi>, OperationError> {
    let credential = credential.ok_or_else(|| {
        OperationError::MissingCredentials(format!(
            "connection '{}' has no dealer credentials; background sync acts with them",
            connection.name.as_str()
        ))
    })?;
    Ok(ports.stages.connect(StagesTarget {
        key: connection.id.to_string(),
        endpoint: connection.endpoint.url().clone(),
        username: credential.username,
        password: credential.password.expose().to_owned(),
    }))
}

async fn link_and_connection(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    link_id: LinkId,
) -> Result<(Link, Connection), OperationError> {
    let link = ports
        .links
        .link(dealer, link_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such link".into()),
            other => other.into(),
        })?;
    let connection = ports
        .connections
        .connection(dealer, link.connection_id)
        .await?;
    Ok((link, connection))
}

async fn load_sides(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    link: Link,
    connection: Connection,
    api: Arc<dyn StagesApi>,
) -> Result<Sides, OperationError> {
    let billing = match link.kind {
        LinkKind::Site => LinkedRecord::Site(ports.billing.site(dealer, &link.billing_id).await?),
        LinkKind::System => {
            LinkedRecord::System(ports.billing.system(dealer, &link.billing_id).await?)
        }
    };
    sides_with(link, connection, api, billing).await
}

/// The two sides of a link whose billing record is read: Stages' is read now.
async fn sides_with(
    link: Link,
    connection: Connection,
    api: Arc<dyn StagesApi>,
    billing: LinkedRecord,
) -> Result<Sides, OperationError> {
    let (billing, billing_values, external_values) = match billing {
        LinkedRecord::Site(site) => {
            let external = api
                .get_site(&link.external_id)
                .await
                .map_err(upstream(&connection))?;
            let values = sync::billing_site_values(&site.fields);
            (
                LinkedRecord::Site(site),
                values,
                sync::stages_site_values(&external),
            )
        }
        LinkedRecord::System(system) => {
            let external = api
                .get_device(&link.external_id)
                .await
                .map_err(upstream(&connection))?;
            let values = sync::billing_system_values(&system.fields);
            (
                LinkedRecord::System(system),
                values,
                sync::stages_device_values(&external.fields),
            )
        }
    };
    Ok(Sides {
        link,
        connection,
        api,
        billing,
        billing_values,
        external_values,
    })
}

async fn sides_as_caller(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
) -> Result<Sides, OperationError> {
    let (link, connection) = link_and_connection(ports, &caller.dealer, link_id).await?;
    let api = stages_as_caller(ports.connections, ports.stages, caller, &connection).await?;
    load_sides(ports, &caller.dealer, link, connection, api).await
}

/// The diff of a link, field by field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkDiff {
    pub link_id: LinkId,
    pub kind: LinkKind,
    pub fields: Vec<FieldDiff>,
}

pub async fn link_diff(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
) -> Result<LinkDiff, OperationError> {
    let sides = sides_as_caller(ports, caller, link_id).await?;
    let fields = sync::diff(
        sync::fields_for(sides.link.kind),
        &sides.billing_values,
        &sides.external_values,
        snapshot_of(&sides.link).as_ref(),
    );
    Ok(LinkDiff {
        link_id,
        kind: sides.link.kind,
        fields,
    })
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncOutcome {
    pub link_id: LinkId,
    pub dry_run: bool,
    pub fields: Vec<FieldDiff>,
    pub plan: MergePlan,
}

/// Writes values from Stages into a billing record and publishes the change
/// on the feed, in one transaction. Auto Sync skips `connection_id`, where the
/// values came from. The record must still be as read (`VersionMismatch`
/// otherwise), so a billing edit made meanwhile is never overwritten.
/// The record of a link as an audit entry names it.
fn changed_record(sides: &Sides) -> ChangedRecord<'_> {
    ChangedRecord {
        connection_id: sides.connection.id,
        kind: sides.link.kind.as_str(),
        billing_id: sides.link.billing_id.as_str(),
        external_id: &sides.link.external_id,
    }
}

/// What a sync is and whom it acts for, as its events (`source`) and its
/// audit entries (action `<action>_to_<side>`, `actor`) name it.
#[derive(Debug, Clone, Copy)]
struct By<'a> {
    source: &'a str,
    action: &'a str,
    actor: &'a str,
}

/// The audit entry of `values` written to Stages.
fn stages_change(sides: &Sides, by: By<'_>, values: &Values) -> Vec<NewAuditEntry> {
    let record = changed_record(sides);
    let before = &sides.external_values;
    audit::data_change(
        by.actor,
        by.action,
        WrittenSide::Stages,
        record,
        before,
        values,
    )
    .into_iter()
    .collect()
}

/// Writes `values` to the billing record of a link, with its event and its
/// audit entry in the same transaction.
async fn write_to_billing(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    sides: &Sides,
    values: &Values,
    by: By<'_>,
) -> Result<(), OperationError> {
    let (record, connection_id, source) = (&sides.billing, sides.connection.id, by.source);
    let audit = audit::data_change(
        by.actor,
        by.action,
        WrittenSide::Billing,
        changed_record(sides),
        &sides.billing_values,
        values,
    );
    let unknown = |e: sync::UnknownField| OperationError::Conflict {
        code: "unknown_field",
        message: e.to_string(),
    };
    let version = match record {
        LinkedRecord::Site(site) => site.version,
        LinkedRecord::System(system) => system.version,
    };
    let (write, event_type, kind, id, after) = match record {
        LinkedRecord::Site(site) => {
            let fields = sync::apply_to_billing_site(&site.fields, values).map_err(unknown)?;
            let after = serde_json::to_value(&fields).unwrap_or_default();
            (
                BillingWrite::Site {
                    id: site.id.clone(),
                    fields,
                },
                types::BILLING_SITE_UPDATED,
                "site",
                site.id.to_string(),
                after,
            )
        }
        LinkedRecord::System(system) => {
            let fields = sync::apply_to_billing_system(&system.fields, values).map_err(unknown)?;
            let after = serde_json::to_value(&fields).unwrap_or_default();
            (
                BillingWrite::System {
                    id: system.id.clone(),
                    fields,
                },
                types::BILLING_SYSTEM_UPDATED,
                "system",
                system.id.to_string(),
                after,
            )
        }
    };
    let event = NewEvent {
        event_type: event_type.into(),
        subject_kind: kind.into(),
        subject_id: id,
        connection_id: Some(connection_id),
        data: serde_json::json!({"changed": values, "record": after, "source": source}),
    };
    ports
        .billing
        .write_billing_at(
            dealer,
            write,
            version,
            vec![event],
            Some(connection_id),
            audit.into_iter().collect(),
        )
        .await?;
    Ok(())
}

/// Writes values to the Stages record of a link.
async fn write_to_stages(sides: &Sides, values: &Values) -> Result<(), OperationError> {
    let invalid = |e: sync::UnknownField| OperationError::Conflict {
        code: "unknown_field",
        message: e.to_string(),
    };
    match sides.link.kind {
        LinkKind::Site => {
            let patch = sync::stages_site_patch(values).map_err(invalid)?;
            sides
                .api
                .update_site(&sides.link.external_id, &patch)
                .await
                .map_err(upstream(&sides.connection))?;
        }
        LinkKind::System => {
            let update = sync::stages_device_update(values).map_err(invalid)?;
            if let Some(code) = &update.new_transmitter_code {
                sides
                    .api
                    .change_transmitter_code(&sides.link.external_id, code)
                    .await
                    .map_err(upstream(&sides.connection))?;
            }
            if update.patch != Default::default() {
                sides
                    .api
                    .update_device(&sides.link.external_id, &update.patch)
                    .await
                    .map_err(upstream(&sides.connection))?;
            }
        }
    }
    Ok(())
}

async fn apply_plan(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    sides: &Sides,
    plan: &MergePlan,
    source: &str,
) -> Result<(), OperationError> {
    let dealer = &caller.dealer;
    let by = By {
        source,
        action: source,
        actor: &caller.user.0,
    };
    if !plan.to_external.is_empty() {
        write_to_stages(sides, &plan.to_external).await?;
    }
    if !plan.to_billing.is_empty() {
        write_to_billing(ports, dealer, sides, &plan.to_billing, by).await?;
    }
    ports
        .links
        .set_link_snapshot(
            dealer,
            sides.link.id,
            serde_json::to_value(&plan.new_snapshot).unwrap_or_default(),
            stages_change(sides, by, &plan.to_external),
        )
        .await?;
    // A field the sync settled is no longer a conflict nor a refusal.
    let resolved: Vec<String> = plan.merged.keys().cloned().collect();
    for kind in [IssueKind::Conflict, IssueKind::Refused] {
        ports
            .issues
            .record_field_issues(dealer, sides.link.id, kind, Vec::new(), resolved.clone())
            .await?;
    }
    Ok(())
}

/// Record sync (S11, B5): a choice per field; a field left out takes the
/// merge's proposal (one-sided changes merge by themselves). Only this record,
/// not its children. `dry_run` shows the result and writes nothing.
pub async fn sync_link(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
    choices: &BTreeMap<String, FieldChoice>,
    dry_run: bool,
) -> Result<SyncOutcome, OperationError> {
    sync_link_as(ports, caller, link_id, choices, dry_run, "sync").await
}

/// A record sync, audited as made through `source` (sync or account_sync).
async fn sync_link_as(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
    choices: &BTreeMap<String, FieldChoice>,
    dry_run: bool,
    source: &str,
) -> Result<SyncOutcome, OperationError> {
    let sides = sides_as_caller(ports, caller, link_id).await?;
    let fields = sync::diff(
        sync::fields_for(sides.link.kind),
        &sides.billing_values,
        &sides.external_values,
        snapshot_of(&sides.link).as_ref(),
    );
    let plan = sync::merge(&fields, choices).map_err(|e| OperationError::Invalid(e.into()))?;
    if !dry_run {
        apply_plan(ports, caller, &sides, &plan, source).await?;
    }
    Ok(SyncOutcome {
        link_id,
        dry_run,
        fields,
        plan,
    })
}

/// Account sync (S10): every field from one side. A system's sync also syncs
/// its site; a site's sync syncs the site only.
pub async fn account_sync(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
    side: Side,
) -> Result<Vec<SyncOutcome>, OperationError> {
    let link = ports
        .links
        .link(&caller.dealer, link_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such link".into()),
            other => other.into(),
        })?;
    let mut order = vec![link.id];
    if let (LinkKind::System, Some(parent)) = (link.kind, link.parent_id) {
        order.push(parent);
    }
    let mut outcomes = Vec::new();
    for id in order {
        let kind = ports.links.link(&caller.dealer, id).await?.kind;
        let choices = sync::account_sync(sync::fields_for(kind), side);
        outcomes.push(sync_link_as(ports, caller, id, &choices, false, "account_sync").await?);
    }
    Ok(outcomes)
}

/// What an automatic sync (an Auto Sync push, an applied callback) did to
/// one link: every field went through `sync::decide`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Settled {
    /// Fields written to Stages.
    pub pushed: Values,
    /// Fields written to billing.
    pub pulled: Values,
    /// Fields both sides changed, held as conflicts.
    pub held: Vec<String>,
    /// Fields whose value Stages refused; the others still synced.
    pub refused: Vec<String>,
}

/// Writes `values` to Stages, and when Stages refuses them together, each on
/// its own: a refused field (a duplicate transmitter code, a value Stages'
/// rules do not take) does not stop the record's other fields. Anything but
/// a refusal (Stages down, slow, refusing the credentials) stops the whole,
/// so the job tries again later.
async fn write_fields_to_stages(
    sides: &Sides,
    values: &Values,
) -> Result<(Values, Vec<(String, String)>), OperationError> {
    fn refusal(e: &OperationError) -> Option<String> {
        match e {
            OperationError::Upstream {
                error: StagesError::Rejected { message, .. },
                ..
            } => Some(message.clone()),
            _ => None,
        }
    }
    let whole = match write_to_stages(sides, values).await {
        Ok(()) => return Ok((values.clone(), Vec::new())),
        Err(e) => e,
    };
    let Some(reason) = refusal(&whole) else {
        return Err(whole);
    };
    if values.len() == 1 {
        let (field, _) = values.iter().next().expect("one value");
        return Ok((Values::new(), vec![(field.clone(), reason)]));
    }
    let (mut accepted, mut refused) = (Values::new(), Vec::new());
    for (field, value) in values {
        let one = Values::from([(field.clone(), value.clone())]);
        match write_to_stages(sides, &one).await {
            Ok(()) => {
                accepted.insert(field.clone(), value.clone());
            }
            Err(e) => match refusal(&e) {
                Some(reason) => refused.push((field.clone(), reason)),
                None => return Err(e),
            },
        }
    }
    Ok((accepted, refused))
}

/// Brings one link's two sides together as `sync::decide` says, field by
/// field: one-sided changes merge (a push only when `may_push`, i.e. Auto
/// Sync is on), changes on both sides are settled by the connection's
/// conflict policy or held, refusals noted. The new base and the field
/// issues are handed back as a [`LinkSettlement`], which the job stores with
/// its end: a failure part way leaves the old base, and a retry decides
/// again from it. `stages_changed_at` is when Stages says its record
/// changed, when known (a callback's time), for `newest_wins`.
async fn settle(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    sides: &Sides,
    may_push: bool,
    stages_changed_at: Option<chrono::DateTime<chrono::Utc>>,
    by: By<'_>,
) -> Result<(Settled, LinkSettlement), OperationError> {
    let fields = sync::fields_for(sides.link.kind);
    let base = snapshot_of(&sides.link);
    let diffs = sync::diff(
        fields,
        &sides.billing_values,
        &sides.external_values,
        base.as_ref(),
    );
    let times = sync::ChangeTimes {
        billing: Some(match &sides.billing {
            LinkedRecord::Site(site) => site.updated_at,
            LinkedRecord::System(system) => system.updated_at,
        }),
        stages: stages_changed_at,
    };
    let mut snapshot = base.map(Snapshot::into_values).unwrap_or_default();
    let mut settled = Settled::default();
    let mut push = Values::new();
    let mut conflicts = Vec::new();
    for (f, d) in fields.iter().zip(&diffs) {
        match sync::decide(f, d, sides.connection.conflict_policy, times) {
            sync::Decision::Leave if d.status == FieldStatus::Equal => {
                snapshot.insert(d.field.clone(), d.billing.clone());
            }
            sync::Decision::Leave => {}
            sync::Decision::Push if may_push => {
                push.insert(d.field.clone(), d.billing.clone());
            }
            sync::Decision::Push => {}
            sync::Decision::Pull => {
                settled.pulled.insert(d.field.clone(), d.external.clone());
            }
            sync::Decision::Hold => {
                settled.held.push(d.field.clone());
                conflicts.push(NewFieldIssue {
                    field: d.field.clone(),
                    kind: IssueKind::Conflict,
                    billing_value: d.billing.clone(),
                    stages_value: d.external.clone(),
                    last_synced: d.last_synced.clone(),
                    reason: None,
                });
            }
        }
    }
    // Toward Stages first: a push that fails part way leaves the old base,
    // so the retry still sees billing's change. A callback echoing the push
    // may arrive in between; it finds both sides equal and writes nothing.
    let (accepted, refused) = if push.is_empty() {
        (Values::new(), Vec::new())
    } else {
        write_fields_to_stages(sides, &push).await?
    };
    snapshot.extend(accepted.clone());
    let mut stages_audit = stages_change(sides, by, &accepted);
    if !accepted.is_empty() && !settled.pulled.is_empty() {
        // What Stages took is the base from now on, before billing is
        // written: should that write fail (billing changed meanwhile), the
        // retry must not take our own push for a change made in Stages and
        // pull it back over billing's newer edit.
        ports
            .links
            .set_link_snapshot(
                dealer,
                sides.link.id,
                serde_json::to_value(&snapshot).unwrap_or_default(),
                // What Stages took is recorded with it: the billing write may fail.
                std::mem::take(&mut stages_audit),
            )
            .await?;
    }
    if !settled.pulled.is_empty() {
        write_to_billing(ports, dealer, sides, &settled.pulled, by).await?;
    }
    snapshot.extend(settled.pulled.clone());

    // What did not sync, kept on the link: a conflict lasts while the field
    // decides `Hold`; a refusal until the field syncs or the sides agree.
    let not_held: Vec<String> = diffs
        .iter()
        .map(|d| d.field.clone())
        .filter(|f| !settled.held.contains(f))
        .collect();
    let refusals: Vec<NewFieldIssue> = refused
        .iter()
        .map(|(field, reason)| {
            let d = diffs
                .iter()
                .find(|d| &d.field == field)
                .expect("a diffed field");
            NewFieldIssue {
                field: field.clone(),
                kind: IssueKind::Refused,
                billing_value: d.billing.clone(),
                stages_value: d.external.clone(),
                last_synced: d.last_synced.clone(),
                reason: Some(reason.clone()),
            }
        })
        .collect();
    let synced: Vec<String> = diffs
        .iter()
        .filter(|d| {
            d.status == FieldStatus::Equal
                || accepted.contains_key(&d.field)
                || settled.pulled.contains_key(&d.field)
        })
        .map(|d| d.field.clone())
        .collect();
    settled.pushed = accepted;
    settled.refused = refused.into_iter().map(|(f, _)| f).collect();
    let settlement = LinkSettlement {
        dealer: dealer.clone(),
        link_id: sides.link.id,
        snapshot: serde_json::to_value(&snapshot).unwrap_or_default(),
        conflicts: IssueUpdate {
            found: conflicts,
            settled: not_held,
        },
        refusals: IssueUpdate {
            found: refusals,
            settled: synced,
        },
        audit: stages_audit,
    };
    Ok((settled, settlement))
}

/// What an Auto Sync push did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoSyncOutcome {
    pub link_id: LinkId,
    /// Fields written to Stages.
    pub pushed: Values,
    /// Fields Stages changed on its own, written to billing.
    pub pulled: Values,
    /// Fields changed on both sides, held as conflicts.
    pub held: Vec<String>,
    /// Fields Stages refused.
    pub refused: Vec<String>,
    /// Why nothing was pushed, when nothing was.
    pub skipped: Option<String>,
}

/// The Auto Sync push (S19) of one link, run by a job the billing change
/// enqueued: the link's two sides are settled by `sync::decide`, so billing's
/// changes go to Stages, Stages' own changes that its callbacks carry come to
/// billing, and a field both changed is held (or settled by the connection's
/// policy). Safe to repeat.
pub async fn auto_sync_push(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    link_id: LinkId,
) -> Result<(AutoSyncOutcome, Option<LinkSettlement>), OperationError> {
    let skipped = |why: &str| {
        let outcome = AutoSyncOutcome {
            link_id,
            pushed: Values::new(),
            pulled: Values::new(),
            held: Vec::new(),
            refused: Vec::new(),
            skipped: Some(why.to_owned()),
        };
        (outcome, None)
    };
    // One read of everything on our side: most pushes run in a burst.
    let read = match ports.links.link_to_settle(dealer, link_id).await {
        Ok(read) => read,
        Err(StoreError::NotFound) => return Ok(skipped("the link no longer exists")),
        Err(e) => return Err(e.into()),
    };
    let connection = read.connection;
    if !crate::syncing_jobs::auto_sync_on(connection.status, connection.auto_sync) {
        return Ok(skipped("auto sync is off for this connection"));
    }
    let api = dealer_api(ports, &connection, read.dealer_credential)?;
    let billing = read.billing.ok_or(StoreError::NotFound)?;
    let sides = sides_with(read.link, connection, api, billing).await?;
    let by = By {
        source: "auto_sync",
        action: "auto_sync",
        actor: audit::AUTO_SYNC_ACTOR,
    };
    let (settled, settlement) = settle(ports, dealer, &sides, true, None, by).await?;
    Ok((
        AutoSyncOutcome {
            link_id,
            pushed: settled.pushed,
            pulled: settled.pulled,
            held: settled.held,
            refused: settled.refused,
            skipped: None,
        },
        Some(settlement),
    ))
}

/// How a Stages callback ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallbackOutcome {
    /// applied, held, echo, awaiting_sync, unchanged, unmatched, gone
    pub outcome: &'static str,
    pub applied: Values,
    pub detail: String,
    /// The link's new base and field issues, stored with the job's end.
    #[serde(skip)]
    pub settlement: Option<LinkSettlement>,
}

/// Updates from Stages (S18): a callback about a linked record settles the
/// link as an Auto Sync push does (`sync::decide`, one rule for both
/// directions): Stages' changes that its callbacks carry (`site.updated`:
/// address, info, phone; `device.updated`: transmitter code) reach billing,
/// a field billing changed too is held as a conflict rather than
/// overwritten, and billing's own pending changes go to Stages when Auto Sync
/// is on. The values are read from Stages when the callback is applied, so
/// callbacks applied out of order still leave billing with Stages' latest;
/// our own push coming back (an echo) finds both sides equal. Unknown or
/// unlinked records are reported as events.
pub async fn apply_stages_callback(
    ports: LinkingPorts<'_>,
    events: &dyn EventStore,
    connection: &Connection,
    callback: &StagesCallback,
) -> Result<CallbackOutcome, OperationError> {
    let dealer = &connection.dealer;
    let (kind, external_id, changes) = match &callback.event {
        StagesCallbackEvent::SiteUpdated {
            site_no, changes, ..
        } => (LinkKind::Site, site_no, changes),
        StagesCallbackEvent::DeviceUpdated {
            device_id, changes, ..
        } => (LinkKind::System, device_id, changes),
        StagesCallbackEvent::SendToBilling { .. } => {
            return Ok(CallbackOutcome {
                outcome: "unsupported",
                applied: Values::new(),
                detail: "site.send_to_billing is answered when it is received".into(),
                settlement: None,
            })
        }
    };
    let Some(link) = link_of_external(ports, dealer, connection.id, kind, external_id).await?
    else {
        events
            .record_events(
                dealer,
                vec![NewEvent {
                    event_type: types::STAGES_CALLBACK_UNMATCHED.into(),
                    subject_kind: kind.as_str().into(),
                    subject_id: external_id.clone(),
                    connection_id: Some(connection.id),
                    data: serde_json::json!({"reason": "not linked on this connection", "changes": changes}),
                }],
            )
            .await?;
        return Ok(CallbackOutcome {
            outcome: "unmatched",
            applied: Values::new(),
            detail: format!(
                "Stages {} '{external_id}' is not linked on this connection",
                kind.as_str()
            ),
            settlement: None,
        });
    };
    let api = stages_as_dealer(ports, connection).await?;
    let sides = match load_sides(ports, dealer, link.clone(), connection.clone(), api).await {
        Ok(sides) => sides,
        Err(OperationError::Upstream {
            error: StagesError::NotFound(_),
            ..
        }) => {
            return Ok(CallbackOutcome {
                outcome: "gone",
                applied: Values::new(),
                detail: format!("Stages {} '{external_id}' no longer exists", kind.as_str()),
                settlement: None,
            })
        }
        Err(e) => return Err(e),
    };
    let base = snapshot_of(&link);
    let (settled, settlement) = settle(
        ports,
        dealer,
        &sides,
        crate::syncing_jobs::auto_sync_on(connection.status, connection.auto_sync),
        // When Stages says its record changed, for `newest_wins`.
        Some(callback.occurred_at),
        By {
            source: "stages",
            action: "stages_callback",
            actor: &audit::callback_actor(&callback.event_id),
        },
    )
    .await?;
    let what = format!("billing {} '{}'", kind.as_str(), link.billing_id);
    let fields = sync::fields_for(kind);
    // The fields this callback names, by their billing names.
    let named: Vec<&sync::MappedField> = fields
        .iter()
        .filter(|f| changes.contains_key(f.stages_name))
        .collect();
    let (outcome, detail) = if !settled.pulled.is_empty() {
        ("applied", format!("{what} updated from Stages"))
    } else if named
        .iter()
        .any(|f| settled.held.iter().any(|h| h == f.name))
    {
        (
            "held",
            format!(
                "{what}: both sides changed {} since the last sync; held as a conflict",
                settled.held.join(", ")
            ),
        )
    } else if named.iter().any(|f| {
        !f.from_stages_callback
            && sides.external_values.get(f.name) != sides.billing_values.get(f.name)
    }) {
        (
            "awaiting_sync",
            format!(
                "{what}: Stages' callbacks do not carry {}; a sync of the link takes it",
                named
                    .iter()
                    .filter(|f| !f.from_stages_callback)
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else if named.iter().any(|f| {
        base.as_ref()
            .and_then(|b| b.get(f.name))
            .zip(sides.external_values.get(f.name))
            .is_some_and(|(synced, now)| f.normalizer.equal(synced, now))
    }) {
        ("echo", format!("nothing new for {what}"))
    } else {
        ("unchanged", format!("nothing new for {what}"))
    };
    Ok(CallbackOutcome {
        outcome,
        applied: settled.pulled,
        detail,
        settlement: Some(settlement),
    })
}

/// Pushes want the link's snapshot to start equal to what was sent.
pub fn pushed_snapshot(kind: LinkKind, billing_values: &Values) -> serde_json::Value {
    serde_json::to_value(Snapshot::of(sync::fields_for(kind), billing_values)).unwrap_or_default()
}
