//! `ConnectionStore` on diesel: connections, the upstream credentials each one
//! uses, and the inbound credential Stages calls back with. Every query filters
//! on the dealer, so another dealer's id reads as "not found".

mod migration_state;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use domain::audit::NewAuditEntry;
use domain::connection::{
    AuthMode, ConflictPolicy, Connection, ConnectionChanges, ConnectionId, ConnectionName,
    ConnectionStatus, ConnectionUpdate, Credential, CredentialOwner, Endpoint, InboundCredential,
    MigrationJob, NewConnection, ProviderKind, ProviderSettings,
};
use domain::jobs::{Job, JobId, JobState, NewJob};
use domain::store::{ConnectionStore, InboundLookup, PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::{Page, Secret};

use crate::audit::uuid_text;
use crate::crypto::Cipher;
use crate::db::{conflict_on_unique, per_backend, write_transaction, DbConnection, Fail};
use crate::jobs::enqueue_within;
use crate::schema::{connections, credentials, inbound_credentials};
use crate::Store;
pub(crate) use migration_state::MigrationState;

/// Largest page the store returns, whatever the caller asks.
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = connections, treat_none_as_default_value = false)]
pub(crate) struct ConnectionRow {
    id: String,
    dealer: String,
    name: String,
    name_key: String,
    provider: String,
    endpoint: String,
    auth_mode: String,
    auto_sync: bool,
    status: String,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    /// JSON of `ProviderSettings`.
    settings: String,
    conflict_policy: String,
    migrate_on_connect: bool,
    /// The reconcile queued as the connection's migration (S20).
    migration_job_id: Option<String>,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = connections)]
struct ConnectionChangeset {
    name: Option<String>,
    name_key: Option<String>,
    endpoint: Option<String>,
    auth_mode: Option<String>,
    auto_sync: Option<bool>,
    status: Option<String>,
    settings: Option<String>,
    conflict_policy: Option<String>,
    migrate_on_connect: Option<bool>,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = credentials, treat_none_as_default_value = false)]
pub(crate) struct CredentialRow {
    connection_id: String,
    dealer: String,
    owner: String,
    username: String,
    secret: Vec<u8>,
    updated_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = inbound_credentials, treat_none_as_default_value = false)]
struct InboundCredentialRow {
    connection_id: String,
    dealer: String,
    username: String,
    secret: Vec<u8>,
    rotated_at: NaiveDateTime,
}

/// Case-insensitive uniqueness is decided on this key, computed here rather than
/// in SQL because SQLite's `lower()` folds ASCII only.
fn name_key(name: &ConnectionName) -> String {
    name.as_str().trim().to_lowercase()
}

/// Stored times are whole microseconds: PostgreSQL keeps no more, and a value
/// must read back equal to what was written on either backend.
pub(crate) fn to_db_time(t: DateTime<Utc>) -> NaiveDateTime {
    t.trunc_subsecs(6).naive_utc()
}

pub(crate) fn from_db_time(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

fn id_text(id: ConnectionId) -> String {
    id.0.hyphenated().to_string()
}

/// The stored owner of the dealer's credential of a connection.
pub(crate) const DEALER_OWNER: &str = "dealer";

fn owner_text(owner: &CredentialOwner) -> String {
    match owner {
        CredentialOwner::Dealer => DEALER_OWNER.to_owned(),
        CredentialOwner::User(user) => format!("user:{user}"),
    }
}

/// Associated data binding a sealed password to its row.
fn credential_aad(id: &str, owner: &str) -> String {
    format!("credentials|{id}|{owner}")
}

fn inbound_aad(id: &str) -> String {
    format!("inbound_credentials|{id}")
}

pub(crate) fn corrupt(what: String) -> Fail {
    tracing::error!(%what, "unreadable row");
    Fail::Store(StoreError::Unavailable(format!(
        "a stored row is unreadable: {what}"
    )))
}

fn undecryptable() -> Fail {
    tracing::error!("a stored secret could not be decrypted");
    Fail::Store(StoreError::Unavailable(
        "a stored secret could not be decrypted; is the encryption key right?".into(),
    ))
}

pub(crate) fn open_secret(cipher: &Cipher, aad: &str, blob: &[u8]) -> Result<Secret, Fail> {
    let plain = cipher.open(aad, blob).map_err(|_| undecryptable())?;
    let text = String::from_utf8(plain).map_err(|_| undecryptable())?;
    Ok(Secret::new(text))
}

impl InboundCredentialRow {
    fn into_domain(self, cipher: &Cipher) -> Result<InboundCredential, Fail> {
        Ok(InboundCredential {
            secret: open_secret(cipher, &inbound_aad(&self.connection_id), &self.secret)?,
            username: self.username,
            rotated_at: from_db_time(self.rotated_at),
        })
    }
}

impl ConnectionRow {
    /// With the state of its migration job, read alongside (see `find_row`).
    fn into_domain(self, migration_state: Option<String>) -> Result<Connection, Fail> {
        let id = uuid::Uuid::parse_str(&self.id)
            .map_err(|_| corrupt(format!("connection id '{}'", self.id)))?;
        let field = |what: &str| corrupt(format!("connection {} has a bad {what}", self.id));
        Ok(Connection {
            id: ConnectionId(id),
            name: ConnectionName::parse(&self.name).map_err(|_| field("name"))?,
            provider: ProviderKind::parse(&self.provider).ok_or_else(|| field("provider"))?,
            endpoint: Endpoint::parse(&self.endpoint).map_err(|_| field("endpoint"))?,
            auth_mode: AuthMode::parse(&self.auth_mode).ok_or_else(|| field("auth mode"))?,
            status: ConnectionStatus::parse(&self.status).ok_or_else(|| field("status"))?,
            settings: serde_json::from_str(&self.settings).map_err(|_| field("settings"))?,
            dealer: DealerId(self.dealer),
            auto_sync: self.auto_sync,
            conflict_policy: ConflictPolicy::parse(&self.conflict_policy)
                .ok_or_else(|| field("conflict policy"))?,
            migrate_on_connect: self.migrate_on_connect,
            migration: match (&self.migration_job_id, migration_state) {
                (Some(job), Some(state)) => Some(MigrationJob {
                    job_id: JobId(
                        uuid::Uuid::parse_str(job).map_err(|_| field("migration job id"))?,
                    ),
                    state: JobState::parse(&state).ok_or_else(|| field("migration job state"))?,
                }),
                // Jobs are kept; a missing one is a broken reference.
                (Some(_), None) => return Err(field("migration job")),
                (None, _) => None,
            },
            version: self.version,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }
}

fn settings_json(settings: &ProviderSettings) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| "{}".to_owned())
}

fn duplicate_name(name: &ConnectionName) -> String {
    format!("a connection named '{}' already exists", name.as_str())
}

fn find_connection(
    conn: &mut DbConnection,
    dealer: &str,
    id: ConnectionId,
) -> Result<Connection, Fail> {
    let (row, migration) = find_row(conn, dealer, &id_text(id))?;
    row.into_domain(migration)
}

/// The dealer's credential of a connection, opened.
fn read_credential(
    conn: &mut DbConnection,
    cipher: &Cipher,
    dealer: &str,
    id: ConnectionId,
    owner: &CredentialOwner,
) -> Result<Option<Credential>, Fail> {
    let (id, owner) = (id_text(id), owner_text(owner));
    // One statement, so the endpoint is the one the credential was kept for
    // (a move to another server deletes the credential in its transaction).
    let row = credentials::table
        .inner_join(connections::table)
        .filter(credentials::dealer.eq(dealer))
        .filter(credentials::connection_id.eq(&id))
        .filter(credentials::owner.eq(&owner))
        .select((CredentialRow::as_select(), connections::endpoint))
        .first::<(CredentialRow, String)>(conn)
        .optional()?;
    let Some((row, endpoint)) = row else {
        require_connection(conn, dealer, &id)?;
        return Ok(None);
    };
    row.open(cipher, &endpoint).map(Some)
}

/// A connection read with its migration's state and, if asked for in the
/// same statement, a credential of it (see `links::settle`).
pub(crate) fn connection_with_credential(
    cipher: &Cipher,
    row: ConnectionRow,
    migration_state: Option<String>,
    credential: Option<CredentialRow>,
) -> Result<(Connection, Option<Credential>), Fail> {
    let credential = credential
        .map(|c| c.open(cipher, &row.endpoint))
        .transpose()?;
    Ok((row.into_domain(migration_state)?, credential))
}

impl CredentialRow {
    /// The credential, its secret decrypted, for the connection's `endpoint`.
    fn open(self, cipher: &Cipher, endpoint: &str) -> Result<Credential, Fail> {
        let aad = credential_aad(&self.connection_id, &self.owner);
        Ok(Credential {
            password: open_secret(cipher, &aad, &self.secret)?,
            username: self.username,
            updated_at: from_db_time(self.updated_at),
            endpoint: stored_endpoint(&self.connection_id, endpoint)?,
        })
    }
}

fn stored_endpoint(id: &str, endpoint: &str) -> Result<Endpoint, Fail> {
    Endpoint::parse(endpoint).map_err(|_| corrupt(format!("connection {id} has a bad endpoint")))
}

/// The endpoint of the dealer's connection `id` (NotFound when there is none).
fn endpoint_of(conn: &mut DbConnection, dealer: &str, id: &str) -> Result<Endpoint, Fail> {
    let endpoint: String = connections::table
        .filter(connections::dealer.eq(dealer))
        .filter(connections::id.eq(id))
        .select(connections::endpoint)
        .first(conn)?;
    stored_endpoint(id, &endpoint)
}

/// The state of a connection's migration job goes with every read of it.
type WithMigration = (ConnectionRow, Option<String>);

fn find_row(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<WithMigration> {
    connections::table
        .filter(connections::dealer.eq(dealer))
        .filter(connections::id.eq(id))
        .select((ConnectionRow::as_select(), MigrationState))
        .first(conn)
}

/// The dealer's connection exists; credentials of a missing or foreign
/// connection answer NotFound rather than "no credential".
pub(crate) fn require_connection(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
) -> Result<(), Fail> {
    connections::table
        .filter(connections::dealer.eq(dealer))
        .filter(connections::id.eq(id))
        .select(connections::id)
        .first::<String>(conn)?;
    Ok(())
}

/// Writes `changes` (bumping the version) when the stored version is
/// `expected_version` (if given), and reads the connection back.
fn apply_changes(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    changes: &ConnectionChanges,
    expected_version: Option<i64>,
    now: NaiveDateTime,
) -> Result<Connection, Fail> {
    if changes.is_empty() {
        // Nothing to write: the version stays, but it is still checked.
        let (row, migration) = find_row(conn, dealer, id)?;
        if expected_version.is_some_and(|v| v != row.version) {
            return Err(StoreError::VersionMismatch.into());
        }
        return row.into_domain(migration);
    }
    let set = (
        ConnectionChangeset {
            name: changes.name.as_ref().map(|n| n.as_str().to_owned()),
            name_key: changes.name.as_ref().map(name_key),
            endpoint: changes.endpoint.as_ref().map(|e| e.as_str().to_owned()),
            auth_mode: changes.auth_mode.map(|m| m.as_str().to_owned()),
            auto_sync: changes.auto_sync,
            conflict_policy: changes.conflict_policy.map(|p| p.as_str().to_owned()),
            status: changes.status.map(|s| s.as_str().to_owned()),
            settings: changes.settings.as_ref().map(settings_json),
            migrate_on_connect: changes.migrate_on_connect,
        },
        connections::version.eq(connections::version + 1),
        connections::updated_at.eq(now),
    );
    let target = connections::table
        .filter(connections::dealer.eq(dealer))
        .filter(connections::id.eq(id));
    let updated = match expected_version {
        Some(v) => diesel::update(target.filter(connections::version.eq(v)))
            .set(set)
            .execute(conn),
        None => diesel::update(target).set(set).execute(conn),
    };
    let updated = conflict_on_unique(updated, || {
        duplicate_name(changes.name.as_ref().expect("only a rename can collide"))
    })?;
    if updated == 0 {
        return Err(missing_or_stale(conn, dealer, id));
    }
    let (row, migration) = find_row(conn, dealer, id)?;
    row.into_domain(migration)
}

/// Inserts or replaces the credential of `row`'s owner.
fn upsert_credential(conn: &mut DbConnection, row: &CredentialRow) -> Result<(), Fail> {
    per_backend!(conn, |c| diesel::insert_into(credentials::table)
        .values(row)
        .on_conflict((credentials::connection_id, credentials::owner))
        .do_update()
        .set((
            credentials::username.eq(&row.username),
            credentials::secret.eq(&row.secret),
            credentials::updated_at.eq(&row.updated_at),
        ))
        .execute(c))?;
    Ok(())
}

/// After a conditional write touched no row: was the row missing, or its version stale?
fn missing_or_stale(conn: &mut DbConnection, dealer: &str, id: &str) -> Fail {
    match require_connection(conn, dealer, id) {
        Ok(()) => Fail::Store(StoreError::VersionMismatch),
        Err(e) => e,
    }
}

#[async_trait]
impl ConnectionStore for Store {
    async fn insert_connection(&self, new: NewConnection) -> StoreResult<Connection> {
        let now = to_db_time(Utc::now());
        let row = ConnectionRow {
            id: id_text(ConnectionId::new()),
            dealer: new.dealer.0.clone(),
            name: new.name.as_str().to_owned(),
            name_key: name_key(&new.name),
            provider: new.provider.as_str().to_owned(),
            endpoint: new.endpoint.as_str().to_owned(),
            auth_mode: new.auth_mode.as_str().to_owned(),
            auto_sync: new.auto_sync,
            status: new.status.as_str().to_owned(),
            version: 1,
            created_at: now,
            updated_at: now,
            settings: settings_json(&ProviderSettings::default()),
            conflict_policy: new.conflict_policy.as_str().to_owned(),
            migrate_on_connect: new.migrate_on_connect,
            migration_job_id: None,
        };
        self.run(move |conn, _| {
            conflict_on_unique(
                diesel::insert_into(connections::table)
                    .values(&row)
                    .execute(conn),
                || duplicate_name(&new.name),
            )?;
            row.into_domain(None)
        })
        .await
    }

    async fn connection(&self, dealer: &DealerId, id: ConnectionId) -> StoreResult<Connection> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| find_connection(conn, &dealer, id))
            .await
    }

    async fn list_connections(
        &self,
        dealer: &DealerId,
        provider: Option<ProviderKind>,
        page: PageRequest,
    ) -> StoreResult<Page<Connection>> {
        let dealer = dealer.0.clone();
        let limit = page.limit.clamp(1, MAX_PAGE_SIZE) as usize;
        self.run(move |conn, _| {
            let mut query = connections::table
                .filter(connections::dealer.eq(dealer))
                .select((ConnectionRow::as_select(), MigrationState))
                .order(connections::id.asc())
                // One more than asked tells whether another page follows.
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(provider) = provider {
                query = query.filter(connections::provider.eq(provider.as_str()));
            }
            if let Some(after) = page.after {
                query = query.filter(connections::id.gt(after));
            }
            let mut rows: Vec<WithMigration> = query.load(conn)?;
            let next_page_token = if rows.len() > limit {
                rows.truncate(limit);
                rows.last().map(|(r, _)| r.id.clone())
            } else {
                None
            };
            let items = rows
                .into_iter()
                .map(|(row, migration)| row.into_domain(migration))
                .collect::<Result<_, _>>()?;
            Ok(Page {
                items,
                next_page_token,
            })
        })
        .await
    }

    async fn update_connection_as(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        changes: ConnectionChanges,
        expected_version: Option<i64>,
        dealer_credential: Option<(String, Secret)>,
        actor: &str,
    ) -> StoreResult<ConnectionUpdate> {
        let connection_id = id;
        let dealer = dealer.0.clone();
        let id = id_text(id);
        let actor = actor.to_owned();
        let now = to_db_time(Utc::now());
        self.run(move |conn, cipher| {
            write_transaction(conn, |conn| {
                let (before, migration) = find_row(conn, &dealer, &id)?;
                let before = before.into_domain(migration)?;
                let connection =
                    apply_changes(conn, &dealer, &id, &changes, expected_version, now)?;
                let moved = !before.endpoint.same_origin(&connection.endpoint);
                let mut credentials_dropped = false;
                if moved {
                    let deleted = diesel::delete(
                        credentials::table
                            .filter(credentials::dealer.eq(&dealer))
                            .filter(credentials::connection_id.eq(&id)),
                    )
                    .execute(conn)?;
                    credentials_dropped = deleted > 0;
                }
                if let Some((username, password)) = &dealer_credential {
                    let owner = owner_text(&CredentialOwner::Dealer);
                    upsert_credential(
                        conn,
                        &CredentialRow {
                            secret: cipher
                                .seal(&credential_aad(&id, &owner), password.expose().as_bytes()),
                            connection_id: id.clone(),
                            dealer: dealer.clone(),
                            owner,
                            username: username.clone(),
                            updated_at: now,
                        },
                    )?;
                }
                if credentials_dropped {
                    crate::audit::insert_audit(
                        conn,
                        &dealer,
                        vec![NewAuditEntry {
                            actor: actor.clone(),
                            action: "drop_credentials".into(),
                            connection_id: Some(connection_id),
                            kind: "connection".into(),
                            billing_id: None,
                            external_id: None,
                            before: Some(serde_json::json!({
                                "endpoint": before.endpoint.as_str(),
                            })),
                            after: Some(serde_json::json!({
                                "endpoint": connection.endpoint.as_str(),
                                "new_dealer_credential": dealer_credential.is_some(),
                            })),
                        }],
                    )?;
                }
                Ok(ConnectionUpdate {
                    connection,
                    credentials_dropped,
                })
            })
        })
        .await
    }

    async fn delete_connection(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let id = id_text(id);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let target = connections::table
                    .filter(connections::dealer.eq(&dealer))
                    .filter(connections::id.eq(&id));
                // Credentials go with it: ON DELETE CASCADE.
                let deleted = match expected_version {
                    Some(v) => {
                        diesel::delete(target.filter(connections::version.eq(v))).execute(conn)?
                    }
                    None => diesel::delete(target).execute(conn)?,
                };
                if deleted == 0 {
                    return Err(missing_or_stale(conn, &dealer, &id));
                }
                Ok(())
            })
        })
        .await
    }

    async fn put_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        owner: &CredentialOwner,
        username: &str,
        password: &Secret,
    ) -> StoreResult<Credential> {
        let dealer = dealer.0.clone();
        let id = id_text(id);
        let owner = owner_text(owner);
        let username = username.to_owned();
        let password = password.clone();
        let now = to_db_time(Utc::now());
        self.run(move |conn, cipher| {
            let row = CredentialRow {
                secret: cipher.seal(&credential_aad(&id, &owner), password.expose().as_bytes()),
                connection_id: id,
                dealer,
                owner,
                username,
                updated_at: now,
            };
            let endpoint = write_transaction(conn, |conn| {
                let endpoint = endpoint_of(conn, &row.dealer, &row.connection_id)?;
                upsert_credential(conn, &row)?;
                Ok::<_, Fail>(endpoint)
            })?;
            Ok(Credential {
                username: row.username,
                password,
                updated_at: from_db_time(now),
                endpoint,
            })
        })
        .await
    }

    async fn credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        owner: &CredentialOwner,
    ) -> StoreResult<Option<Credential>> {
        let dealer = dealer.0.clone();
        let owner = owner.clone();
        self.run(move |conn, cipher| read_credential(conn, cipher, &dealer, id, &owner))
            .await
    }

    async fn delete_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        owner: &CredentialOwner,
    ) -> StoreResult<bool> {
        let dealer = dealer.0.clone();
        let id = id_text(id);
        let owner = owner_text(owner);
        self.run(move |conn, _| {
            let deleted = diesel::delete(
                credentials::table
                    .filter(credentials::dealer.eq(&dealer))
                    .filter(credentials::connection_id.eq(&id))
                    .filter(credentials::owner.eq(&owner)),
            )
            .execute(conn)?;
            if deleted == 0 {
                require_connection(conn, &dealer, &id)?;
            }
            Ok(deleted > 0)
        })
        .await
    }

    async fn inbound_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
    ) -> StoreResult<Option<InboundCredential>> {
        let dealer = dealer.0.clone();
        let id = id_text(id);
        self.run(move |conn, cipher| {
            let row = inbound_credentials::table
                .filter(inbound_credentials::dealer.eq(&dealer))
                .filter(inbound_credentials::connection_id.eq(&id))
                .select(InboundCredentialRow::as_select())
                .first(conn)
                .optional()?;
            let Some(row) = row else {
                require_connection(conn, &dealer, &id)?;
                return Ok(None);
            };
            row.into_domain(cipher).map(Some)
        })
        .await
    }

    async fn set_inbound_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        credential: &InboundCredential,
    ) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let id = id_text(id);
        let credential = credential.clone();
        self.run(move |conn, cipher| {
            let row = InboundCredentialRow {
                secret: cipher.seal(&inbound_aad(&id), credential.secret.expose().as_bytes()),
                connection_id: id,
                dealer,
                username: credential.username,
                rotated_at: to_db_time(credential.rotated_at),
            };
            write_transaction(conn, |conn| {
                require_connection(conn, &row.dealer, &row.connection_id)?;
                let upsert =
                    per_backend!(conn, |c| diesel::insert_into(inbound_credentials::table)
                        .values(&row)
                        .on_conflict(inbound_credentials::connection_id)
                        .do_update()
                        .set((
                            inbound_credentials::username.eq(&row.username),
                            inbound_credentials::secret.eq(&row.secret),
                            inbound_credentials::rotated_at.eq(&row.rotated_at),
                        ))
                        .execute(c));
                conflict_on_unique(upsert, || {
                    "the inbound username is already used by another connection".to_owned()
                })?;
                Ok(())
            })
        })
        .await
    }

    async fn start_migration(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        job: NewJob,
    ) -> StoreResult<Option<Job>> {
        let dealer = dealer.0.clone();
        let id = id_text(id);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| start_migration(conn, &dealer, &id, job))
        })
        .await
    }
}

/// See [`ConnectionStore::start_migration`].
fn start_migration(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    job: NewJob,
) -> Result<Option<Job>, Fail> {
    let (row, state) = find_row(conn, dealer, id)?;
    let again = row.migration_job_id.is_none()
        || matches!(
            state.as_deref().and_then(JobState::parse),
            Some(JobState::Failed | JobState::Dead | JobState::Cancelled)
        );
    if !row.migrate_on_connect || !again {
        return Ok(None);
    }
    // The row is taken first, on the value read: of replicas arming at once
    // one updates it (and holds it to the end of the transaction), the others
    // then update nothing and queue nothing.
    let target = connections::table
        .filter(connections::dealer.eq(dealer))
        .filter(connections::id.eq(id));
    let set = connections::migration_job_id.eq(uuid_text(job.id.0));
    let taken = match &row.migration_job_id {
        None => diesel::update(target.filter(connections::migration_job_id.is_null()))
            .set(set)
            .execute(conn)?,
        Some(old) => diesel::update(target.filter(connections::migration_job_id.eq(old)))
            .set(set)
            .execute(conn)?,
    };
    if taken == 0 {
        return Ok(None);
    }
    let asked = job.id;
    let queued = enqueue_within(conn, job)?;
    if queued.id != asked {
        // Coalesced with a reconcile already queued: that one is the migration.
        diesel::update(target)
            .set(connections::migration_job_id.eq(uuid_text(queued.id.0)))
            .execute(conn)?;
    }
    Ok(Some(queued))
}

/// Inbound callbacks carry no bearer token, so no dealer: the connection is
/// found by its id alone, and the caller checks the Basic credentials against
/// the inbound credential returned with it.
#[async_trait]
impl InboundLookup for Store {
    async fn connection_for_callback(
        &self,
        id: ConnectionId,
    ) -> StoreResult<Option<(Connection, Option<InboundCredential>)>> {
        let id = id_text(id);
        // Read on every callback, by primary keys only, in one statement on
        // the inner connection (see `links_of_billing_id`).
        self.run_index_read(move |conn, cipher| {
            let row = per_backend!(conn, |c| connections::table
                .left_join(inbound_credentials::table)
                .filter(connections::id.eq(&id))
                .select((
                    ConnectionRow::as_select(),
                    MigrationState,
                    Option::<InboundCredentialRow>::as_select(),
                ))
                .first(c)
                .optional())?;
            let Some((row, migration, inbound)) = row else {
                return Ok(None);
            };
            let inbound = inbound
                .map(|credential| credential.into_domain(cipher))
                .transpose()?;
            Ok(Some((row.into_domain(migration)?, inbound)))
        })
        .await
    }
}
