//! The customer run (A1, with A2 rep linking): lists the Alarm.com customer
//! ids, sets aside in one look each the filtered, the imported before and
//! those with an ISP account link, then reads the rest a chunk at a time (the
//! next chunk read while the last is written), matching each against billing
//! before creating it.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures_util::future::{join, OptionFuture};
use futures_util::stream::{self, Stream, StreamExt};

use super::{run_error, store_failed, ImportRunError, Run};
use crate::adc::{AdcCustomer, AdcCustomerId, AdcCustomerQuery, AdcError};
use crate::events::{types, NewEvent};
use crate::import::mapping::{
    customer_billing_id, customer_fields, match_by_dealer_customer_id, RepMatcher,
};
use crate::import::{
    CustomerFilters, CustomerOptions, ImportCounts, ImportKind, ImportWrite, RecordOutcome,
};

/// A chunk of customers read, with their outcomes.
struct ReadChunk {
    outcomes: Vec<RecordOutcome>,
    /// Why the run stops after recording `outcomes`.
    stop: Option<ImportRunError>,
    /// Whether reads remain.
    more: bool,
}

/// A customer read (or why not), in reading order, before matching.
enum Read {
    Customer(String, Box<AdcCustomer>),
    Done(RecordOutcome),
}

/// The customers of a run sorted out before any is read.
struct Unread {
    /// Outcomes known without reading: filtered out by id, or matched by
    /// an ISP account link.
    known: Vec<RecordOutcome>,
    /// How many were imported on the connection before (by any run).
    before: u64,
    /// The rest, to read.
    to_read: Vec<String>,
}

impl Run<'_> {
    pub(super) async fn customers(
        self,
        filters: &CustomerFilters,
        options: &CustomerOptions,
    ) -> Result<ImportCounts, ImportRunError> {
        // Independent reads, so made at once: on a run with nothing new
        // they are nearly all its time (90,000 customers: the list ~60 ms,
        // the imported ids ~35 ms on PostgreSQL).
        let ((todo, total), imported) =
            futures_util::future::try_join(self.customer_ids_to_do(), self.imported_customer_ids())
                .await?;
        let unread = self.sort_out(todo, &imported, filters).await?;
        let counts = self.record_unread(unread.known, unread.before).await?;
        self.report(counts, total).await?;
        if unread.to_read.is_empty() {
            return Ok(counts);
        }
        let reps = self.rep_matcher(options).await?;
        self.read_and_record(unread.to_read, filters, options, &reps, counts, total)
            .await
    }

    /// The customer ids this run has still to do (each once; a resumed run
    /// skips what it recorded), and how many customers the account has.
    async fn customer_ids_to_do(&self) -> Result<(Vec<AdcCustomerId>, u64), ImportRunError> {
        let ids = self
            .adc
            .customer_ids(&AdcCustomerQuery::default())
            .await
            .map_err(|e| run_error("listing the Alarm.com customers", e))?;
        let mut seen_ids = HashSet::with_capacity(ids.len());
        let todo: Vec<AdcCustomerId> = ids
            .into_iter()
            .filter(|id| seen_ids.insert(*id) && !self.done.contains(&id.to_string()))
            .collect();
        Ok((todo, seen_ids.len() as u64))
    }

    /// What any run of the connection imported before, in one look for the
    /// whole list: counted, neither read again nor listed one by one, so a
    /// run with nothing new costs the list and a few statements. Compared as
    /// numbers, not texts: no text is made for the ids seen before, which on
    /// a run with nothing new are all of them.
    async fn imported_customer_ids(&self) -> Result<HashSet<AdcCustomerId>, ImportRunError> {
        Ok(self
            .ports
            .imports
            .all_imported_external_ids(
                self.dealer,
                self.import.connection_id,
                ImportKind::Customers,
            )
            .await
            .map_err(store_failed)?
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect())
    }

    /// Sets aside, without reading them, the customers the id filter refuses,
    /// those `imported` before, and those with an ISP account link.
    async fn sort_out(
        &self,
        todo: Vec<AdcCustomerId>,
        imported: &HashSet<AdcCustomerId>,
        filters: &CustomerFilters,
    ) -> Result<Unread, ImportRunError> {
        let mut known = Vec::new();
        let mut to_check = Vec::with_capacity(todo.len());
        for id in todo {
            match filters.check_id(id) {
                Ok(()) => to_check.push(id),
                Err(reason) => known.push(RecordOutcome::FilteredOut {
                    external_id: id.to_string(),
                    reason,
                }),
            }
        }
        let checked = to_check.len();
        let mut to_read: Vec<String> = to_check
            .into_iter()
            .filter(|id| !imported.contains(id))
            .map(|id| id.to_string())
            .collect();
        let before = (checked - to_read.len()) as u64;
        if !to_read.is_empty() {
            known.extend(self.match_isp_linked(&mut to_read).await?);
        }
        Ok(Unread {
            known,
            before,
            to_read,
        })
    }

    /// Matched before create, without reading them: customers with an ISP
    /// account link (provisioned, linked, made through the Builder
    /// Program) are the billing customers they are linked to. They leave
    /// `to_read`.
    async fn match_isp_linked(
        &self,
        to_read: &mut Vec<String>,
    ) -> Result<Vec<RecordOutcome>, ImportRunError> {
        let mut linked = self
            .ports
            .imports
            .isp_linked_customers(self.dealer, self.import.connection_id, to_read)
            .await
            .map_err(store_failed)?;
        linked.sort();
        let linked_ids: HashSet<&str> = linked.iter().map(|(e, _)| e.as_str()).collect();
        to_read.retain(|id| !linked_ids.contains(id.as_str()));
        Ok(linked
            .into_iter()
            .map(|(external_id, billing_id)| {
                let how =
                    format!("matched by its ISP account link: billing customer '{billing_id}'");
                self.matched(external_id, billing_id, how, None)
            })
            .collect())
    }

    /// Records the outcomes known without reading, a chunk at a time, and
    /// counts the customers imported before.
    async fn record_unread(
        &self,
        known: Vec<RecordOutcome>,
        before: u64,
    ) -> Result<ImportCounts, ImportRunError> {
        let mut counts = self.import.counts;
        let mut known = known.into_iter();
        loop {
            let chunk: Vec<RecordOutcome> = known.by_ref().take(self.settings.chunk).collect();
            if chunk.is_empty() {
                break;
            }
            counts = self.record(chunk).await?;
        }
        // Also when none is found now, if an earlier attempt counted some.
        if before > 0 || counts.already_imported > 0 {
            counts = self
                .ports
                .imports
                .record_imported_before(self.dealer, self.import.id, before)
                .await
                .map_err(store_failed)?;
        }
        Ok(counts)
    }

    /// Where the reps of the customers read are found (A2): the users this
    /// connection imported, the billing users' login names, the default rep.
    async fn rep_matcher(&self, options: &CustomerOptions) -> Result<RepMatcher, ImportRunError> {
        Ok(RepMatcher {
            by_support_id: self
                .ports
                .imports
                .all_imported_records(self.dealer, self.import.connection_id, ImportKind::Users)
                .await
                .map_err(store_failed)?
                .into_iter()
                .collect(),
            by_login: self.billing_user_logins().await?,
            default_rep: options.default_rep.clone(),
        })
    }

    /// Reads the customers `read_concurrency` at a time and records them a
    /// chunk at a time, the next chunk read while the one before is written.
    /// A stop after this attempt recorded something is an interruption, not
    /// a failure (the run is getting on).
    async fn read_and_record(
        &self,
        to_read: Vec<String>,
        filters: &CustomerFilters,
        options: &CustomerOptions,
        reps: &RepMatcher,
        mut counts: ImportCounts,
        total: u64,
    ) -> Result<ImportCounts, ImportRunError> {
        let adc = self.adc;
        let reads = stream::iter(to_read)
            .map(|external_id| async move {
                let result = match external_id.parse::<AdcCustomerId>() {
                    Ok(id) => adc.customer(id).await,
                    Err(_) => Err(AdcError::BadAnswer(format!(
                        "'{external_id}' is not a customer id"
                    ))),
                };
                (external_id, result)
            })
            .buffered(self.settings.read_concurrency);
        let mut reads = std::pin::pin!(reads);
        let mut writing = None;
        let mut writing_len = 0u64;
        let seen_at_start = counts.seen;
        loop {
            // The next chunk is read while the one before is written.
            let previous: OptionFuture<_> = writing.take().into();
            let base = counts.seen + writing_len;
            let (written, chunk) = join(
                previous,
                self.read_chunk(&mut reads, filters, options, reps, base, total),
            )
            .await;
            if let Some(written) = written {
                counts = written?;
                self.report(counts, total).await?;
            }
            if let Some(stop) = chunk.stop {
                let progressed = !chunk.outcomes.is_empty() || counts.seen > seen_at_start;
                if !chunk.outcomes.is_empty() {
                    self.record(chunk.outcomes).await?;
                }
                return Err(match stop {
                    ImportRunError::Transient(e) if progressed => ImportRunError::Interrupted(e),
                    other => other,
                });
            }
            writing_len = chunk.outcomes.len() as u64;
            if !chunk.outcomes.is_empty() {
                writing = Some(self.record(chunk.outcomes));
            }
            if !chunk.more {
                break;
            }
        }
        if let Some(last) = writing {
            counts = last.await?;
            self.report(counts, total).await?;
        }
        Ok(counts)
    }

    /// Reads customers until the chunk is full, or reading it took
    /// `chunk_time` (a slow Alarm.com still sees a checkpoint often), or the
    /// reads end, or the credentials stop working; then matches the ones
    /// read against billing (their DealerCustomerIds, in one look). Progress
    /// is reported as they are read, `base` being the records counted before.
    async fn read_chunk(
        &self,
        reads: &mut (impl Stream<Item = (String, Result<AdcCustomer, AdcError>)> + Unpin),
        filters: &CustomerFilters,
        options: &CustomerOptions,
        reps: &RepMatcher,
        base: u64,
        total: u64,
    ) -> ReadChunk {
        let started = Instant::now();
        let mut chunk = ReadChunk {
            outcomes: Vec::with_capacity(self.settings.chunk),
            stop: None,
            more: true,
        };
        let mut read = Vec::with_capacity(self.settings.chunk);
        for _ in 0..self.settings.chunk {
            let Some((external_id, result)) = reads.next().await else {
                chunk.more = false;
                break;
            };
            match result {
                Ok(customer) => read.push(Read::Customer(external_id, Box::new(customer))),
                // The credentials stopped working: nothing else will.
                Err(e @ AdcError::Unauthorized) => {
                    chunk.stop = Some(run_error("reading a customer", e));
                    break;
                }
                // Left for the next attempt, which resumes here (the client
                // has retried the read already, with backoff, under the
                // connection's throttle); the rest of the chunk is read and
                // recorded first, so an Alarm.com that fails now and then
                // still lets each attempt get on. The last reason is kept.
                Err(e) if e.is_transient() => {
                    chunk.stop = Some(run_error(&format!("reading customer {external_id}"), e));
                }
                Err(e) => read.push(Read::Done(RecordOutcome::Failed {
                    external_id,
                    reason: e.to_string(),
                })),
            }
            if let Err(stop) = self.report_if_due(base + read.len() as u64, total).await {
                chunk.stop = Some(stop);
                break;
            }
            if started.elapsed() >= self.settings.chunk_time {
                break;
            }
        }
        let wanted: Vec<String> = read
            .iter()
            .filter_map(|r| match r {
                Read::Customer(_, c) if filters.check(c).is_ok() => {
                    let dcid = c.dealer_customer_id.trim();
                    (!dcid.is_empty()).then(|| dcid.to_owned())
                }
                _ => None,
            })
            .collect();
        let known: HashMap<String, Option<String>> = if wanted.is_empty() {
            HashMap::new()
        } else {
            match self
                .ports
                .imports
                .billing_customers_among(self.dealer, self.import.connection_id, &wanted)
                .await
            {
                Ok(found) => found
                    .into_iter()
                    .map(|(id, account)| (id.as_str().to_owned(), account))
                    .collect(),
                // The customers read are read again by the next attempt.
                Err(e) => {
                    chunk.stop = Some(store_failed(e));
                    read.retain(|r| matches!(r, Read::Done(_)));
                    HashMap::new()
                }
            }
        };
        for r in read {
            chunk.outcomes.push(match r {
                Read::Customer(external_id, customer) => {
                    self.customer_outcome(external_id, &customer, filters, options, reps, &known)
                }
                Read::Done(outcome) => outcome,
            });
        }
        chunk
    }

    fn customer_outcome(
        &self,
        external_id: String,
        customer: &AdcCustomer,
        filters: &CustomerFilters,
        options: &CustomerOptions,
        reps: &RepMatcher,
        known: &HashMap<String, Option<String>>,
    ) -> RecordOutcome {
        if let Err(reason) = filters.check(customer) {
            return RecordOutcome::FilteredOut {
                external_id,
                reason,
            };
        }
        if let Some(m) = match_by_dealer_customer_id(customer, known) {
            return self.matched(external_id, m.billing_id, m.how, m.link);
        }
        let (rep, how) = reps.rep_of(customer);
        let fields = customer_fields(customer, options, rep);
        if fields.display_name().trim().is_empty() {
            return RecordOutcome::Failed {
                external_id,
                reason: "the Alarm.com customer has neither a name nor a commercial name"
                    .to_owned(),
            };
        }
        let id = match customer_billing_id(customer.customer_id) {
            Ok(id) => id,
            Err(reason) => {
                return RecordOutcome::Failed {
                    external_id,
                    reason,
                }
            }
        };
        let event = NewEvent {
            event_type: types::BILLING_CUSTOMER_CREATED.into(),
            subject_kind: "customer".into(),
            subject_id: id.to_string(),
            connection_id: Some(self.import.connection_id),
            data: serde_json::json!({
                "record": fields,
                "source": "adc_import",
                "import_id": self.import.id,
                "adc_customer_id": customer.customer_id,
            }),
        };
        self.imported(
            external_id,
            ImportWrite::Customer { id, fields },
            vec![event],
            Some(how.to_owned()),
        )
    }
}
