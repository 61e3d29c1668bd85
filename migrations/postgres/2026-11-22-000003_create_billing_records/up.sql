-- The billing system's records as it last sent them, one row per (dealer, id):
-- the ids are the billing system's own, unique only within a dealer. Ids use the
-- "C" collation: keyset paging compares them bytewise, as SQLite does.

CREATE TABLE billing_customers (
    dealer        TEXT      NOT NULL,
    id            TEXT COLLATE "C" NOT NULL,
    version       BIGINT    NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    -- 'person' or 'business'
    kind          TEXT      NOT NULL,
    first_name    TEXT      NOT NULL,
    last_name     TEXT      NOT NULL,
    business_name TEXT      NOT NULL,
    phone         TEXT      NOT NULL,
    email         TEXT      NOT NULL,
    address1      TEXT      NOT NULL,
    address2      TEXT      NOT NULL,
    city          TEXT      NOT NULL,
    state         TEXT      NOT NULL,
    zip           TEXT      NOT NULL,
    -- kept by the store on every write, so a search is one LIKE on each backend:
    -- the phone's digits alone, and the searchable fields lowercased
    phone_digits  TEXT      NOT NULL,
    search_text   TEXT      NOT NULL,
    PRIMARY KEY (dealer, id)
);

CREATE TABLE billing_sites (
    dealer      TEXT      NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    version     BIGINT    NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    customer_id TEXT COLLATE "C",
    name        TEXT      NOT NULL,
    address1    TEXT      NOT NULL,
    address2    TEXT      NOT NULL,
    city        TEXT      NOT NULL,
    state       TEXT      NOT NULL,
    zip         TEXT      NOT NULL,
    phone       TEXT      NOT NULL,
    info        TEXT      NOT NULL,
    PRIMARY KEY (dealer, id),
    CONSTRAINT billing_sites_customer_fkey FOREIGN KEY (dealer, customer_id)
        REFERENCES billing_customers (dealer, id) ON DELETE RESTRICT
);

-- the sites of a customer (delete checks)
CREATE INDEX billing_sites_customer ON billing_sites (dealer, customer_id);

CREATE TABLE billing_systems (
    dealer        TEXT      NOT NULL,
    id            TEXT COLLATE "C" NOT NULL,
    version       BIGINT    NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    site_id       TEXT COLLATE "C" NOT NULL,
    system_number TEXT      NOT NULL,
    panel_type    TEXT      NOT NULL,
    location      TEXT      NOT NULL,
    info          TEXT      NOT NULL,
    PRIMARY KEY (dealer, id),
    CONSTRAINT billing_systems_site_fkey FOREIGN KEY (dealer, site_id)
        REFERENCES billing_sites (dealer, id) ON DELETE RESTRICT
);

-- the systems of a site, in id order
CREATE INDEX billing_systems_site ON billing_systems (dealer, site_id, id);

CREATE TABLE billing_users (
    dealer           TEXT      NOT NULL,
    id               TEXT COLLATE "C" NOT NULL,
    version          BIGINT    NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    first_name       TEXT      NOT NULL,
    last_name        TEXT      NOT NULL,
    email            TEXT      NOT NULL,
    phone            TEXT      NOT NULL,
    login_name       TEXT      NOT NULL,
    active           BOOLEAN   NOT NULL,
    can_login        BOOLEAN   NOT NULL,
    permission_group TEXT      NOT NULL,
    -- JSON array of strings
    tags             TEXT      NOT NULL,
    PRIMARY KEY (dealer, id)
);
