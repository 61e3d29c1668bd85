-- Interactive services providers (I1-I5): the provider settings of a
-- connection, the ISP accounts provisioned or linked for billing customers,
-- and a log of inbound provider callbacks for their health report.

-- JSON: default service plan, Builder Program flag, billing notifications,
-- Alarm.net callback URL (see domain::connection::ProviderSettings)
ALTER TABLE connections ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

CREATE TABLE isp_accounts (
    id                  TEXT    NOT NULL PRIMARY KEY,
    dealer              TEXT    NOT NULL,
    connection_id       TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    billing_customer_id TEXT    NOT NULL,
    -- the provider's customer id; null while the account is being provisioned
    external_id         TEXT,
    -- 'pending' (reserved while the provider is called) or 'active'
    state               TEXT    NOT NULL,
    -- 'customer' or 'commitment'
    kind                TEXT    NOT NULL,
    -- 'created', 'linked' or 'recovered'
    origin              TEXT    NOT NULL,
    builder_program_id  BIGINT,
    commitment_id       BIGINT,
    package_id          BIGINT,
    login_name          TEXT    NOT NULL,
    created_by          TEXT    NOT NULL,
    version             BIGINT  NOT NULL,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    -- one provider account per billing customer and connection, and the other way round
    CONSTRAINT isp_accounts_billing_key UNIQUE (connection_id, billing_customer_id),
    CONSTRAINT isp_accounts_external_key UNIQUE (connection_id, external_id)
);

CREATE INDEX isp_accounts_dealer_connection ON isp_accounts (dealer, connection_id, id);

CREATE TABLE callback_log (
    id            TEXT NOT NULL PRIMARY KEY,
    dealer        TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    -- which receiving endpoint: 'alarmnet' or 'alarm_com_billing'
    source        TEXT NOT NULL,
    -- 'accepted', 'duplicate' or 'rejected'
    outcome       TEXT NOT NULL,
    -- the sender's event id, when it was readable
    event_id      TEXT,
    -- why a callback was rejected; never a secret
    reason        TEXT,
    received_at   TEXT NOT NULL
);

CREATE INDEX callback_log_connection_time ON callback_log (connection_id, source, received_at);
