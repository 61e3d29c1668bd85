//! Claiming due jobs, fairly between dealers (B15). One deployment serves
//! many dealers, so the oldest-first order alone would let one dealer's
//! burst (a mass edit, an import's follow-ups) delay every other dealer's
//! pushes and callbacks by the length of the burst. A claim therefore
//! shares its batch out by dealer: the dealer with the fewest jobs running
//! (then the one whose next job waited longest) gets the next slot, a
//! dealer never runs more than `max_running_per_dealer` jobs at once, and
//! within a dealer interactive kinds go before bulk kinds.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

use super::{JobRow, LOST_ON_LAST_ATTEMPT, RUNNING, WRITE_ATTEMPTS};
use crate::db::{per_backend, write_transaction, DbConnection, Fail};
use crate::prepared::kept_sql;
use crate::schema::jobs;
use domain::jobs::kinds::STAGES_CALLBACK;
use domain::jobs::JobState;

/// The row is queued, and no job of its unique key and no job of its serial
/// key is running (always true for a job without keys). `'queued'` is
/// written in, not bound, so that a plan may walk the queued jobs' partial
/// indexes.
const QUEUED_WITHOUT_RUNNING_TWIN: &str = "jobs.state = 'queued' \
     AND NOT EXISTS (SELECT 1 FROM jobs AS twin \
     WHERE twin.dealer = jobs.dealer AND twin.unique_key = jobs.unique_key \
     AND twin.state = 'running') \
     AND NOT EXISTS (SELECT 1 FROM jobs AS twin \
     WHERE twin.dealer = jobs.dealer AND twin.serial_key = jobs.serial_key \
     AND twin.state = 'running')";

/// Claims up to `limit` due jobs in one transaction. Two claims racing on
/// PostgreSQL may both see no running job of a serial key; the unique index
/// on running serial keys then refuses the second, whose next round skips
/// that job.
pub(super) fn claim_due(
    conn: &mut DbConnection,
    claim: &Claiming,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Vec<JobRow>, Fail> {
    for _ in 0..WRITE_ATTEMPTS {
        match claim_batch(conn, claim, now, lease_until) {
            Err(Fail::Db(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))) => {
                continue
            }
            other => return other,
        }
    }
    Ok(Vec::new())
}

/// A claim, owned for the blocking thread.
pub(super) struct Claiming {
    pub kinds: Vec<String>,
    pub worker: String,
    pub limit: usize,
    pub settle_lost_leases: bool,
    /// 0: no cap.
    pub max_running_per_dealer: usize,
    /// At most this many jobs of these kinds.
    pub most_of_kind: Vec<(String, usize)>,
}

/// Running jobs whose lease ran out with attempts left: their worker is
/// gone, so they are taken again (first, they waited longest).
macro_rules! lost_leases {
    ($kinds:expr, $now:expr) => {
        jobs::table
            .filter(jobs::kind.eq_any($kinds))
            .filter(jobs::cancel_requested.eq(false))
            .filter(jobs::state.eq(RUNNING))
            .filter(jobs::lease_expires_at.lt($now))
            .filter(jobs::attempts.lt(jobs::max_attempts))
            .order((jobs::run_at.asc(), jobs::id.asc()))
            .select(JobRow::as_select())
    };
}

/// A dealer with due jobs: when its oldest became due, and how many of its
/// jobs run now (on every replica).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
struct Head {
    #[diesel(sql_type = Text)]
    dealer: String,
    #[diesel(sql_type = Timestamp)]
    head_at: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    running: i64,
}

/// What a claim's reads of queued jobs write into their SQL: the kinds, and
/// on SQLite the index to walk. Left to itself, SQLite's planner sorted
/// every queued row for the first dealer (through the state index) and
/// read the whole table at each step of the walk over dealers; and it read
/// every job of the table, finished ones too, and sorted the queued ones
/// for each dealer's due jobs (`EXPLAIN QUERY PLAN`: `SCAN jobs`, `USE TEMP
/// B-TREE FOR ORDER BY`): 4 to 6 ms a claim with 2,000 jobs queued, a third
/// of the time SQLite's one writer was held in an Auto Sync run.
struct QueuedSql {
    /// The kinds, quoted: `'a', 'b'`.
    kinds: String,
    /// Which of the queued jobs' indexes holds the kinds.
    among: Among,
    indexed_by: &'static str,
    /// A dealer's queued, due jobs whose keys have no job running, oldest
    /// first: the dealer, the time and how many go in at the `?`s. Written
    /// once a claim, not once a dealer.
    dealer_due: String,
}

impl QueuedSql {
    fn new(conn: &DbConnection, kinds: &[String]) -> Result<Self, Fail> {
        // The kinds are the service's own names, never a caller's text; one
        // that could not be written into the statement as it is is a bug, and
        // said so rather than never claimed.
        if let Some(bad) = kinds
            .iter()
            .find(|k| !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            return Err(crate::connections::corrupt(format!(
                "job kind '{bad}' is not a plain name"
            )));
        }
        let among = match kinds {
            [only] if only == STAGES_CALLBACK => Among::OnlyCallbacks,
            _ if kinds.iter().any(|k| k == STAGES_CALLBACK) => Among::All,
            _ => Among::ButCallbacks,
        };
        let kinds = kinds
            .iter()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let (indexed_by, lock) = match conn {
            // Rows another claimer holds are skipped, not waited for; SQLite's
            // claims take turns on its one writer.
            DbConnection::Postgresql(_) => ("", " FOR UPDATE SKIP LOCKED"),
            DbConnection::Sqlite(_) => (among.indexed_by(), ""),
        };
        let dealer_due = format!(
            "SELECT * FROM jobs {indexed_by} \
             WHERE jobs.dealer = ? AND jobs.run_at <= ? AND jobs.cancel_requested = FALSE \
             AND {} AND {QUEUED_WITHOUT_RUNNING_TWIN} \
             ORDER BY jobs.run_at, jobs.id LIMIT ?{lock}",
            among.of_kinds(&kinds, "jobs")
        );
        Ok(Self {
            kinds,
            among,
            indexed_by,
            dealer_due,
        })
    }
}

/// Stages callbacks come in bursts of tens of thousands and are applied a
/// few at a time (`most_of_kind`), so a claim's reads keep them apart from
/// the other kinds: through one index of all queued jobs, a claim with no
/// room left for callbacks stepped over every one queued to find the
/// others' jobs (22 ms a claim at 42,000 queued: claims held SQLite's one
/// writer 800 ms of every 2 s while they came in), and one with room for 8
/// read (and on PostgreSQL locked) 378 a dealer to take those 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Among {
    /// Every queued job: `jobs_queued_by_dealer`.
    All,
    /// `jobs_queued_but_callbacks`.
    ButCallbacks,
    /// `jobs_queued_callbacks`.
    OnlyCallbacks,
}

impl Among {
    /// Table `t`'s row is of `kinds` (quoted), said in the words of the
    /// partial index that holds them, so that a plan may walk it.
    fn of_kinds(self, kinds: &str, t: &str) -> String {
        let of_kinds = format!("{t}.kind IN ({kinds})");
        match self {
            Self::All => of_kinds,
            Self::ButCallbacks => format!("{of_kinds} AND {t}.kind <> '{STAGES_CALLBACK}'"),
            Self::OnlyCallbacks => format!("{of_kinds} AND {t}.kind = '{STAGES_CALLBACK}'"),
        }
    }

    /// SQLite's planner is told the index (see [`QueuedSql`]).
    fn indexed_by(self) -> &'static str {
        match self {
            Self::All => "INDEXED BY jobs_queued_by_dealer",
            Self::ButCallbacks => "INDEXED BY jobs_queued_but_callbacks",
            Self::OnlyCallbacks => "INDEXED BY jobs_queued_callbacks",
        }
    }
}

/// How a claim reads each dealer's due jobs, and the most each read takes:
/// one walk of all its kinds (`all`); but when callbacks are among them
/// with less room than the batch, a walk of the callbacks that reads at
/// most twice their room, and one of the other kinds.
fn due_walks(
    conn: &DbConnection,
    claim: &Claiming,
    all: QueuedSql,
) -> Result<Vec<(QueuedSql, Option<usize>)>, Fail> {
    let room = claim
        .most_of_kind
        .iter()
        .find(|(kind, _)| kind == STAGES_CALLBACK)
        .map(|(_, room)| *room);
    match room {
        Some(room) if all.among == Among::All && room < claim.limit => {
            let callbacks = [STAGES_CALLBACK.to_owned()];
            let mut walks = vec![(QueuedSql::new(conn, &callbacks)?, Some(room * 2))];
            let others: Vec<String> = claim
                .kinds
                .iter()
                .filter(|k| *k != STAGES_CALLBACK)
                .cloned()
                .collect();
            if !others.is_empty() {
                walks.push((QueuedSql::new(conn, &others)?, None));
            }
            Ok(walks)
        }
        _ => Ok(vec![(all, None)]),
    }
}

/// The dealers with queued, due jobs of these kinds. A recursive query walks
/// the queued jobs' (dealer, run_at) index from one dealer to the next, so
/// it costs one index seek per dealer, however many jobs each has queued.
fn heads(conn: &mut DbConnection, sql: &QueuedSql, now: NaiveDateTime) -> Result<Vec<Head>, Fail> {
    // The time goes in at each `?` (three).
    let indexed_by = sql.indexed_by;
    let query = || {
        let due = |t: &str| {
            format!(
                "{t}.state = 'queued' AND {t}.run_at <= ? \
                 AND {t}.cancel_requested = FALSE AND {}",
                sql.among.of_kinds(&sql.kinds, t)
            )
        };
        let queued = |t: &str| format!("jobs {t} {indexed_by}");
        // Each step finds the next dealer with a due job by one probe of
        // the (dealer, run_at, id) index of queued jobs; then one probe
        // per dealer finds its oldest due job.
        format!(
            "WITH RECURSIVE heads(dealer) AS ( \
               SELECT (SELECT f.dealer FROM {jobs_f} WHERE {first} \
                 ORDER BY f.dealer LIMIT 1) \
               UNION ALL \
               SELECT (SELECT n.dealer FROM {jobs_n} WHERE {next} AND n.dealer > h.dealer \
                 ORDER BY n.dealer LIMIT 1) \
               FROM heads h WHERE h.dealer IS NOT NULL) \
             SELECT h.dealer AS dealer, \
               (SELECT q.run_at FROM {jobs_q} WHERE {oldest} AND q.dealer = h.dealer \
                 ORDER BY q.dealer, q.run_at LIMIT 1) AS head_at, \
               (SELECT COUNT(*) FROM jobs r WHERE r.dealer = h.dealer AND r.state = 'running') \
                 AS running \
             FROM heads h WHERE h.dealer IS NOT NULL",
            jobs_f = queued("f"),
            jobs_n = queued("n"),
            jobs_q = queued("q"),
            first = due("f"),
            next = due("n"),
            oldest = due("q"),
        )
    };
    let text = query();
    // Kept prepared (one text per worker's kinds): planned every run, it
    // cost PostgreSQL 0.8 ms a claim.
    Ok(per_backend!(conn, |c| kept_sql(text.as_str())
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .load(c))?)
}

/// Up to `take` of `dealer`'s queued, due jobs ([`QueuedSql::dealer_due`]),
/// in one walk of the queued jobs' (dealer, run_at, id) index. A job asked
/// to stop is never taken.
fn dealer_due(
    conn: &mut DbConnection,
    sql: &QueuedSql,
    dealer: &str,
    now: NaiveDateTime,
    take: i64,
) -> Result<Vec<JobRow>, Fail> {
    // Kept prepared (one text per worker's kinds): the claim's read of a
    // dealer's due jobs took PostgreSQL 1.1 ms to plan.
    Ok(per_backend!(conn, |c| kept_sql(sql.dealer_due.as_str())
        .bind::<Text, _>(dealer)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(take)
        .load(c))?)
}

/// How many jobs to claim of each dealer: slot by slot, to the dealer with
/// the fewest jobs running or given a slot so far (then the one whose next
/// job waited longest), never past the cap. Each dealer's take is doubled
/// to leave room for jobs a key holds back.
fn shares(heads: &[Head], limit: usize, cap: usize) -> Vec<(String, usize)> {
    let room = |h: &Head| {
        let running = usize::try_from(h.running).unwrap_or(usize::MAX);
        if cap == 0 {
            limit
        } else {
            cap.saturating_sub(running).min(limit)
        }
    };
    let mut given: Vec<usize> = vec![0; heads.len()];
    for _ in 0..limit {
        let next = heads
            .iter()
            .enumerate()
            .filter(|(i, h)| given[*i] < room(h))
            .min_by_key(|(i, h)| (h.running.saturating_add(given[*i] as i64), h.head_at));
        match next {
            Some((i, _)) => given[i] += 1,
            None => break,
        }
    }
    heads
        .iter()
        .zip(given)
        .filter(|(_, n)| *n > 0)
        .map(|(h, n)| (h.dealer.clone(), n * 2))
        .collect()
}

/// Whether a kind is bulk work (a reconcile, an import, a batch), which a
/// dealer's interactive jobs (pushes, callbacks, webhook deliveries) go before.
fn is_bulk(kind: &str) -> bool {
    domain::jobs::kinds::BULK.contains(&kind)
}

/// The claim's batch out of the candidates (each dealer's queued jobs, with
/// `running` of each dealer): lost leases first, then by dealer share (jobs
/// running plus the job's place in its dealer's queue, interactive before
/// bulk), then age; no two of one key; no dealer past its cap, no kind past
/// its most.
fn fair_batch(
    lost: Vec<JobRow>,
    queued: Vec<Vec<JobRow>>,
    running: &HashMap<&str, i64>,
    limit: usize,
    cap: usize,
    most_of_kind: &[(String, usize)],
) -> Vec<JobRow> {
    let mut ranked: Vec<(i64, JobRow)> = lost.into_iter().map(|j| (i64::MIN, j)).collect();
    for mut jobs in queued {
        // Stable: oldest first within interactive, then within bulk.
        jobs.sort_by_key(|j| is_bulk(&j.kind));
        for (place, job) in jobs.into_iter().enumerate() {
            let dealer_running = running.get(job.dealer.as_str()).copied().unwrap_or(0);
            ranked.push((dealer_running.saturating_add(place as i64), job));
        }
    }
    ranked.sort_by(|(a, x), (b, y)| a.cmp(b).then(x.run_at.cmp(&y.run_at)).then(x.id.cmp(&y.id)));
    let mut taken: HashMap<String, i64> = HashMap::new();
    let capped = ranked.into_iter().map(|(_, j)| j).filter(|j| {
        if cap == 0 || j.state == RUNNING {
            return true;
        }
        let now_running = running.get(j.dealer.as_str()).copied().unwrap_or(0);
        let n = taken.entry(j.dealer.clone()).or_insert(0);
        if now_running.saturating_add(*n) >= cap as i64 {
            return false;
        }
        *n += 1;
        true
    });
    let mut room: HashMap<&str, usize> = most_of_kind
        .iter()
        .map(|(kind, most)| (kind.as_str(), *most))
        .collect();
    let within_room = capped.filter(|j| match room.get_mut(j.kind.as_str()) {
        Some(0) => false,
        Some(left) => {
            *left -= 1;
            true
        }
        None => true,
    });
    one_per_key(within_room, limit)
}

fn claim_batch(
    conn: &mut DbConnection,
    claim: &Claiming,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Vec<JobRow>, Fail> {
    write_transaction(conn, |conn| {
        if claim.settle_lost_leases {
            settle_lost_leases(conn, now)?;
        }
        if let DbConnection::Postgresql(pg) = &mut *conn {
            // Ordered index walks, whatever the statistics say: planned for
            // the empty queue ANALYZE last saw, the walk over dealers took
            // bitmap scans and sorts of every queued row per dealer (5 s a
            // claim at 40,000 queued over 1,000 dealers, against 10 ms).
            // And one plan made per connection for each of the claim's
            // statements: in `auto` mode PostgreSQL planned the read of a
            // dealer's due jobs again at 614 of 789 claims, 0.55 ms each,
            // more than the read ran (pg_stat_statements, an Auto Sync run
            // of 10,000 edits). PostgreSQL 11 has no `plan_cache_mode`: the
            // claim goes on planning each run there. Local to this
            // transaction.
            kept_sql(
                "SELECT set_config('enable_seqscan', 'off', true), \
                 set_config('enable_bitmapscan', 'off', true), \
                 set_config('enable_sort', 'off', true), \
                 (SELECT set_config('plan_cache_mode', 'force_generic_plan', true) \
                  WHERE current_setting('plan_cache_mode', true) IS NOT NULL)",
            )
            .execute(pg)?;
        }
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        // Rows another claimer holds are skipped, not waited for (on
        // SQLite, BEGIN IMMEDIATE: no other writer until this one commits).
        // Lost leases are rare (a replica died): looked for with the
        // housekeeping, not at every claim.
        let lost: Vec<JobRow> = match &mut *conn {
            _ if !claim.settle_lost_leases => Vec::new(),
            DbConnection::Postgresql(pg) => lost_leases!(&claim.kinds, now)
                .limit(limit)
                .for_update()
                .skip_locked()
                .load(pg)?,
            DbConnection::Sqlite(sqlite) => {
                lost_leases!(&claim.kinds, now).limit(limit).load(sqlite)?
            }
        };
        let all = QueuedSql::new(conn, &claim.kinds)?;
        let heads = heads(conn, &all, now)?;
        let walks = due_walks(conn, claim, all)?;
        let running: HashMap<&str, i64> = heads
            .iter()
            .map(|h| (h.dealer.as_str(), h.running))
            .collect();
        let mut queued = Vec::new();
        for (dealer, take) in shares(&heads, claim.limit, claim.max_running_per_dealer) {
            let mut due = Vec::new();
            for (sql, most) in &walks {
                let take = i64::try_from(most.map_or(take, |m| m.min(take))).unwrap_or(i64::MAX);
                due.extend(dealer_due(conn, sql, &dealer, now, take)?);
            }
            // In the order of one walk, for the dealer's share.
            if walks.len() > 1 {
                due.sort_by(|a, b| a.run_at.cmp(&b.run_at).then_with(|| a.id.cmp(&b.id)));
            }
            queued.push(due);
        }
        let mut batch = fair_batch(
            lost,
            queued,
            &running,
            claim.limit,
            claim.max_running_per_dealer,
            &claim.most_of_kind,
        );
        if batch.is_empty() {
            return Ok(batch);
        }
        let ids: Vec<&str> = batch.iter().map(|j| j.id.as_str()).collect();
        mark_claimed(conn, &ids, &claim.worker, lease_until, now)?;
        for job in &mut batch {
            job.state = RUNNING.to_owned();
            job.attempts += 1;
            job.lease_owner = Some(claim.worker.clone());
            job.lease_expires_at = Some(lease_until);
            job.started_at = job.started_at.or(Some(now));
        }
        Ok(batch)
    })
}

/// Claimed jobs' update, less its filter: the worker, the lease's end and
/// the time go in at the `?`s.
const MARK_CLAIMED: &str = "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
     lease_owner = ?, lease_expires_at = ?, started_at = COALESCE(started_at, ?)";

/// Marks the claimed jobs running under `worker`'s lease until `lease_until`;
/// a job's first start is kept across attempts.
fn mark_claimed(
    conn: &mut DbConnection,
    ids: &[&str],
    worker: &str,
    lease_until: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<(), Fail> {
    match conn {
        DbConnection::Postgresql(pg) => {
            kept_sql(format!("{MARK_CLAIMED} WHERE id = ANY(?)"))
                .bind::<Text, _>(worker)
                .bind::<Timestamp, _>(lease_until)
                .bind::<Timestamp, _>(now)
                .bind::<Array<Text>, _>(ids)
                .execute(pg)?;
        }
        // A statement per job: with its statistics taken while `jobs` held
        // one row, SQLite planned `id IN (...)` as a scan of the whole table
        // (2 to 3 ms a claim in an Auto Sync run, in its write lock), while
        // a lookup of one key is planned as one whatever they say.
        DbConnection::Sqlite(sqlite) => {
            let one = format!("{MARK_CLAIMED} WHERE id = ?");
            for id in ids {
                kept_sql(one.as_str())
                    .bind::<Text, _>(worker)
                    .bind::<Timestamp, _>(lease_until)
                    .bind::<Timestamp, _>(now)
                    .bind::<Text, _>(*id)
                    .execute(sqlite)?;
            }
        }
    }
    Ok(())
}

/// The first `limit` of `due` (in claim order) with no two of one serial key
/// or one unique key: those run one at a time, so the later one waits.
fn one_per_key(due: impl IntoIterator<Item = JobRow>, limit: usize) -> Vec<JobRow> {
    let mut keys = std::collections::HashSet::new();
    let mut batch = Vec::new();
    for job in due {
        if batch.len() == limit {
            break;
        }
        let serial = job
            .serial_key
            .as_ref()
            .map(|k| ("s", job.dealer.clone(), k.clone()));
        let unique = job
            .unique_key
            .as_ref()
            .map(|k| ("u", job.dealer.clone(), k.clone()));
        if [&serial, &unique]
            .into_iter()
            .flatten()
            .any(|key| keys.contains(key))
        {
            continue;
        }
        keys.extend(serial.into_iter().chain(unique));
        batch.push(job);
    }
    batch
}
/// Ends the running jobs whose lease ran out and that must not be claimed
/// again: those asked to stop end cancelled, those out of attempts dead.
/// Rows another claimer is settling right now are skipped, not waited for, so
/// two claimers never wait on each other here.
fn settle_lost_leases(conn: &mut DbConnection, now: NaiveDateTime) -> Result<(), Fail> {
    macro_rules! expired {
        () => {
            jobs::table
                .filter(jobs::state.eq(RUNNING))
                .filter(jobs::lease_expires_at.lt(now))
                .select(jobs::id)
        };
    }
    let (cancelled, dead): (Vec<String>, Vec<String>) = match &mut *conn {
        DbConnection::Postgresql(pg) => (
            expired!()
                .filter(jobs::cancel_requested.eq(true))
                .for_update()
                .skip_locked()
                .load(pg)?,
            expired!()
                .filter(jobs::cancel_requested.eq(false))
                .filter(jobs::attempts.ge(jobs::max_attempts))
                .for_update()
                .skip_locked()
                .load(pg)?,
        ),
        // One writer at a time: nothing to skip.
        DbConnection::Sqlite(sqlite) => (
            expired!()
                .filter(jobs::cancel_requested.eq(true))
                .load(sqlite)?,
            expired!()
                .filter(jobs::cancel_requested.eq(false))
                .filter(jobs::attempts.ge(jobs::max_attempts))
                .load(sqlite)?,
        ),
    };
    if !cancelled.is_empty() {
        diesel::update(jobs::table.filter(jobs::id.eq_any(&cancelled)))
            .set((
                jobs::state.eq(JobState::Cancelled.as_str()),
                jobs::finished_at.eq(now),
                jobs::lease_owner.eq(None::<String>),
                jobs::lease_expires_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
    }
    if !dead.is_empty() {
        diesel::update(jobs::table.filter(jobs::id.eq_any(&dead)))
            .set((
                jobs::state.eq(JobState::Dead.as_str()),
                jobs::finished_at.eq(now),
                jobs::last_error.eq(LOST_ON_LAST_ATTEMPT),
                jobs::lease_owner.eq(None::<String>),
                jobs::lease_expires_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
