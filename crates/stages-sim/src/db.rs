//! The simulator's in-memory central station and the rules it enforces.
//!
//! Everything the HTTP layer does goes through these methods, and tests can
//! call them directly too, so a rule (unique transmitter codes, no test on a
//! device in alarm, ...) holds the same whichever way a record is changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::error::ApiError;
use crate::lookups::{self, DEFAULT_TIME_ZONE};
use crate::wire::*;

/// The largest `page_size` accepted by the paged lists (`GET /sites`, `GET /devices`).
pub const MAX_PAGE_SIZE: u32 = 500;
/// The `page_size` used when none is given.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The number of the first site created.
pub const FIRST_SITE_NO: u64 = 10001;

#[derive(Debug, Clone)]
struct SiteRec {
    site: Site,
    devices: Vec<u64>,
    contacts: BTreeMap<u64, ContactRec>,
    notes: Vec<Note>,
    /// Site-level events (edits, contacts, notes); device events live on the device.
    events: Vec<HistoryEntry>,
}

#[derive(Debug, Clone)]
struct ContactRec {
    contact: Contact,
    pin: Option<String>,
}

#[derive(Debug, Clone)]
struct DeviceRec {
    /// `status` here is the base status; `on_test` is derived when served.
    device: Device,
    configurations: Vec<Configuration>,
    history: Vec<HistoryEntry>,
    tests: Vec<Test>,
}

/// The filters of `GET /api/v1/sites`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct SiteQuery {
    #[serde(default)]
    pub billing_id: Option<String>,
    #[serde(default)]
    pub unlinked: Option<bool>,
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub page_token: Option<String>,
    #[serde(default)]
    pub page_size: Option<u32>,
}

/// The filters of `GET /api/v1/devices` (every device, in device id order).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    pub billing_id: Option<String>,
    #[serde(default)]
    pub site_no: Option<String>,
    #[serde(default)]
    pub has_billing_id: Option<bool>,
    #[serde(default)]
    pub page_token: Option<String>,
    #[serde(default)]
    pub page_size: Option<u32>,
}

/// The whole in-memory state of the simulated central station.
#[derive(Debug, Clone)]
pub struct Db {
    sites: BTreeMap<u64, SiteRec>,
    devices: BTreeMap<u64, DeviceRec>,
    xmit_index: HashMap<String, u64>,
    site_billing: HashMap<String, u64>,
    device_billing: HashMap<String, u64>,
    next_site: u64,
    next_device: u64,
    next_contact: u64,
    next_config: u64,
    next_note: u64,
    next_history: u64,
    next_test: u64,
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

fn site_key(site_no: &str) -> Option<u64> {
    site_no.parse().ok()
}

fn prefixed_key(id: &str, prefix: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.parse().ok()
}

fn site_missing(site_no: &str) -> ApiError {
    ApiError::not_found(format!("no site {site_no:?}"))
}

fn device_missing(device_id: &str) -> ApiError {
    ApiError::not_found(format!("no device {device_id:?}"))
}

fn check_lookup(field: &str, list: &str, value: &str) -> Result<(), ApiError> {
    if lookups::allows(list, value) {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{field}: {value:?} is not a code of the {list} list"
        )))
    }
}

/// `mm:ss`, two digits each, seconds below 60; empty means "not given".
fn check_period(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Ok(());
    }
    let b = value.as_bytes();
    let ok = b.len() == 5
        && b[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
        && b[3] <= b'5';
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{field}: {value:?} is not a period in mm:ss form"
        )))
    }
}

fn check_non_empty(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        Err(ApiError::validation(format!("{field}: must not be empty")))
    } else {
        Ok(())
    }
}

/// `Some("")` means "no billing id".
fn normalize_billing(id: Option<String>) -> Option<String> {
    id.filter(|s| !s.is_empty())
}

fn validate_site(f: &SiteFields) -> Result<(), ApiError> {
    check_non_empty("name", &f.name)?;
    check_lookup("region", "regions", &f.region)?;
    check_lookup("time_zone", "time-zones", &f.time_zone)?;
    check_lookup("site_type", "site-types", &f.site_type)?;
    check_lookup("dispatch_type", "dispatch-types", &f.dispatch_type)?;
    check_lookup("ul_code", "ul-codes", &f.ul_code)?;
    check_lookup("authority", "authorities", &f.authority)?;
    Ok(())
}

fn validate_device(f: &DeviceFields) -> Result<(), ApiError> {
    check_non_empty("transmitter_code", &f.transmitter_code)?;
    check_lookup("device_type", "device-types", &f.device_type)?;
    check_lookup("oos_category", "oos-categories", &f.oos_category)?;
    check_lookup("timer_test_type", "timer-test-types", &f.timer_test_type)?;
    check_lookup("comm_type", "comm-types", &f.comm_type)?;
    check_lookup("lid_type", "lid-types", &f.lid_type)?;
    check_period("entry_period", &f.entry_period)?;
    check_period("exit_period", &f.exit_period)?;
    Ok(())
}

const PHONE_KINDS: [&str; 4] = ["home", "work", "mobile", "other"];

fn validate_phones(phones: &[ContactPhone]) -> Result<(), ApiError> {
    for p in phones {
        if !PHONE_KINDS.contains(&p.kind.as_str()) {
            return Err(ApiError::validation(format!(
                "phones.kind: {:?} is not one of home, work, mobile, other",
                p.kind
            )));
        }
        check_non_empty("phones.number", &p.number)?;
    }
    Ok(())
}

fn validate_contact(f: &ContactFields) -> Result<(), ApiError> {
    check_non_empty("name", &f.name)?;
    check_lookup("authority", "authorities", &f.authority)?;
    validate_phones(&f.phones)?;
    if let (Some(from), Some(to)) = (f.effective_date, f.expire_date) {
        if to < from {
            return Err(ApiError::validation(
                "expire_date: must not be before effective_date",
            ));
        }
    }
    Ok(())
}

fn in_window(at: DateTime<Utc>, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> bool {
    from.is_none_or(|f| at >= f) && to.is_none_or(|t| at <= t)
}

fn history_order(a: &HistoryEntry, b: &HistoryEntry) -> std::cmp::Ordering {
    let n = |h: &HistoryEntry| prefixed_key(&h.history_id, "H-").unwrap_or(0);
    a.occurred_at.cmp(&b.occurred_at).then(n(a).cmp(&n(b)))
}

/// The prefix of the page tokens of `GET /sites` (after a site number).
const SITE_TOKEN: &str = "after:";
/// The prefix of the page tokens of `GET /devices` (after a device number).
const DEVICE_TOKEN: &str = "device-after:";

fn encode_token(prefix: &str, key: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{prefix}{key}"))
}

fn decode_token(prefix: &str, token: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix(prefix)?
        .parse()
        .ok()
}

/// The checked `page_size` of a paged list.
fn page_size(size: Option<u32>) -> Result<usize, ApiError> {
    match size.unwrap_or(DEFAULT_PAGE_SIZE) {
        n @ 1..=MAX_PAGE_SIZE => Ok(n as usize),
        _ => Err(ApiError::validation(format!(
            "page_size: must be between 1 and {MAX_PAGE_SIZE}"
        ))),
    }
}

/// The key a page starts after; `None` for the first page.
fn page_start(prefix: &str, token: Option<&str>) -> Result<Option<u64>, ApiError> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => decode_token(prefix, t)
            .map(Some)
            .ok_or_else(|| ApiError::validation("page_token: not a token of this list")),
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Makes history entries with increasing ids.
struct HistoryIds<'a>(&'a mut u64);

impl HistoryIds<'_> {
    #[allow(clippy::too_many_arguments)]
    fn make(
        &mut self,
        device_id: &str,
        site_no: &str,
        at: DateTime<Utc>,
        kind: HistoryKind,
        event_code: &str,
        description: String,
        point: Option<u32>,
        on_test: bool,
    ) -> HistoryEntry {
        let id = *self.0;
        *self.0 += 1;
        HistoryEntry {
            history_id: format!("H-{id}"),
            device_id: device_id.to_string(),
            site_no: site_no.to_string(),
            occurred_at: at,
            kind,
            event_code: event_code.to_string(),
            description,
            point,
            on_test,
        }
    }
}

impl DeviceRec {
    fn has_current_test(&self, now: DateTime<Utc>) -> bool {
        self.tests
            .iter()
            .any(|t| Test::state_at(t.effective, t.expire, now) == TestState::Current)
    }

    /// Drops the tests that ran out, logging each where it ended.
    fn sweep(&mut self, now: DateTime<Utc>, ids: &mut HistoryIds<'_>) {
        if self.tests.iter().all(|t| t.expire > now) {
            return;
        }
        let (gone, kept): (Vec<Test>, Vec<Test>) =
            self.tests.drain(..).partition(|t| t.expire <= now);
        self.tests = kept;
        for t in gone {
            let entry = ids.make(
                &self.device.device_id,
                &self.device.site_no,
                t.expire,
                HistoryKind::Event,
                "TEST_EXPIRED",
                format!("Test {} expired", t.test_id),
                None,
                false,
            );
            self.history.push(entry);
        }
    }

    /// The device as served: `on_test` while a test runs on a normal device.
    fn view(&self, now: DateTime<Utc>) -> Device {
        let mut d = self.device.clone();
        if d.status == DeviceStatus::Normal && self.has_current_test(now) {
            d.status = DeviceStatus::OnTest;
        }
        d
    }

    fn tests_view(&self, now: DateTime<Utc>) -> Vec<Test> {
        self.tests
            .iter()
            .filter_map(|t| {
                let state = Test::state_at(t.effective, t.expire, now);
                (state != TestState::Expired).then(|| Test { state, ..t.clone() })
            })
            .collect()
    }
}

impl Db {
    pub fn new() -> Self {
        Db {
            sites: BTreeMap::new(),
            devices: BTreeMap::new(),
            xmit_index: HashMap::new(),
            site_billing: HashMap::new(),
            device_billing: HashMap::new(),
            next_site: FIRST_SITE_NO,
            next_device: 1,
            next_contact: 1,
            next_config: 1,
            next_note: 1,
            next_history: 1,
            next_test: 1,
        }
    }

    // ---- counts -------------------------------------------------------

    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    pub fn contact_count(&self) -> usize {
        self.sites.values().map(|s| s.contacts.len()).sum()
    }

    pub fn configuration_count(&self) -> usize {
        self.devices.values().map(|d| d.configurations.len()).sum()
    }

    pub fn note_count(&self) -> usize {
        self.sites.values().map(|s| s.notes.len()).sum()
    }

    /// Tests not yet expired at `now` (current and scheduled).
    pub fn test_count(&self, now: DateTime<Utc>) -> usize {
        self.devices
            .values()
            .map(|d| d.tests.iter().filter(|t| t.expire > now).count())
            .sum()
    }

    // ---- internal lookups ---------------------------------------------

    fn site_rec(&self, site_no: &str) -> Result<(u64, &SiteRec), ApiError> {
        let key = site_key(site_no).ok_or_else(|| site_missing(site_no))?;
        self.sites
            .get(&key)
            .map(|r| (key, r))
            .ok_or_else(|| site_missing(site_no))
    }

    fn site_mut(&mut self, site_no: &str) -> Result<&mut SiteRec, ApiError> {
        let key = site_key(site_no).ok_or_else(|| site_missing(site_no))?;
        self.sites
            .get_mut(&key)
            .ok_or_else(|| site_missing(site_no))
    }

    fn device_key(&self, device_id: &str) -> Result<u64, ApiError> {
        prefixed_key(device_id, "D-")
            .filter(|k| self.devices.contains_key(k))
            .ok_or_else(|| device_missing(device_id))
    }

    /// The device, with its expired tests swept away.
    fn device_mut(
        &mut self,
        device_id: &str,
        now: DateTime<Utc>,
    ) -> Result<&mut DeviceRec, ApiError> {
        let key = self.device_key(device_id)?;
        let mut ids = HistoryIds(&mut self.next_history);
        let rec = self
            .devices
            .get_mut(&key)
            .ok_or_else(|| device_missing(device_id))?;
        rec.sweep(now, &mut ids);
        Ok(rec)
    }

    fn site_event(&mut self, site_no: &str, now: DateTime<Utc>, code: &str, description: String) {
        let Some(key) = site_key(site_no) else { return };
        let entry = HistoryIds(&mut self.next_history).make(
            "",
            site_no,
            now,
            HistoryKind::Event,
            code,
            description,
            None,
            false,
        );
        if let Some(rec) = self.sites.get_mut(&key) {
            rec.events.push(entry);
        }
    }

    fn device_event(&mut self, key: u64, now: DateTime<Utc>, code: &str, description: String) {
        let mut ids = HistoryIds(&mut self.next_history);
        if let Some(rec) = self.devices.get_mut(&key) {
            let on_test = rec.has_current_test(now);
            let entry = ids.make(
                &rec.device.device_id,
                &rec.device.site_no,
                now,
                HistoryKind::Event,
                code,
                description,
                None,
                on_test,
            );
            rec.history.push(entry);
        }
    }

    /// Refuses a transmitter code already used by a device other than `except`.
    fn check_xmit_free(&self, code: &str, except: Option<u64>) -> Result<(), ApiError> {
        match self.xmit_index.get(code) {
            Some(k) if Some(*k) != except => Err(ApiError::duplicate_xmit(code)),
            _ => Ok(()),
        }
    }

    fn check_site_billing_free(
        &self,
        id: Option<&str>,
        except: Option<u64>,
    ) -> Result<(), ApiError> {
        match id.and_then(|id| self.site_billing.get(id).map(|k| (id, k))) {
            Some((id, k)) if Some(*k) != except => Err(ApiError::duplicate_billing_id("site", id)),
            _ => Ok(()),
        }
    }

    fn check_device_billing_free(
        &self,
        id: Option<&str>,
        except: Option<u64>,
    ) -> Result<(), ApiError> {
        match id.and_then(|id| self.device_billing.get(id).map(|k| (id, k))) {
            Some((id, k)) if Some(*k) != except => {
                Err(ApiError::duplicate_billing_id("device", id))
            }
            _ => Ok(()),
        }
    }

    fn normalize_site(mut f: SiteFields) -> SiteFields {
        if f.time_zone.is_empty() {
            f.time_zone = DEFAULT_TIME_ZONE.to_string();
        }
        f.billing_id = normalize_billing(f.billing_id);
        f
    }

    // ---- sites --------------------------------------------------------

    pub fn list_sites(&self, q: &SiteQuery) -> Result<Items<Site>, ApiError> {
        let size = page_size(q.page_size)?;
        let start = match page_start(SITE_TOKEN, q.page_token.as_deref())? {
            None => Bound::Unbounded,
            Some(key) => Bound::Excluded(key),
        };
        let needle =
            q.q.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_lowercase);
        // A phone-like query also matches phones written another way.
        let needle_digits = needle
            .as_deref()
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_digit() || " -().+".contains(c))
            })
            .map(digits)
            .filter(|d| d.len() >= 3);
        let billing = q.billing_id.as_deref().filter(|b| !b.is_empty());
        let unlinked = q.unlinked.unwrap_or(false);

        let matches = |s: &Site| {
            let f = &s.fields;
            if let Some(b) = billing {
                if f.billing_id.as_deref() != Some(b) {
                    return false;
                }
            }
            if unlinked && f.billing_id.is_some() {
                return false;
            }
            if let Some(n) = needle.as_deref() {
                let hit = [&f.name, &f.address1, &f.city, &f.phone, &s.site_no]
                    .iter()
                    .any(|v| v.to_lowercase().contains(n))
                    || needle_digits
                        .as_deref()
                        .is_some_and(|d| digits(&f.phone).contains(d));
                if !hit {
                    return false;
                }
            }
            true
        };

        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for (key, rec) in self.sites.range((start, Bound::Unbounded)) {
            if !matches(&rec.site) {
                continue;
            }
            if items.len() == size {
                more = true;
                break;
            }
            items.push(rec.site.clone());
            last = Some(*key);
        }
        Ok(Items {
            items,
            next_page_token: if more {
                last.map(|k| encode_token(SITE_TOKEN, k))
            } else {
                None
            },
        })
    }

    pub fn get_site(&self, site_no: &str) -> Result<Site, ApiError> {
        self.site_rec(site_no).map(|(_, r)| r.site.clone())
    }

    /// Every site in site number order (for tests).
    pub fn sites(&self) -> Vec<Site> {
        self.sites.values().map(|r| r.site.clone()).collect()
    }

    pub fn create_site(
        &mut self,
        new: NewSite,
        now: DateTime<Utc>,
    ) -> Result<CreatedSite, ApiError> {
        let fields = Self::normalize_site(new.fields);
        validate_site(&fields)?;
        self.check_site_billing_free(fields.billing_id.as_deref(), None)?;

        // Check the whole request before creating anything.
        let mut xmits = HashSet::new();
        let mut billing_ids = HashSet::new();
        for d in &new.devices {
            Self::check_new_device(d)?;
            self.check_xmit_free(&d.fields.transmitter_code, None)?;
            if !xmits.insert(d.fields.transmitter_code.as_str()) {
                return Err(ApiError::duplicate_xmit(&d.fields.transmitter_code));
            }
            if let Some(b) = d.fields.billing_id.as_deref().filter(|b| !b.is_empty()) {
                self.check_device_billing_free(Some(b), None)?;
                if !billing_ids.insert(b) {
                    return Err(ApiError::duplicate_billing_id("device", b));
                }
            }
        }
        for c in &new.contacts {
            validate_contact(&c.fields)?;
        }

        let key = self.next_site;
        self.next_site += 1;
        let site_no = key.to_string();
        if let Some(b) = &fields.billing_id {
            self.site_billing.insert(b.clone(), key);
        }
        let site = Site {
            site_no: site_no.clone(),
            fields,
        };
        self.sites.insert(
            key,
            SiteRec {
                site: site.clone(),
                devices: Vec::new(),
                contacts: BTreeMap::new(),
                notes: Vec::new(),
                events: Vec::new(),
            },
        );
        self.site_event(&site_no, now, "SITE_ADD", format!("Site {site_no} created"));

        let mut devices = Vec::with_capacity(new.devices.len());
        for d in new.devices {
            devices.push(self.insert_device(key, &site_no, d, now));
        }
        let mut contacts = Vec::with_capacity(new.contacts.len());
        for c in new.contacts {
            contacts.push(self.insert_contact(key, &site_no, c, now));
        }
        Ok(CreatedSite {
            site,
            devices,
            contacts,
        })
    }

    /// Sets a site's billing id without the uniqueness rule: the state an
    /// older integration can leave behind (two sites claiming one billing id),
    /// for reconcile tests. The billing-id index keeps the latest claimant.
    pub fn force_site_billing_id(
        &mut self,
        site_no: &str,
        billing_id: Option<String>,
    ) -> Result<(), ApiError> {
        let (key, _) = self.site_rec(site_no)?;
        let billing_id = normalize_billing(billing_id);
        let rec = self.site_mut(site_no)?;
        rec.site.fields.billing_id = billing_id.clone();
        if let Some(b) = billing_id {
            self.site_billing.insert(b, key);
        }
        Ok(())
    }

    /// Removes a site with its devices, as if deleted in Stages.
    pub fn remove_site(&mut self, site_no: &str) -> Result<(), ApiError> {
        let (key, _) = self.site_rec(site_no)?;
        let rec = self.sites.remove(&key).expect("found above");
        if let Some(b) = &rec.site.fields.billing_id {
            if self.site_billing.get(b) == Some(&key) {
                self.site_billing.remove(b);
            }
        }
        for d in rec.devices {
            if let Some(dev) = self.devices.remove(&d) {
                self.xmit_index.remove(&dev.device.fields.transmitter_code);
                if let Some(b) = &dev.device.fields.billing_id {
                    self.device_billing.remove(b);
                }
            }
        }
        Ok(())
    }

    pub fn patch_site(
        &mut self,
        site_no: &str,
        p: SitePatch,
        now: DateTime<Utc>,
    ) -> Result<Site, ApiError> {
        let (key, rec) = self.site_rec(site_no)?;
        let mut f = rec.site.fields.clone();
        let mut changed = Vec::new();
        macro_rules! set {
            ($($name:ident),*) => {$(
                if let Some(v) = p.$name {
                    if f.$name != v { changed.push(stringify!($name)); }
                    f.$name = v;
                }
            )*};
        }
        set!(
            name,
            address1,
            address2,
            city,
            state,
            zip,
            phone,
            info,
            region,
            time_zone,
            site_type,
            dispatch_type,
            permit,
            subdivision,
            pets,
            keys,
            ul_code,
            authority
        );
        let old_billing = f.billing_id.clone();
        if let Some(b) = p.billing_id {
            f.billing_id = normalize_billing(Some(b));
            if f.billing_id != old_billing {
                changed.push("billing_id");
            }
        }
        let f = Self::normalize_site(f);
        validate_site(&f)?;
        self.check_site_billing_free(f.billing_id.as_deref(), Some(key))?;

        if let Some(old) = &old_billing {
            self.site_billing.remove(old);
        }
        if let Some(new) = &f.billing_id {
            self.site_billing.insert(new.clone(), key);
        }
        let site = {
            let rec = self.site_mut(site_no)?;
            rec.site.fields = f;
            rec.site.clone()
        };
        if !changed.is_empty() {
            self.site_event(
                site_no,
                now,
                "SITE_EDIT",
                format!("Site edited: {}", changed.join(", ")),
            );
        }
        Ok(site)
    }

    pub fn site_history(
        &mut self,
        site_no: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<HistoryEntry>, ApiError> {
        let (_, rec) = self.site_rec(site_no)?;
        let device_keys = rec.devices.clone();
        let mut out: Vec<HistoryEntry> = rec
            .events
            .iter()
            .filter(|h| in_window(h.occurred_at, from, to))
            .cloned()
            .collect();
        for k in device_keys {
            let mut ids = HistoryIds(&mut self.next_history);
            if let Some(d) = self.devices.get_mut(&k) {
                d.sweep(now, &mut ids);
                out.extend(
                    d.history
                        .iter()
                        .filter(|h| in_window(h.occurred_at, from, to))
                        .cloned(),
                );
            }
        }
        out.sort_by(history_order);
        Ok(out)
    }

    // ---- devices ------------------------------------------------------

    fn check_new_device(d: &NewDevice) -> Result<(), ApiError> {
        validate_device(&d.fields)?;
        for c in &d.configurations {
            Self::check_configuration(c)?;
        }
        Ok(())
    }

    fn check_configuration(c: &NewConfiguration) -> Result<(), ApiError> {
        if c.point == 0 {
            return Err(ApiError::validation("point: must be 1 or more"));
        }
        Ok(())
    }

    /// Inserts a checked device; the caller has checked codes and billing ids.
    fn insert_device(
        &mut self,
        site_key: u64,
        site_no: &str,
        d: NewDevice,
        now: DateTime<Utc>,
    ) -> Device {
        let key = self.next_device;
        self.next_device += 1;
        let device_id = format!("D-{key}");
        let mut fields = d.fields;
        fields.billing_id = normalize_billing(fields.billing_id);
        self.xmit_index.insert(fields.transmitter_code.clone(), key);
        if let Some(b) = &fields.billing_id {
            self.device_billing.insert(b.clone(), key);
        }
        let device = Device {
            device_id: device_id.clone(),
            site_no: site_no.to_string(),
            fields,
            status: DeviceStatus::Normal,
        };
        let configurations = d
            .configurations
            .into_iter()
            .map(|c| {
                let id = self.next_config;
                self.next_config += 1;
                Configuration {
                    config_id: format!("Z-{id}"),
                    device_id: device_id.clone(),
                    fields: c,
                }
            })
            .collect();
        self.devices.insert(
            key,
            DeviceRec {
                device: device.clone(),
                configurations,
                history: Vec::new(),
                tests: Vec::new(),
            },
        );
        if let Some(s) = self.sites.get_mut(&site_key) {
            s.devices.push(key);
        }
        self.device_event(
            key,
            now,
            "DEVICE_ADD",
            format!(
                "Device {device_id} added with transmitter code {}",
                device.fields.transmitter_code
            ),
        );
        device
    }

    pub fn list_devices(
        &mut self,
        site_no: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Device>, ApiError> {
        let (_, rec) = self.site_rec(site_no)?;
        let keys = rec.devices.clone();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let mut ids = HistoryIds(&mut self.next_history);
            if let Some(d) = self.devices.get_mut(&k) {
                d.sweep(now, &mut ids);
                out.push(d.view(now));
            }
        }
        Ok(out)
    }

    /// `GET /api/v1/devices`: every device matching the filters, in device
    /// number order (`D-1`, `D-2`, ...), one page at a time. A billing id or
    /// site filter reads only its few devices, through the indexes.
    pub fn list_all_devices(
        &mut self,
        q: &DeviceQuery,
        now: DateTime<Utc>,
    ) -> Result<Items<Device>, ApiError> {
        let size = page_size(q.page_size)?;
        let after = page_start(DEVICE_TOKEN, q.page_token.as_deref())?;
        let billing = q.billing_id.as_deref().filter(|b| !b.is_empty());
        let site_no = q.site_no.as_deref().filter(|s| !s.is_empty());

        // The candidates, in increasing key order, after the token.
        let candidates: Box<dyn Iterator<Item = u64> + '_> = if let Some(b) = billing {
            Box::new(self.device_billing.get(b).copied().into_iter())
        } else if let Some(site_no) = site_no {
            // A site's devices are kept in creation order, which is key order.
            let keys = self.site_rec(site_no).map(|(_, r)| r.devices.as_slice());
            Box::new(keys.unwrap_or_default().iter().copied())
        } else {
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            Box::new(
                self.devices
                    .range((start, Bound::Unbounded))
                    .map(|(k, _)| *k),
            )
        };
        let matches = |key: u64| {
            let Some(rec) = self.devices.get(&key) else {
                return false;
            };
            let d = &rec.device;
            after.is_none_or(|a| key > a)
                && billing.is_none_or(|b| d.fields.billing_id.as_deref() == Some(b))
                && site_no.is_none_or(|s| d.site_no == s)
                && q.has_billing_id
                    .is_none_or(|has| d.fields.billing_id.is_some() == has)
        };
        // One more than a page tells whether another page follows.
        let mut keys: Vec<u64> = candidates.filter(|k| matches(*k)).take(size + 1).collect();
        let more = keys.len() > size;
        keys.truncate(size);

        let mut items = Vec::with_capacity(keys.len());
        for k in &keys {
            let mut ids = HistoryIds(&mut self.next_history);
            if let Some(d) = self.devices.get_mut(k) {
                d.sweep(now, &mut ids);
                items.push(d.view(now));
            }
        }
        Ok(Items {
            items,
            next_page_token: if more {
                keys.last().map(|k| encode_token(DEVICE_TOKEN, *k))
            } else {
                None
            },
        })
    }

    pub fn create_device(
        &mut self,
        site_no: &str,
        d: NewDevice,
        now: DateTime<Utc>,
    ) -> Result<Device, ApiError> {
        let (key, _) = self.site_rec(site_no)?;
        Self::check_new_device(&d)?;
        self.check_xmit_free(&d.fields.transmitter_code, None)?;
        self.check_device_billing_free(
            d.fields.billing_id.as_deref().filter(|b| !b.is_empty()),
            None,
        )?;
        Ok(self.insert_device(key, site_no, d, now))
    }

    pub fn get_device(&mut self, device_id: &str, now: DateTime<Utc>) -> Result<Device, ApiError> {
        Ok(self.device_mut(device_id, now)?.view(now))
    }

    /// The device whose transmitter code this is (for tests).
    pub fn device_by_transmitter_code(&mut self, code: &str, now: DateTime<Utc>) -> Option<Device> {
        let key = *self.xmit_index.get(code)?;
        self.get_device(&format!("D-{key}"), now).ok()
    }

    pub fn patch_device(
        &mut self,
        device_id: &str,
        p: DevicePatch,
        now: DateTime<Utc>,
    ) -> Result<Device, ApiError> {
        if p.transmitter_code.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::validation(
                "transmitter_code: cannot be patched; use POST /api/v1/devices/{device_id}/change-xmit",
            ));
        }
        let key = self.device_key(device_id)?;
        let rec = self.device_mut(device_id, now)?;
        let mut f = rec.device.fields.clone();
        let mut changed = Vec::new();
        macro_rules! set {
            ($($name:ident),*) => {$(
                if let Some(v) = p.$name {
                    if f.$name != v { changed.push(stringify!($name)); }
                    f.$name = v;
                }
            )*};
        }
        macro_rules! set_opt {
            ($($name:ident),*) => {$(
                if let Some(v) = p.$name {
                    if f.$name != Some(v) { changed.push(stringify!($name)); }
                    f.$name = Some(v);
                }
            )*};
        }
        set!(
            alt_device_id,
            oos_category,
            device_type,
            timer_test_type,
            fail_event,
            ivr_number,
            primary_xmit,
            comm_type,
            line_security,
            lid_type,
            url_text,
            url_target,
            signal_format,
            entry_period,
            exit_period,
            location,
            info,
            silent,
            config_only
        );
        set_opt!(timer_test_days, timer_test_hours, timer_test_minutes);
        let old_billing = f.billing_id.clone();
        if let Some(b) = p.billing_id {
            f.billing_id = normalize_billing(Some(b));
            if f.billing_id != old_billing {
                changed.push("billing_id");
            }
        }
        validate_device(&f)?;
        self.check_device_billing_free(f.billing_id.as_deref(), Some(key))?;
        if let Some(old) = &old_billing {
            self.device_billing.remove(old);
        }
        if let Some(new) = &f.billing_id {
            self.device_billing.insert(new.clone(), key);
        }
        if let Some(rec) = self.devices.get_mut(&key) {
            rec.device.fields = f;
        }
        if !changed.is_empty() {
            self.device_event(
                key,
                now,
                "DEVICE_EDIT",
                format!("Device edited: {}", changed.join(", ")),
            );
        }
        self.get_device(device_id, now)
    }

    pub fn change_xmit(
        &mut self,
        device_id: &str,
        new_code: &str,
        now: DateTime<Utc>,
    ) -> Result<Device, ApiError> {
        let key = self.device_key(device_id)?;
        check_non_empty("new_transmitter_code", new_code)?;
        self.check_xmit_free(new_code, Some(key))?;
        let rec = self.device_mut(device_id, now)?;
        let old = rec.device.fields.transmitter_code.clone();
        if old != new_code {
            rec.device.fields.transmitter_code = new_code.to_string();
            self.xmit_index.remove(&old);
            self.xmit_index.insert(new_code.to_string(), key);
            self.device_event(
                key,
                now,
                "XMIT_CHANGE",
                format!("Transmitter code changed from {old} to {new_code}"),
            );
        }
        self.get_device(device_id, now)
    }

    // ---- configurations -----------------------------------------------

    pub fn list_configurations(
        &mut self,
        device_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Configuration>, ApiError> {
        Ok(self.device_mut(device_id, now)?.configurations.clone())
    }

    pub fn create_configuration(
        &mut self,
        device_id: &str,
        c: NewConfiguration,
        now: DateTime<Utc>,
    ) -> Result<Configuration, ApiError> {
        let key = self.device_key(device_id)?;
        Self::check_configuration(&c)?;
        let id = self.next_config;
        self.next_config += 1;
        let config = Configuration {
            config_id: format!("Z-{id}"),
            device_id: device_id.to_string(),
            fields: c,
        };
        let description = format!(
            "Zone {} added: {}",
            config.fields.point, config.fields.description
        );
        self.device_mut(device_id, now)?
            .configurations
            .push(config.clone());
        self.device_event(key, now, "ZONE_ADD", description);
        Ok(config)
    }

    /// Edits a zone in place; its id stays, and the device's history says what changed.
    pub fn patch_configuration(
        &mut self,
        device_id: &str,
        config_id: &str,
        p: ConfigurationPatch,
        now: DateTime<Utc>,
    ) -> Result<Configuration, ApiError> {
        let key = self.device_key(device_id)?;
        let rec = self.device_mut(device_id, now)?;
        let config = rec
            .configurations
            .iter_mut()
            .find(|c| c.config_id == config_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no configuration {config_id:?} on device {device_id}"
                ))
            })?;
        let mut fields = config.fields.clone();
        if let Some(point) = p.point {
            fields.point = point;
        }
        if let Some(area) = p.area {
            fields.area = area;
        }
        if let Some(event_code) = p.event_code {
            fields.event_code = event_code;
        }
        if let Some(description) = p.description {
            fields.description = description;
        }
        Self::check_configuration(&fields)?;
        config.fields = fields;
        let config = config.clone();
        let description = format!(
            "Zone {} ({config_id}) changed: {}",
            config.fields.point, config.fields.description
        );
        self.device_event(key, now, "ZONE_CHANGE", description);
        Ok(config)
    }

    // ---- contacts -----------------------------------------------------

    fn insert_contact(
        &mut self,
        site_key: u64,
        site_no: &str,
        c: NewContact,
        now: DateTime<Utc>,
    ) -> Contact {
        let id = self.next_contact;
        self.next_contact += 1;
        let pin = c.pin.filter(|p| !p.is_empty());
        let contact = Contact {
            contact_id: format!("C-{id}"),
            site_no: site_no.to_string(),
            fields: c.fields,
            has_pin: pin.is_some(),
        };
        if let Some(s) = self.sites.get_mut(&site_key) {
            s.contacts.insert(
                id,
                ContactRec {
                    contact: contact.clone(),
                    pin,
                },
            );
        }
        self.site_event(
            site_no,
            now,
            "CONTACT_ADD",
            format!(
                "Contact {} added: {}",
                contact.contact_id, contact.fields.name
            ),
        );
        contact
    }

    pub fn list_contacts(&self, site_no: &str) -> Result<Vec<Contact>, ApiError> {
        let (_, rec) = self.site_rec(site_no)?;
        Ok(rec.contacts.values().map(|c| c.contact.clone()).collect())
    }

    pub fn create_contact(
        &mut self,
        site_no: &str,
        c: NewContact,
        now: DateTime<Utc>,
    ) -> Result<Contact, ApiError> {
        let (key, _) = self.site_rec(site_no)?;
        validate_contact(&c.fields)?;
        Ok(self.insert_contact(key, site_no, c, now))
    }

    fn contact_missing(site_no: &str, contact_id: &str) -> ApiError {
        ApiError::not_found(format!("no contact {contact_id:?} at site {site_no:?}"))
    }

    pub fn patch_contact(
        &mut self,
        site_no: &str,
        contact_id: &str,
        p: ContactPatch,
        now: DateTime<Utc>,
    ) -> Result<Contact, ApiError> {
        let id = prefixed_key(contact_id, "C-")
            .ok_or_else(|| Self::contact_missing(site_no, contact_id))?;
        let site = self.site_mut(site_no)?;
        let rec = site
            .contacts
            .get_mut(&id)
            .ok_or_else(|| Self::contact_missing(site_no, contact_id))?;
        let mut f = rec.contact.fields.clone();
        macro_rules! set {
            ($($name:ident),*) => {$( if let Some(v) = p.$name { f.$name = v; } )*};
        }
        set!(name, relation, authority, phones, email, has_keys, ecv);
        if let Some(d) = p.effective_date {
            f.effective_date = Some(d);
        }
        if let Some(d) = p.expire_date {
            f.expire_date = Some(d);
        }
        validate_contact(&f)?;
        rec.contact.fields = f;
        if let Some(pin) = p.pin {
            rec.pin = Some(pin).filter(|p| !p.is_empty());
            rec.contact.has_pin = rec.pin.is_some();
        }
        let contact = rec.contact.clone();
        self.site_event(
            site_no,
            now,
            "CONTACT_EDIT",
            format!("Contact {contact_id} edited"),
        );
        Ok(contact)
    }

    pub fn delete_contact(
        &mut self,
        site_no: &str,
        contact_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let id = prefixed_key(contact_id, "C-")
            .ok_or_else(|| Self::contact_missing(site_no, contact_id))?;
        let site = self.site_mut(site_no)?;
        let rec = site
            .contacts
            .remove(&id)
            .ok_or_else(|| Self::contact_missing(site_no, contact_id))?;
        self.site_event(
            site_no,
            now,
            "CONTACT_DELETE",
            format!("Contact {contact_id} deleted: {}", rec.contact.fields.name),
        );
        Ok(())
    }

    /// The stored PIN of a contact (for tests: PINs are never served).
    pub fn contact_pin(&self, site_no: &str, contact_id: &str) -> Option<String> {
        let id = prefixed_key(contact_id, "C-")?;
        let (_, site) = self.site_rec(site_no).ok()?;
        site.contacts.get(&id)?.pin.clone()
    }

    // ---- notes --------------------------------------------------------

    pub fn list_notes(&self, site_no: &str) -> Result<Vec<Note>, ApiError> {
        Ok(self.site_rec(site_no)?.1.notes.clone())
    }

    pub fn create_note(
        &mut self,
        site_no: &str,
        n: NewNote,
        now: DateTime<Utc>,
    ) -> Result<Note, ApiError> {
        self.site_rec(site_no)?;
        check_non_empty("text", &n.text)?;
        if let (Some(from), Some(to)) = (n.effective_at, n.expire_at) {
            if to <= from {
                return Err(ApiError::validation(
                    "expire_at: must be after effective_at",
                ));
            }
        }
        let id = self.next_note;
        self.next_note += 1;
        let note = Note {
            note_id: format!("N-{id}"),
            site_no: site_no.to_string(),
            text: n.text,
            effective_at: n.effective_at,
            expire_at: n.expire_at,
            created_at: now,
        };
        self.site_mut(site_no)?.notes.push(note.clone());
        self.site_event(
            site_no,
            now,
            "NOTE_ADD",
            format!("Note {} added", note.note_id),
        );
        Ok(note)
    }

    // ---- history ------------------------------------------------------

    pub fn device_history(
        &mut self,
        device_id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<HistoryEntry>, ApiError> {
        let rec = self.device_mut(device_id, now)?;
        let mut out: Vec<HistoryEntry> = rec
            .history
            .iter()
            .filter(|h| in_window(h.occurred_at, from, to))
            .cloned()
            .collect();
        out.sort_by(history_order);
        Ok(out)
    }

    /// Records a signal received from the device at `at`.
    pub fn add_signal(
        &mut self,
        device_id: &str,
        at: DateTime<Utc>,
        event_code: &str,
        description: &str,
        point: Option<u32>,
    ) -> Result<HistoryEntry, ApiError> {
        let key = self.device_key(device_id)?;
        let mut ids = HistoryIds(&mut self.next_history);
        let rec = self
            .devices
            .get_mut(&key)
            .ok_or_else(|| device_missing(device_id))?;
        let on_test = rec.has_current_test(at);
        let entry = ids.make(
            device_id,
            &rec.device.site_no,
            at,
            HistoryKind::Signal,
            event_code,
            description.to_string(),
            point,
            on_test,
        );
        rec.history.push(entry.clone());
        if rec.device.fields.first_signal_at.is_none_or(|f| at < f) {
            rec.device.fields.first_signal_at = Some(at);
        }
        Ok(entry)
    }

    // ---- tests --------------------------------------------------------

    pub fn list_tests(
        &mut self,
        device_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Test>, ApiError> {
        Ok(self.device_mut(device_id, now)?.tests_view(now))
    }

    pub fn start_test(
        &mut self,
        device_id: &str,
        t: NewTest,
        now: DateTime<Utc>,
    ) -> Result<Test, ApiError> {
        let key = self.device_key(device_id)?;
        if t.expire <= t.effective {
            return Err(ApiError::validation("expire: must be after effective"));
        }
        if t.expire <= now {
            return Err(ApiError::validation("expire: must be in the future"));
        }
        let rec = self.device_mut(device_id, now)?;
        match rec.device.status {
            DeviceStatus::Alarm => {
                return Err(ApiError::device_state(format!(
                    "device {device_id} is in alarm; a device in alarm cannot be put on test"
                )))
            }
            DeviceStatus::OutOfService => {
                return Err(ApiError::device_state(format!(
                    "device {device_id} is out of service; a device out of service cannot be put on test"
                )))
            }
            DeviceStatus::Normal | DeviceStatus::OnTest => {}
        }
        let id = self.next_test;
        self.next_test += 1;
        let test = Test {
            test_id: format!("T-{id}"),
            device_id: device_id.to_string(),
            test_type: t.test_type,
            effective: t.effective,
            expire: t.expire,
            reason: t.reason,
            state: Test::state_at(t.effective, t.expire, now),
        };
        let rec = self.device_mut(device_id, now)?;
        rec.tests.push(test.clone());
        let kind = match test.test_type {
            TestType::AllPoints => "all points",
            TestType::ListedItems => "listed items",
            TestType::AllExceptListed => "all except listed",
        };
        let when = if test.state == TestState::Scheduled {
            "scheduled"
        } else {
            "started"
        };
        let mut description = format!(
            "Test {} ({kind}) {when}: {} to {}",
            test.test_id,
            test.effective.to_rfc3339(),
            test.expire.to_rfc3339()
        );
        if !test.reason.is_empty() {
            description.push_str(&format!(", reason: {}", test.reason));
        }
        self.device_event(key, now, "TEST_START", description);
        Ok(test)
    }

    pub fn end_test(
        &mut self,
        device_id: &str,
        test_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let key = self.device_key(device_id)?;
        let rec = self.device_mut(device_id, now)?;
        let pos = rec
            .tests
            .iter()
            .position(|t| t.test_id == test_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no current or scheduled test {test_id:?} on device {device_id}"
                ))
            })?;
        rec.tests.remove(pos);
        self.device_event(key, now, "TEST_END", format!("Test {test_id} ended"));
        Ok(())
    }

    // ---- status -------------------------------------------------------

    /// Sets the base status (what the central station sees from the panel).
    pub fn set_status(
        &mut self,
        device_id: &str,
        status: DeviceStatus,
        now: DateTime<Utc>,
    ) -> Result<Device, ApiError> {
        let key = self.device_key(device_id)?;
        if status == DeviceStatus::OnTest {
            return Err(ApiError::validation(
                "status: on_test follows from a current test; set normal, alarm or out_of_service",
            ));
        }
        let rec = self.device_mut(device_id, now)?;
        let old = rec.device.status;
        rec.device.status = status;
        if old != status {
            let (code, text) = match status {
                DeviceStatus::Alarm => ("ALARM", "Device in alarm"),
                DeviceStatus::OutOfService => ("OUT_OF_SERVICE", "Device put out of service"),
                _ if old == DeviceStatus::Alarm => ("RESTORE", "Device restored from alarm"),
                _ => ("IN_SERVICE", "Device back in service"),
            };
            self.device_event(key, now, code, text.to_string());
        }
        self.get_device(device_id, now)
    }
}
