//! Recording an import run's outcomes, a chunk at a time, in the caller's
//! transaction: each record's item, its billing record, its mapping, its
//! events and the run's counts together, so a run killed at any point has
//! recorded either all of a record's effects or none. Also the count of the
//! records imported before the run.

use std::collections::{HashMap, HashSet};

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::events::NewEvent;
use domain::import::{ImportCounts, ImportKind, ImportWrite, ItemOutcome, RecordOutcome};
use domain::isp::CompletedIspAccount;
use domain::store::StoreError;

use super::lookups::existing_billing_ids;
use super::{find_import, record_kind, ImportRow, ImportedRow, ItemRow};
use crate::billing::insert_new_records;
use crate::connections::{corrupt, to_db_time};
use crate::db::{conflict_on_unique, insert_rows, keyed_reads_only, DbConnection, Fail, IN_CHUNK};
use crate::events::insert_many_events;
use crate::schema::{import_items, imported_records, imports};

/// Of `external_ids`, those the run `id` has recorded an item for.
fn recorded_among(
    conn: &mut DbConnection,
    id: &str,
    external_ids: &[&str],
) -> Result<HashSet<String>, Fail> {
    let mut found = HashSet::new();
    for chunk in external_ids.chunks(IN_CHUNK) {
        let rows: Vec<String> = import_items::table
            .filter(import_items::import_id.eq(id))
            .filter(import_items::external_id.eq_any(chunk))
            .select(import_items::external_id)
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// Of `external_ids`, those imported on the connection, with their billing ids.
fn imported_among(
    conn: &mut DbConnection,
    connection_id: &str,
    kind: &str,
    external_ids: &[&str],
) -> Result<HashMap<String, String>, Fail> {
    let mut found = HashMap::new();
    for chunk in external_ids.chunks(IN_CHUNK) {
        let rows: Vec<(String, String)> = imported_records::table
            .filter(imported_records::connection_id.eq(connection_id))
            .filter(imported_records::kind.eq(kind))
            .filter(imported_records::external_id.eq_any(chunk))
            .select((imported_records::external_id, imported_records::billing_id))
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// The last seq the run gave an item (0 before its first). Not `seen`:
/// records counted as imported before the run have no item.
fn last_seq(conn: &mut DbConnection, id: &str) -> Result<i64, Fail> {
    Ok(import_items::table
        .filter(import_items::import_id.eq(id))
        .select(diesel::dsl::max(import_items::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// An item as recorded, before its row is made.
struct Recorded {
    external_id: String,
    outcome: ItemOutcome,
    billing_id: Option<String>,
    reason: Option<String>,
}

/// What the chunk's lookups found, before anything is written.
struct Found {
    /// Of the records to import or match, those imported on the connection
    /// meanwhile, with their billing ids.
    meanwhile: HashMap<String, String>,
    /// The billing ids of new records that exist already; each record of
    /// the chunk adds its own, so a second one with the same id fails.
    taken_customers: HashSet<String>,
    taken_users: HashSet<String>,
}

/// The rows a chunk writes besides its items, gathered record by record.
#[derive(Default)]
struct Effects {
    /// The billing records to create.
    writes: Vec<ImportWrite>,
    mappings: Vec<ImportedRow>,
    /// The ISP account links found by matching, by billing customer id.
    links: Vec<(String, CompletedIspAccount)>,
    events: Vec<NewEvent>,
}

/// Decides what each outcome of a chunk records, against what the lookups
/// found, and gathers the effects to write.
struct Recorder<'a> {
    dealer: &'a str,
    /// The run's id and connection, which its mappings name.
    import_id: &'a str,
    connection_id: &'a str,
    /// The kind of record a mapping row is about.
    kind: &'static str,
    now: NaiveDateTime,
    found: Found,
    effects: Effects,
}

/// Records a chunk of outcomes with their effects, set-based: a few lookups
/// for the whole chunk (recorded already, imported meanwhile, billing id
/// taken), then one bulk insert per table (billing records, mappings, items,
/// events; `insert_rows!`) and one update of the run's counts, however many
/// records.
pub(super) fn record_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    outcomes: Vec<RecordOutcome>,
) -> Result<ImportCounts, Fail> {
    keyed_reads_only(conn)?;
    let mut import = find_import(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
    let kind = ImportKind::parse(&import.kind)
        .map(record_kind)
        .ok_or_else(|| corrupt(format!("import {id} has a bad kind")))?;
    let outcomes = not_recorded_yet(conn, id, outcomes)?;
    let found = look_up(conn, dealer, &import.connection_id, kind, &outcomes)?;

    let now = to_db_time(Utc::now());
    let first_seq = last_seq(conn, id)? + 1;
    let (import_id, connection_id) = (import.id.clone(), import.connection_id.clone());
    let mut recorder = Recorder {
        dealer,
        import_id: &import_id,
        connection_id: &connection_id,
        kind,
        now,
        found,
        effects: Effects::default(),
    };
    let mut items = Vec::with_capacity(outcomes.len());
    for (seq, outcome) in (first_seq..).zip(outcomes) {
        let recorded = recorder.record(outcome);
        count_item(&mut import, recorded.outcome);
        items.push(ItemRow {
            import_id: id.to_owned(),
            seq,
            external_id: recorded.external_id,
            outcome: recorded.outcome.as_str().to_owned(),
            billing_id: recorded.billing_id,
            reason: recorded.reason,
            created_at: now,
        });
    }
    if items.is_empty() {
        return Ok(import.counts());
    }
    write_chunk(conn, dealer, &import, &items, recorder.effects, now)?;
    Ok(import.counts())
}

/// The outcomes no attempt before this one has recorded, each once (a
/// chunk may name a record twice).
fn not_recorded_yet(
    conn: &mut DbConnection,
    id: &str,
    outcomes: Vec<RecordOutcome>,
) -> Result<Vec<RecordOutcome>, Fail> {
    let ids: Vec<&str> = outcomes.iter().map(RecordOutcome::external_id).collect();
    let mut recorded_before = recorded_among(conn, id, &ids)?;
    // Recorded by an attempt before this one, or twice in one chunk.
    Ok(outcomes
        .into_iter()
        .filter(|o| recorded_before.insert(o.external_id().to_owned()))
        .collect())
}

/// The chunk's lookups, one set-based query each: the records imported
/// meanwhile, and the billing ids of new records that are taken.
fn look_up(
    conn: &mut DbConnection,
    dealer: &str,
    connection_id: &str,
    kind: &str,
    outcomes: &[RecordOutcome],
) -> Result<Found, Fail> {
    let (mut to_import, mut customer_ids, mut user_ids) = (Vec::new(), Vec::new(), Vec::new());
    for outcome in outcomes {
        match outcome {
            RecordOutcome::Imported {
                external_id, write, ..
            } => {
                to_import.push(external_id.as_str());
                match write.as_ref() {
                    ImportWrite::Customer { id, .. } => customer_ids.push(id.as_str()),
                    ImportWrite::User { id, .. } => user_ids.push(id.as_str()),
                }
            }
            RecordOutcome::Matched { external_id, .. } => to_import.push(external_id.as_str()),
            _ => {}
        }
    }
    Ok(Found {
        meanwhile: imported_among(conn, connection_id, kind, &to_import)?,
        taken_customers: existing_billing_ids(conn, dealer, false, &customer_ids)?,
        taken_users: existing_billing_ids(conn, dealer, true, &user_ids)?,
    })
}

impl Recorder<'_> {
    /// What one outcome records; its effects are gathered for `write_chunk`.
    fn record(&mut self, outcome: RecordOutcome) -> Recorded {
        match outcome {
            RecordOutcome::Imported {
                external_id,
                write,
                events,
                note,
            } => self.imported(external_id, write, events, note),
            RecordOutcome::AlreadyImported {
                external_id,
                billing_id,
            } => Recorded {
                external_id,
                outcome: ItemOutcome::AlreadyImported,
                billing_id: Some(billing_id.as_str().to_owned()),
                reason: None,
            },
            RecordOutcome::Matched {
                external_id,
                billing_id,
                how,
                link,
            } => self.matched(external_id, billing_id.as_str().to_owned(), how, link),
            RecordOutcome::Planned {
                external_id,
                outcome,
                billing_id,
                reason,
            } => Recorded {
                external_id,
                outcome,
                billing_id: billing_id.map(|b| b.as_str().to_owned()),
                reason: Some(reason),
            },
            RecordOutcome::FilteredOut {
                external_id,
                reason,
            } => Recorded {
                external_id,
                outcome: ItemOutcome::FilteredOut,
                billing_id: None,
                reason: Some(reason),
            },
            RecordOutcome::Failed {
                external_id,
                reason,
            } => Recorded {
                external_id,
                outcome: ItemOutcome::Failed,
                billing_id: None,
                reason: Some(reason),
            },
        }
    }

    /// A new billing record: already imported when another run imported the
    /// record meanwhile, failed when its billing id is taken.
    fn imported(
        &mut self,
        external_id: String,
        write: Box<ImportWrite>,
        events: Vec<NewEvent>,
        note: Option<String>,
    ) -> Recorded {
        let billing_id = write.billing_id().as_str().to_owned();
        let (taken, what) = match write.as_ref() {
            ImportWrite::Customer { .. } => (&mut self.found.taken_customers, "billing customer"),
            ImportWrite::User { .. } => (&mut self.found.taken_users, "billing user"),
        };
        if let Some(before) = self.found.meanwhile.get(&external_id) {
            Recorded {
                external_id,
                outcome: ItemOutcome::AlreadyImported,
                billing_id: Some(before.clone()),
                reason: None,
            }
        // Taken before, or by an earlier record of this chunk.
        } else if !taken.insert(billing_id.clone()) {
            Recorded {
                external_id,
                outcome: ItemOutcome::Failed,
                billing_id: None,
                reason: Some(format!(
                    "{what} '{billing_id}' exists already and was not imported from this connection"
                )),
            }
        } else {
            let mapping = self.mapping(&external_id, &billing_id);
            self.effects.mappings.push(mapping);
            self.effects.writes.push(*write);
            self.effects.events.extend(events);
            Recorded {
                external_id,
                outcome: ItemOutcome::Imported,
                billing_id: Some(billing_id),
                reason: note,
            }
        }
    }

    /// A record billing already holds: already imported, and its ISP account
    /// link (if any) to be recorded.
    fn matched(
        &mut self,
        external_id: String,
        billing_id: String,
        how: String,
        link: Option<CompletedIspAccount>,
    ) -> Recorded {
        if let Some(before) = self.found.meanwhile.get(&external_id) {
            return Recorded {
                external_id,
                outcome: ItemOutcome::AlreadyImported,
                billing_id: Some(before.clone()),
                reason: None,
            };
        }
        // Remembered like an import, so later runs count it without reading
        // it again.
        let mapping = self.mapping(&external_id, &billing_id);
        self.effects.mappings.push(mapping);
        if let Some(link) = link {
            self.effects.links.push((billing_id.clone(), link));
        }
        Recorded {
            external_id,
            outcome: ItemOutcome::AlreadyImported,
            billing_id: Some(billing_id),
            reason: Some(how),
        }
    }

    /// The row that remembers which billing record the ADC record became.
    fn mapping(&self, external_id: &str, billing_id: &str) -> ImportedRow {
        ImportedRow {
            connection_id: self.connection_id.to_owned(),
            kind: self.kind.to_owned(),
            external_id: external_id.to_owned(),
            dealer: self.dealer.to_owned(),
            billing_id: billing_id.to_owned(),
            import_id: self.import_id.to_owned(),
            imported_at: self.now,
        }
    }
}

/// Adds one item to the run's counts.
fn count_item(import: &mut ImportRow, outcome: ItemOutcome) {
    import.seen += 1;
    match outcome {
        ItemOutcome::Imported => import.imported += 1,
        ItemOutcome::AlreadyImported => import.already_imported += 1,
        ItemOutcome::FilteredOut => import.filtered_out += 1,
        ItemOutcome::Failed => import.failed += 1,
    }
}

/// Writes a chunk: its billing records, mappings, ISP account links, items,
/// the run's counts and the events, one bulk insert per table.
fn write_chunk(
    conn: &mut DbConnection,
    dealer: &str,
    import: &ImportRow,
    items: &[ItemRow],
    effects: Effects,
    now: NaiveDateTime,
) -> Result<(), Fail> {
    let (mut customers, mut users) = (Vec::new(), Vec::new());
    for write in &effects.writes {
        match write {
            ImportWrite::Customer { id, fields } => customers.push((id.as_str(), fields)),
            ImportWrite::User { id, fields } => users.push((id.as_str(), fields)),
        }
    }
    // A record made by someone else since the look above: the chunk is
    // written again from the start (the job's next attempt), and then fails.
    conflict_on_unique(
        insert_new_records(conn, dealer, &customers, &users, now),
        || "a billing record of this import was created meanwhile; try again".to_owned(),
    )?;
    // The primary key is the last word on "never twice".
    conflict_on_unique(
        insert_rows!(&mut *conn, imported_records, &effects.mappings),
        || "an Alarm.com record of this import was imported meanwhile; try again".to_owned(),
    )?;
    if !effects.links.is_empty() {
        crate::isp::record_found_accounts(
            conn,
            dealer,
            &import.connection_id,
            effects.links,
            &import.created_by,
            now,
        )?;
    }
    insert_rows!(&mut *conn, import_items, items)?;
    write_counts(conn, import, now)?;
    // Last: the feed's lock (PostgreSQL) is held for the shortest time.
    insert_many_events(conn, dealer, effects.events)?;
    Ok(())
}

fn write_counts(
    conn: &mut DbConnection,
    import: &ImportRow,
    now: NaiveDateTime,
) -> Result<(), Fail> {
    diesel::update(imports::table.filter(imports::id.eq(&import.id)))
        .set((
            imports::seen.eq(import.seen),
            imports::imported.eq(import.imported),
            imports::already_imported.eq(import.already_imported),
            imports::filtered_out.eq(import.filtered_out),
            imports::failed.eq(import.failed),
            imports::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sets how many records of the run were imported before it ran (they have
/// no item): the count an earlier attempt set is replaced, not added to.
pub(super) fn record_before_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    count: u64,
) -> Result<ImportCounts, Fail> {
    let mut import = find_import(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
    // Already-imported items come from records imported while the run went
    // on (and from users matched by login name); the rest was counted here.
    let listed: i64 = if import.already_imported == 0 {
        0
    } else {
        import_items::table
            .filter(import_items::import_id.eq(id))
            .filter(import_items::outcome.eq(ItemOutcome::AlreadyImported.as_str()))
            .count()
            .get_result(conn)?
    };
    let counted_before = import.already_imported - listed;
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    if count == counted_before {
        return Ok(import.counts());
    }
    import.seen += count - counted_before;
    import.already_imported = listed + count;
    write_counts(conn, &import, to_db_time(Utc::now()))?;
    Ok(import.counts())
}
