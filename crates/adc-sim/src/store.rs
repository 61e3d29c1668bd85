//! The simulator's records and the rules Alarm.com applies to them: unique
//! customer logins and modem serials, known service plans, sub-dealers and
//! reps, the Builder Program permission. The SOAP operations and the admin
//! routes both go through here so that they cannot disagree.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::model::*;
use crate::seed::{self, Kind, RepIndex};

/// Why a change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The customer (or other record) does not exist: a SOAP fault.
    NotFound(String),
    /// The request was understood but refused: `Success=false`.
    Rejected(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotFound(m) | Refusal::Rejected(m) => m,
        }
    }
}

pub const CUSTOMER_NOT_FOUND: &str = "Customer not found";
pub const LOGIN_IN_USE: &str = "Login name already in use";
pub const NO_BUILDER_PERMISSION: &str =
    "The dealer login does not have the Builder Program permission";

/// Which customers `GetCustomerList_V2` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub include_termed: bool,
    /// Created or modified at or after this instant.
    pub start: Option<DateTime<Utc>>,
    /// ... and before this one.
    pub end: Option<DateTime<Utc>>,
    pub exclude_commitments: bool,
    pub exclude_customers: bool,
    /// Panel types to keep; empty keeps all.
    pub panel_types: Vec<String>,
    /// Only the customer with this dealer customer id.
    pub alternate_id: Option<String>,
}

impl ListFilter {
    fn keeps(&self, c: &Customer) -> bool {
        if c.is_terminated && !self.include_termed {
            return false;
        }
        if c.is_commitment && self.exclude_commitments {
            return false;
        }
        if !c.is_commitment && self.exclude_customers {
            return false;
        }
        let within =
            |t: DateTime<Utc>| self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t < e);
        if (self.start.is_some() || self.end.is_some()) && !within(c.created) && !within(c.modified)
        {
            return false;
        }
        if !self.panel_types.is_empty()
            && !self
                .panel_types
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&c.panel_type))
        {
            return false;
        }
        if let Some(id) = &self.alternate_id {
            if &c.dealer_customer_id != id {
                return false;
            }
        }
        true
    }
}

/// All records of one simulated dealer.
#[derive(Debug)]
pub struct Store {
    customers: BTreeMap<i64, Customer>,
    /// Lower-cased customer login → customer id.
    logins: HashMap<String, i64>,
    /// Modem serial of a live (not terminated) customer → customer id.
    serials: HashMap<String, i64>,
    next_customer_id: i64,
    next_commitment_id: i64,
    reps: BTreeMap<i64, Rep>,
    next_support_id: i64,
    sub_dealers: Vec<SubDealer>,
    roles: Vec<Role>,
    packages: Vec<Package>,
    builder_programs: Vec<BuilderProgram>,
    /// For records added after start (admin routes).
    rng: StdRng,
}

impl Store {
    /// A store with `n` seeded customers.
    pub fn seeded(n: usize) -> Self {
        let seeded = seed::seed(n);
        let mut store = Store {
            customers: BTreeMap::new(),
            logins: HashMap::with_capacity(n),
            serials: HashMap::with_capacity(n),
            next_customer_id: seed::FIRST_CUSTOMER_ID,
            next_commitment_id: seeded.next_commitment_id,
            reps: BTreeMap::new(),
            next_support_id: seed::FIRST_SUPPORT_ID,
            sub_dealers: seed::sub_dealers(),
            roles: seed::roles(),
            packages: seed::packages(),
            builder_programs: seed::builder_programs(),
            rng: StdRng::seed_from_u64(seed::SEED ^ 0x5eed),
        };
        for r in seeded.reps {
            store.next_support_id = store.next_support_id.max(r.support_id + 1);
            store.reps.insert(r.support_id, r);
        }
        for c in seeded.customers {
            store.index(&c);
            store.next_customer_id = store.next_customer_id.max(c.customer_id + 1);
            store.customers.insert(c.customer_id, c);
        }
        store
    }

    fn index(&mut self, c: &Customer) {
        if !c.login_name.is_empty() {
            self.logins
                .insert(c.login_name.to_lowercase(), c.customer_id);
        }
        if !c.modem_serial_number.is_empty() && !c.is_terminated {
            self.serials
                .insert(c.modem_serial_number.to_uppercase(), c.customer_id);
        }
    }

    fn unindex(&mut self, c: &Customer) {
        if self.logins.get(&c.login_name.to_lowercase()) == Some(&c.customer_id) {
            self.logins.remove(&c.login_name.to_lowercase());
        }
        let serial = c.modem_serial_number.to_uppercase();
        if self.serials.get(&serial) == Some(&c.customer_id) {
            self.serials.remove(&serial);
        }
    }

    // ---- reading ---------------------------------------------------------

    pub fn customer(&self, id: i64) -> Option<&Customer> {
        self.customers.get(&id)
    }

    pub fn customers(&self) -> impl Iterator<Item = &Customer> {
        self.customers.values()
    }

    pub fn customer_count(&self) -> usize {
        self.customers.len()
    }

    pub fn customer_ids(&self, filter: &ListFilter) -> Vec<i64> {
        self.customers
            .values()
            .filter(|c| filter.keeps(c))
            .map(|c| c.customer_id)
            .collect()
    }

    pub fn reps(&self) -> impl Iterator<Item = &Rep> {
        self.reps.values()
    }

    pub fn rep_by_login(&self, login: &str) -> Option<&Rep> {
        self.reps
            .values()
            .find(|r| r.login_name.eq_ignore_ascii_case(login))
    }

    pub fn sub_dealers(&self) -> &[SubDealer] {
        &self.sub_dealers
    }

    pub fn sub_dealer_name(&self, id: i64) -> &str {
        self.sub_dealers
            .iter()
            .find(|s| s.sub_dealer_id == id)
            .map(|s| s.name.as_str())
            .unwrap_or("")
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn role_id(&self, name: &str) -> i64 {
        self.roles
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .map(|r| r.role_id)
            .unwrap_or(0)
    }

    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    pub fn package_name(&self, id: i64) -> &str {
        self.packages
            .iter()
            .find(|p| p.package_id == id)
            .map(|p| p.name.as_str())
            .unwrap_or("")
    }

    pub fn builder_programs(&self) -> &[BuilderProgram] {
        &self.builder_programs
    }

    // ---- checks ----------------------------------------------------------

    fn check_common(&self, c: &Customer) -> Result<(), Refusal> {
        let rejected = |m: String| Err(Refusal::Rejected(m));
        let named = !c.first_name.trim().is_empty() && !c.last_name.trim().is_empty();
        if !named && c.company_name.trim().is_empty() {
            return rejected("A first and last name (or a company name) is required".into());
        }
        if !self.packages.iter().any(|p| p.package_id == c.package_id) {
            return rejected(format!("Invalid PackageId {}", c.package_id));
        }
        if c.sub_dealer_id != 0
            && !self
                .sub_dealers
                .iter()
                .any(|s| s.sub_dealer_id == c.sub_dealer_id)
        {
            return rejected(format!("Invalid BranchId {}", c.sub_dealer_id));
        }
        for (what, login) in [
            ("SalesRepLoginName", &c.sales_rep_login_name),
            ("InstallerLoginName", &c.installer_login_name),
        ] {
            if !login.is_empty() && self.rep_by_login(login).is_none() {
                return rejected(format!("Unknown {what} {login:?}"));
            }
        }
        Ok(())
    }

    fn check_builder(&self, id: i64, perms: Permissions) -> Result<(), Refusal> {
        if !perms.builder_program {
            return Err(Refusal::Rejected(NO_BUILDER_PERMISSION.into()));
        }
        if !self
            .builder_programs
            .iter()
            .any(|b| b.builder_program_id == id)
        {
            return Err(Refusal::Rejected(format!("Invalid BuilderProgramId {id}")));
        }
        Ok(())
    }

    // ---- SOAP changes ------------------------------------------------------

    /// `CreateCustomer`: checks `c` (its id is ignored) and stores it.
    pub fn create_customer(
        &mut self,
        mut c: Customer,
        perms: Permissions,
        now: DateTime<Utc>,
    ) -> Result<i64, Refusal> {
        if c.login_name.trim().is_empty() {
            return Err(Refusal::Rejected("DesiredLoginName is required".into()));
        }
        if self.logins.contains_key(&c.login_name.to_lowercase()) {
            return Err(Refusal::Rejected(LOGIN_IN_USE.into()));
        }
        if c.builder_program_id != 0 {
            self.check_builder(c.builder_program_id, perms)?;
        }
        self.check_common(&c)?;
        if !c.modem_serial_number.is_empty()
            && self
                .serials
                .contains_key(&c.modem_serial_number.to_uppercase())
        {
            return Err(Refusal::Rejected(
                "Modem serial number already in use".into(),
            ));
        }
        c.customer_id = self.next_customer_id;
        c.is_commitment = false;
        c.commitment_id = 0;
        c.is_terminated = false;
        c.terminated_date = None;
        c.join_date = now;
        c.created = now;
        c.modified = now;
        Ok(self.insert(c))
    }

    /// `CreateCommitment`: a Builder Program commitment (a customer record
    /// without login or panel yet). Returns (commitment id, customer id).
    pub fn create_commitment(
        &mut self,
        mut c: Customer,
        perms: Permissions,
        now: DateTime<Utc>,
    ) -> Result<(i64, i64), Refusal> {
        if !perms.builder_program {
            return Err(Refusal::Rejected(NO_BUILDER_PERMISSION.into()));
        }
        if c.builder_program_id == 0 {
            return Err(Refusal::Rejected("BuilderProgramId is required".into()));
        }
        self.check_builder(c.builder_program_id, perms)?;
        self.check_common(&c)?;
        c.customer_id = self.next_customer_id;
        c.commitment_id = self.next_commitment_id;
        self.next_commitment_id += 1;
        c.login_name.clear();
        c.modem_serial_number.clear();
        c.is_commitment = true;
        c.is_terminated = false;
        c.terminated_date = None;
        c.join_date = now;
        c.created = now;
        c.modified = now;
        let commitment = c.commitment_id;
        Ok((commitment, self.insert(c)))
    }

    fn insert(&mut self, c: Customer) -> i64 {
        let id = c.customer_id;
        self.next_customer_id = self.next_customer_id.max(id + 1);
        self.index(&c);
        self.customers.insert(id, c);
        id
    }

    fn live_customer(&mut self, id: i64) -> Result<&mut Customer, Refusal> {
        let c = self
            .customers
            .get_mut(&id)
            .ok_or_else(|| Refusal::NotFound(CUSTOMER_NOT_FOUND.into()))?;
        if c.is_terminated {
            return Err(Refusal::Rejected("Customer is terminated".into()));
        }
        Ok(c)
    }

    pub fn terminate(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), Refusal> {
        let c = self
            .customers
            .get_mut(&id)
            .ok_or_else(|| Refusal::NotFound(CUSTOMER_NOT_FOUND.into()))?;
        if c.is_terminated {
            return Err(Refusal::Rejected("Customer is already terminated".into()));
        }
        c.is_terminated = true;
        c.terminated_date = Some(now);
        c.modified = now;
        let serial = c.modem_serial_number.to_uppercase();
        if self.serials.get(&serial) == Some(&id) {
            self.serials.remove(&serial);
        }
        Ok(())
    }

    pub fn update_central_station(
        &mut self,
        id: i64,
        account_number: &str,
        receiver_number: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let c = self.live_customer(id)?;
        c.central_station_account_number = account_number.to_string();
        c.central_station_receiver_number = receiver_number.to_string();
        c.modified = now;
        Ok(())
    }

    pub fn change_service_plan(
        &mut self,
        id: i64,
        package_id: i64,
        add_on_features: Option<Vec<String>>,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        if !self.packages.iter().any(|p| p.package_id == package_id) {
            self.live_customer(id)?;
            return Err(Refusal::Rejected(format!("Invalid PackageId {package_id}")));
        }
        let c = self.live_customer(id)?;
        c.package_id = package_id;
        if let Some(f) = add_on_features {
            c.add_on_features = f;
        }
        c.modified = now;
        Ok(())
    }

    // ---- admin changes ---------------------------------------------------

    fn sub_dealer_ids(&self) -> Vec<i64> {
        self.sub_dealers.iter().map(|s| s.sub_dealer_id).collect()
    }

    fn generated_customer(&mut self, kind: Kind, now: DateTime<Utc>) -> Customer {
        let subs = self.sub_dealer_ids();
        let reps: Vec<Rep> = self.reps.values().cloned().collect();
        let index = RepIndex::new(&reps);
        let mut c = seed::gen_customer(
            &mut self.rng,
            self.next_customer_id,
            self.next_commitment_id,
            kind,
            now,
            now,
            &subs,
            &index,
        );
        if kind == Kind::Terminated {
            c.terminated_date = Some(now);
        }
        // A login given earlier by hand may collide with a generated one.
        let base = c.login_name.clone();
        let mut n = 1;
        while !c.login_name.is_empty() && self.logins.contains_key(&c.login_name.to_lowercase()) {
            c.login_name = format!("{base}x{n}");
            n += 1;
        }
        c
    }

    /// Adds `count` generated active customers created `now`.
    pub fn add_generated_customers(&mut self, count: usize, now: DateTime<Utc>) -> Vec<Customer> {
        (0..count)
            .map(|_| {
                let c = self.generated_customer(Kind::Active, now);
                self.insert(c.clone());
                c
            })
            .collect()
    }

    /// Adds a customer: `patch` over a generated record created `now`.
    pub fn add_customer(
        &mut self,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer, String> {
        let kind = if patch.is_commitment == Some(true) {
            Kind::Commitment
        } else if patch.is_terminated == Some(true) {
            Kind::Terminated
        } else {
            Kind::Active
        };
        let mut c = self.generated_customer(kind, now);
        apply_customer_patch(&mut c, patch, None);
        self.check_admin_customer(&c)?;
        if c.is_commitment {
            self.next_commitment_id += 1;
        }
        self.insert(c.clone());
        Ok(c)
    }

    /// Changes a customer as a dealer would in the portal.
    pub fn patch_customer(
        &mut self,
        id: i64,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer, Refusal> {
        let old = self
            .customers
            .get(&id)
            .cloned()
            .ok_or_else(|| Refusal::NotFound(CUSTOMER_NOT_FOUND.into()))?;
        let mut c = old.clone();
        apply_customer_patch(&mut c, patch, Some(now));
        if c.is_terminated && c.terminated_date.is_none() {
            c.terminated_date = Some(now);
        }
        self.unindex(&old);
        if let Err(e) = self.check_admin_customer(&c) {
            self.index(&old);
            return Err(Refusal::Rejected(e));
        }
        self.index(&c);
        self.customers.insert(id, c.clone());
        Ok(c)
    }

    fn check_admin_customer(&self, c: &Customer) -> Result<(), String> {
        if !c.login_name.is_empty() {
            if let Some(other) = self.logins.get(&c.login_name.to_lowercase()) {
                if *other != c.customer_id {
                    return Err(format!("login_name {:?} is in use", c.login_name));
                }
            }
        }
        if !self.packages.iter().any(|p| p.package_id == c.package_id) {
            return Err(format!("unknown package_id {}", c.package_id));
        }
        if c.sub_dealer_id != 0 && self.sub_dealer_name(c.sub_dealer_id).is_empty() {
            return Err(format!("unknown sub_dealer_id {}", c.sub_dealer_id));
        }
        Ok(())
    }

    /// Adds `count` generated reps.
    pub fn add_generated_reps(&mut self, count: usize) -> Vec<Rep> {
        (0..count)
            .map(|_| {
                let r = self.generated_rep();
                self.reps.insert(r.support_id, r.clone());
                r
            })
            .collect()
    }

    fn generated_rep(&mut self) -> Rep {
        let subs = self.sub_dealer_ids();
        let r = seed::gen_rep(&mut self.rng, self.next_support_id, &subs);
        self.next_support_id += 1;
        r
    }

    /// Adds a rep: `patch` over a generated one. Unknown role names become
    /// new roles.
    pub fn add_rep(&mut self, patch: RepPatch) -> Result<Rep, String> {
        if let Some(login) = &patch.login_name {
            if login.trim().is_empty() || self.rep_by_login(login).is_some() {
                return Err(format!("login_name {login:?} is empty or in use"));
            }
        }
        if let Some(id) = patch.sub_dealer_id {
            if id != 0 && self.sub_dealer_name(id).is_empty() {
                return Err(format!("unknown sub_dealer_id {id}"));
            }
        }
        let mut r = self.generated_rep();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = patch.$f { r.$f = v; } )* };
        }
        set!(
            login_name,
            first_name,
            last_name,
            email,
            phone,
            address,
            sub_dealer_id,
            roles,
            is_active,
            user_field
        );
        for name in &r.roles {
            if self.role_id(name) == 0 {
                let role_id = self.roles.iter().map(|x| x.role_id).max().unwrap_or(0) + 1;
                self.roles.push(Role {
                    role_id,
                    name: name.clone(),
                });
            }
        }
        self.reps.insert(r.support_id, r.clone());
        Ok(r)
    }
}

/// Copies what `p` sets into `c`; `patched_at` is the default `modified`.
fn apply_customer_patch(c: &mut Customer, p: CustomerPatch, patched_at: Option<DateTime<Utc>>) {
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = p.$f { c.$f = v; } )* };
    }
    set!(
        login_name,
        dealer_customer_id,
        first_name,
        last_name,
        company_name,
        email,
        phone,
        install_address,
        time_zone,
        panel_type,
        modem_serial_number,
        package_id,
        add_on_features,
        sales_rep_login_name,
        installer_login_name,
        sub_dealer_id,
        central_station_account_number,
        central_station_receiver_number,
        install_type,
        is_terminated,
        is_commitment,
        builder_program_id,
        join_date
    );
    if let Some(t) = p.created {
        c.created = t;
        if p.join_date.is_none() {
            c.join_date = t;
        }
    }
    c.modified = p.modified.or(patched_at).unwrap_or(c.created);
    if !c.is_terminated {
        c.terminated_date = None;
    } else if c.terminated_date.is_none() {
        c.terminated_date = Some(c.modified);
    }
}
