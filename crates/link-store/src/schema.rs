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
        settings -> Text,
        conflict_policy -> Text,
        migrate_on_connect -> Bool,
        migration_job_id -> Nullable<Text>,
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

diesel::table! {
    billing_customers (dealer, id) {
        dealer -> Text,
        id -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        kind -> Text,
        first_name -> Text,
        last_name -> Text,
        business_name -> Text,
        phone -> Text,
        email -> Text,
        address1 -> Text,
        address2 -> Text,
        city -> Text,
        state -> Text,
        zip -> Text,
        phone_digits -> Text,
        search_text -> Text,
        office_location -> Text,
        tags -> Text,
        rep_id -> Nullable<Text>,
        sale_date -> Nullable<Text>,
        two_way_voice -> Bool,
        account_number -> Text,
        receiver_number -> Text,
    }
}

diesel::table! {
    billing_sites (dealer, id) {
        dealer -> Text,
        id -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        customer_id -> Nullable<Text>,
        name -> Text,
        address1 -> Text,
        address2 -> Text,
        city -> Text,
        state -> Text,
        zip -> Text,
        phone -> Text,
        info -> Text,
    }
}

diesel::table! {
    billing_systems (dealer, id) {
        dealer -> Text,
        id -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        site_id -> Text,
        system_number -> Text,
        panel_type -> Text,
        location -> Text,
        info -> Text,
    }
}

diesel::table! {
    billing_users (dealer, id) {
        dealer -> Text,
        id -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        phone -> Text,
        login_name -> Text,
        active -> Bool,
        can_login -> Bool,
        permission_group -> Text,
        tags -> Text,
        address1 -> Text,
        address2 -> Text,
        city -> Text,
        state -> Text,
        zip -> Text,
        user_field -> Text,
    }
}

diesel::table! {
    imports (id) {
        id -> Text,
        dealer -> Text,
        connection_id -> Text,
        kind -> Text,
        filters -> Text,
        options -> Text,
        seen -> BigInt,
        imported -> BigInt,
        already_imported -> BigInt,
        filtered_out -> BigInt,
        failed -> BigInt,
        finished_state -> Nullable<Text>,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    import_items (import_id, external_id) {
        import_id -> Text,
        seq -> BigInt,
        external_id -> Text,
        outcome -> Text,
        billing_id -> Nullable<Text>,
        reason -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    imported_records (connection_id, kind, external_id) {
        connection_id -> Text,
        kind -> Text,
        external_id -> Text,
        dealer -> Text,
        billing_id -> Text,
        import_id -> Text,
        imported_at -> Timestamp,
    }
}

diesel::table! {
    links (id) {
        id -> Text,
        dealer -> Text,
        connection_id -> Text,
        kind -> Text,
        billing_id -> Text,
        external_id -> Text,
        parent_id -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_synced -> Nullable<Text>,
        claim_expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    deliberate_unlinks (connection_id, kind, billing_id, external_id) {
        connection_id -> Text,
        kind -> Text,
        billing_id -> Text,
        external_id -> Text,
        dealer -> Text,
        unlinked_at -> Timestamp,
        actor -> Text,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        dealer -> Text,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        connection_id -> Nullable<Text>,
        kind -> Text,
        billing_id -> Nullable<Text>,
        external_id -> Nullable<Text>,
        before_json -> Nullable<Text>,
        after_json -> Nullable<Text>,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        dealer -> Text,
        kind -> Text,
        payload -> Text,
        state -> Text,
        attempts -> BigInt,
        max_attempts -> BigInt,
        run_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        progress_done -> BigInt,
        progress_total -> Nullable<BigInt>,
        summary -> Nullable<Text>,
        last_error -> Nullable<Text>,
        unique_key -> Nullable<Text>,
        cancel_requested -> Bool,
        created_by -> Text,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        serial_key -> Nullable<Text>,
    }
}

diesel::table! {
    events (seq) {
        seq -> BigInt,
        id -> Text,
        dealer -> Text,
        event_type -> Text,
        subject_kind -> Text,
        subject_id -> Text,
        connection_id -> Nullable<Text>,
        data -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    webhook_subscriptions (id) {
        id -> Text,
        dealer -> Text,
        url -> Text,
        types -> Text,
        secret -> Binary,
        status -> Text,
        disabled_reason -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_inbox (connection_id, event_id) {
        connection_id -> Text,
        dealer -> Text,
        event_id -> Text,
        payload -> Text,
        received_at -> Timestamp,
        outcome -> Nullable<Text>,
        processed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    isp_accounts (id) {
        id -> Text,
        dealer -> Text,
        connection_id -> Text,
        billing_customer_id -> Text,
        external_id -> Nullable<Text>,
        state -> Text,
        kind -> Text,
        origin -> Text,
        builder_program_id -> Nullable<BigInt>,
        commitment_id -> Nullable<BigInt>,
        package_id -> Nullable<BigInt>,
        login_name -> Text,
        created_by -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    callback_log (id) {
        id -> Text,
        dealer -> Text,
        connection_id -> Text,
        source -> Text,
        outcome -> Text,
        event_id -> Nullable<Text>,
        reason -> Nullable<Text>,
        received_at -> Timestamp,
    }
}

diesel::table! {
    link_field_issues (id) {
        id -> Text,
        dealer -> Text,
        link_id -> Text,
        connection_id -> Text,
        record_kind -> Text,
        billing_id -> Text,
        external_id -> Text,
        field -> Text,
        issue -> Text,
        billing_value -> Text,
        stages_value -> Text,
        last_synced -> Nullable<Text>,
        reason -> Nullable<Text>,
        first_seen_at -> Timestamp,
        last_seen_at -> Timestamp,
    }
}

diesel::table! {
    batches (id) {
        id -> Text,
        dealer -> Text,
        operation -> Text,
        connection_id -> Nullable<Text>,
        dry_run -> Bool,
        total -> BigInt,
        succeeded -> BigInt,
        failed -> BigInt,
        finished_state -> Nullable<Text>,
        created_by -> Text,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    batch_items (batch_id, position) {
        batch_id -> Text,
        position -> BigInt,
        subject -> Text,
        input -> Text,
        state -> Text,
        result -> Nullable<Text>,
        problem -> Nullable<Text>,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(credentials -> connections (connection_id));
diesel::joinable!(isp_accounts -> connections (connection_id));
diesel::joinable!(callback_log -> connections (connection_id));
diesel::joinable!(inbound_credentials -> connections (connection_id));
diesel::joinable!(links -> connections (connection_id));
diesel::joinable!(deliberate_unlinks -> connections (connection_id));
diesel::joinable!(webhook_inbox -> connections (connection_id));

diesel::allow_tables_to_appear_in_same_query!(
    connections,
    credentials,
    inbound_credentials,
    idempotency_keys,
    billing_customers,
    billing_sites,
    billing_systems,
    billing_users,
    links,
    deliberate_unlinks,
    audit_log,
    jobs,
    events,
    webhook_subscriptions,
    webhook_inbox,
    imports,
    import_items,
    imported_records,
    isp_accounts,
    callback_log,
    link_field_issues,
    batches,
    batch_items,
);
