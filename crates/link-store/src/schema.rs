//! The one schema both backends share: portable types only (text, integers, bool,
//! timestamp as UTC, binary), JSON kept as text. The per-backend migrations in
//! `migrations/sqlite` and `migrations/postgres` create exactly these columns.

diesel::table! {
    connections (id) {
        id -> Text,
        dealer -> Text,
        name -> Text,
        name_key -> Text,
        provider -> Text,
        endpoint -> Text,
        auth_mode -> Text,
        auto_sync -> Bool,
        status -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    credentials (connection_id, owner) {
        connection_id -> Text,
        dealer -> Text,
        owner -> Text,
        username -> Text,
        secret -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    inbound_credentials (connection_id) {
        connection_id -> Text,
        dealer -> Text,
        username -> Text,
        secret -> Binary,
        rotated_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (dealer, user_id, idem_key) {
        dealer -> Text,
        user_id -> Text,
        idem_key -> Text,
        fingerprint -> Text,
        state -> Text,
        status -> Nullable<Integer>,
        headers -> Nullable<Text>,
        body -> Nullable<Binary>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(credentials -> connections (connection_id));
diesel::joinable!(inbound_credentials -> connections (connection_id));

diesel::allow_tables_to_appear_in_same_query!(
    connections,
    credentials,
    inbound_credentials,
    idempotency_keys,
);
