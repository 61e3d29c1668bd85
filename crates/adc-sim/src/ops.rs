//! The SOAP operations the simulator serves: the table of names, services
//! and parameter lists (which the WSDL is written from), and what each one
//! does with the records.
//!
//! Names seen in public client scripts are marked `public`; the others are
//! ours, for concepts whose real call is not public (commitments, plan
//! changes, sub-dealer and role lists, permissions), and are listed in
//! `docs/adc-protocol.md` so they can be renamed in one place.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

use crate::model::{Address, Customer, Permissions, Rep};
use crate::seed;
use crate::state::SimState;
use crate::store::{ListFilter, Refusal, Store, CUSTOMER_NOT_FOUND};
use crate::xml::{Element, FaultCode, Writer};

/// The value `GetLatestCallerVersion` answers; `_V2` calls must pass 1..=it.
pub const LATEST_CALLER_VERSION: i64 = 2;

/// The two `.asmx` services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    CustomerManagement,
    DealerManagement,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::CustomerManagement, Service::DealerManagement];

    pub fn name(self) -> &'static str {
        match self {
            Service::CustomerManagement => "CustomerManagement",
            Service::DealerManagement => "DealerManagement",
        }
    }

    /// The URL path, e.g. `/WebServices/CustomerManagement.asmx`.
    pub fn path(self) -> String {
        format!("/WebServices/{}.asmx", self.name())
    }

    /// From the last path segment (`CustomerManagement.asmx`, any case).
    pub fn from_file(file: &str) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|s| file.eq_ignore_ascii_case(&format!("{}.asmx", s.name())))
    }
}

/// One input element of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// `s:` (XML Schema) or `tns:` (ours) type name.
    pub ty: &'static str,
    pub optional: bool,
}

const fn req(name: &'static str, ty: &'static str) -> Field {
    Field {
        name,
        ty,
        optional: false,
    }
}

const fn opt(name: &'static str, ty: &'static str) -> Field {
    Field {
        name,
        ty,
        optional: true,
    }
}

/// One served operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub service: Service,
    /// Seen in public client scripts (else: our own name).
    pub public: bool,
    pub input: &'static [Field],
    /// The type of `<{name}Result>`.
    pub output: &'static str,
    pub summary: &'static str,
}

const NEW_ACCOUNT: &[Field] = &[
    opt("CustomerAccountAddress", "tns:CustomerAddress"),
    opt("CustomerAccountEmail", "s:string"),
    opt("CustomerAccountPhone", "s:string"),
    opt("DealerCustomerId", "s:string"),
    opt("DesiredLoginName", "s:string"),
    opt("InstallationAddress", "tns:Address"),
    opt("InstallationTimeZone", "s:string"),
    opt("PanelType", "s:string"),
    opt("ModemSerialNumber", "s:string"),
    opt("CentralStationAccountNumber", "s:string"),
    opt("CentralStationReceiverNumber", "s:string"),
    opt("AddOnFeatures", "tns:ArrayOfAddOnFeature"),
    opt("SalesRepLoginName", "s:string"),
    opt("InstallerLoginName", "s:string"),
    opt("BranchId", "s:int"),
    req("PackageId", "s:int"),
    opt("BuilderProgramId", "s:int"),
    opt("InstallType", "s:string"),
];

use Service::{CustomerManagement as CM, DealerManagement as DM};

/// Every operation, in WSDL order.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        name: "GetLatestCallerVersion",
        service: CM,
        public: true,
        input: &[],
        output: "s:int",
        summary: "The CallerVersion to pass to the _V2 calls.",
    },
    Operation {
        name: "GetCustomerList",
        service: CM,
        public: true,
        input: &[req("includeTermed", "s:boolean")],
        output: "tns:ArrayOfInt",
        summary: "Ids of all customers and commitments (terminated ones if includeTermed).",
    },
    Operation {
        name: "GetCustomerList_V2",
        service: CM,
        public: true,
        input: &[
            req("IncludeTermed", "s:boolean"),
            opt("StartDate", "s:dateTime"),
            opt("EndDate", "s:dateTime"),
            opt("ExcludeCommitments", "s:boolean"),
            opt("ExcludeCustomers", "s:boolean"),
            opt("PanelVersions", "tns:ArrayOfString"),
            opt("AlternateId", "s:string"),
        ],
        output: "tns:ArrayOfInt",
        summary: "Customer ids, filtered; StartDate/EndDate select records created or \
                  modified in [StartDate, EndDate).",
    },
    Operation {
        name: "GetCustomerInfo_V2",
        service: CM,
        public: true,
        input: &[req("CallerVersion", "s:int"), req("CustomerId", "s:int")],
        output: "tns:CustomerInfo",
        summary: "One customer; a soap:Client fault 'Customer not found' for unknown ids.",
    },
    Operation {
        name: "CreateCustomer",
        service: CM,
        public: true,
        input: NEW_ACCOUNT,
        output: "tns:CreateCustomerResult",
        summary: "Creates a customer account; Success=false with ErrorMessage when refused.",
    },
    Operation {
        name: "TerminateCustomer",
        service: CM,
        public: true,
        input: &[
            req("CustomerId", "s:int"),
            opt("TerminationReason", "s:string"),
        ],
        output: "tns:OperationResult",
        summary: "Terminates a customer.",
    },
    Operation {
        name: "UpdateCentralStationInfo_V2",
        service: CM,
        public: true,
        input: &[
            req("CustomerId", "s:int"),
            opt("AccountNumber", "s:string"),
            opt("ReceiverNumber", "s:string"),
        ],
        output: "tns:OperationResult",
        summary: "Sets the central station account and receiver numbers.",
    },
    Operation {
        name: "ChangeServicePlan",
        service: CM,
        public: false,
        input: &[
            req("CustomerId", "s:int"),
            req("PackageId", "s:int"),
            opt("AddOnFeatures", "tns:ArrayOfAddOnFeature"),
        ],
        output: "tns:OperationResult",
        summary: "Ours: changes a customer's service plan (and add-ons when given).",
    },
    Operation {
        name: "CreateCommitment",
        service: CM,
        public: false,
        input: NEW_ACCOUNT,
        output: "tns:CreateCommitmentResult",
        summary: "Ours: creates a Builder Program commitment (BuilderProgramId required).",
    },
    Operation {
        name: "GetRepList",
        service: DM,
        public: true,
        input: &[],
        output: "tns:ArrayOfRep",
        summary: "All reps (dealer users), active or not.",
    },
    Operation {
        name: "GetCurrentRepInfo",
        service: DM,
        public: true,
        input: &[],
        output: "tns:Rep",
        summary: "The rep record of the calling login.",
    },
    Operation {
        name: "GetDealerId",
        service: DM,
        public: true,
        input: &[],
        output: "s:int",
        summary: "The dealer id of the calling login.",
    },
    Operation {
        name: "GetPackageIds",
        service: DM,
        public: true,
        input: &[],
        output: "tns:ArrayOfPackageInfo",
        summary: "The service plans (PackageId and name).",
    },
    Operation {
        name: "GetCSPhoneNumber",
        service: DM,
        public: true,
        input: &[],
        output: "s:string",
        summary: "The dealer's central station phone number.",
    },
    Operation {
        name: "GetSubDealerList",
        service: DM,
        public: false,
        input: &[],
        output: "tns:ArrayOfSubDealer",
        summary: "Ours: the sub-dealers (branches).",
    },
    Operation {
        name: "GetRoleList",
        service: DM,
        public: false,
        input: &[],
        output: "tns:ArrayOfRole",
        summary: "Ours: the permission roles reps can hold.",
    },
    Operation {
        name: "GetBuilderProgramList",
        service: DM,
        public: false,
        input: &[],
        output: "tns:ArrayOfBuilderProgram",
        summary: "Ours: the Builder Programs of the dealer.",
    },
    Operation {
        name: "GetDealerPermissions",
        service: DM,
        public: false,
        input: &[],
        output: "tns:DealerPermissions",
        summary: "Ours: which optional permissions the calling login has.",
    },
];

/// The operation `name` of `service`, if served.
pub fn find(service: Service, name: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|o| o.service == service && o.name == name)
}

/// A SOAP fault to answer instead of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: FaultCode,
    pub message: String,
}

impl Fault {
    pub fn client(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Client,
            message: message.into(),
        }
    }
}

/// The content of `<{op}Response>` and whether the call had its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub xml: String,
    pub success: bool,
}

/// Who is calling and with what.
pub(crate) struct Call<'a> {
    pub state: &'a SimState,
    pub login: &'a str,
    pub permissions: Permissions,
    pub params: &'a Element,
    pub now: DateTime<Utc>,
}

/// The parameter container: the operation element, or its `input` child
/// when the parameters are wrapped in one.
pub fn params_of(op: &Element) -> &Element {
    match op.children.as_slice() {
        [only] if only.name.eq_ignore_ascii_case("input") && !only.children.is_empty() => only,
        _ => op,
    }
}

// ---- reading parameters ----------------------------------------------------

fn int(p: &Element, name: &str) -> Result<Option<i64>, Fault> {
    match p.text_of(name).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| {
            Fault::client(format!(
                "Server was unable to read request: {name} {t:?} is not an integer"
            ))
        }),
    }
}

fn boolean(p: &Element, name: &str) -> Result<bool, Fault> {
    match p.text_of(name).filter(|t| !t.is_empty()) {
        None => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(t) => Err(Fault::client(format!(
            "Server was unable to read request: {name} {t:?} is not a boolean"
        ))),
    }
}

/// xs:dateTime (offset optional, then UTC) or a date; `0001-01-01...` (an
/// unset .NET DateTime) means no bound.
fn date(p: &Element, name: &str) -> Result<Option<DateTime<Utc>>, Fault> {
    let Some(t) = p.text_of(name).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if t.starts_with("0001-01-01") {
        return Ok(None);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(d.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(Some(d.and_utc()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|d| d.and_utc()));
    }
    Err(Fault::client(format!(
        "Server was unable to read request: {name} {t:?} is not an xs:dateTime"
    )))
}

/// A list: the texts of the children, or the space-separated words of the
/// text (how .NET writes a flags enum).
fn list(p: &Element, name: &str) -> Option<Vec<String>> {
    let el = p.child(name)?;
    let mut out: Vec<String> = el
        .children
        .iter()
        .map(|c| c.text.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    out.extend(el.text.split_whitespace().map(str::to_string));
    Some(out)
}

fn required_id(p: &Element, name: &str) -> Result<i64, Fault> {
    int(p, name)?.ok_or_else(|| {
        Fault::client(format!(
            "Server was unable to read request: {name} is required"
        ))
    })
}

fn address(el: Option<&Element>) -> Address {
    let Some(el) = el else {
        return Address::default();
    };
    Address {
        street1: el.string("Street1"),
        street2: el.string("Street2"),
        city: el.string("City"),
        state: el.string("State"),
        zip: el.string("Zip"),
        country_id: el.string("CountryId"),
    }
}

/// The new record described by a `CreateCustomer`/`CreateCommitment` input.
fn new_account(p: &Element) -> Result<Customer, Fault> {
    let account = p.child("CustomerAccountAddress");
    let account_address = address(account);
    let install = p.child("InstallationAddress");
    let install_address = if install.is_some() {
        address(install)
    } else {
        account_address.clone()
    };
    let from_account = |name: &str| account.map(|a| a.string(name)).unwrap_or_default();
    let phone = match p.string("CustomerAccountPhone") {
        s if s.is_empty() => from_account("Phone"),
        s => s,
    };
    let epoch = seed::seed_epoch();
    Ok(Customer {
        customer_id: 0,
        login_name: p.string("DesiredLoginName"),
        dealer_customer_id: p.string("DealerCustomerId"),
        first_name: from_account("FirstName"),
        last_name: from_account("LastName"),
        company_name: from_account("CompanyName"),
        email: p.string("CustomerAccountEmail"),
        phone,
        install_address,
        time_zone: p.string("InstallationTimeZone"),
        panel_type: p.string("PanelType"),
        modem_serial_number: p.string("ModemSerialNumber"),
        package_id: int(p, "PackageId")?.unwrap_or(0),
        add_on_features: list(p, "AddOnFeatures").unwrap_or_default(),
        sales_rep_login_name: p.string("SalesRepLoginName"),
        installer_login_name: p.string("InstallerLoginName"),
        sub_dealer_id: int(p, "BranchId")?.unwrap_or(0),
        central_station_account_number: p.string("CentralStationAccountNumber"),
        central_station_receiver_number: p.string("CentralStationReceiverNumber"),
        install_type: p.string("InstallType"),
        is_terminated: false,
        terminated_date: None,
        is_commitment: false,
        commitment_id: 0,
        builder_program_id: int(p, "BuilderProgramId")?.unwrap_or(0),
        join_date: epoch,
        created: epoch,
        modified: epoch,
    })
}

// ---- writing results -----------------------------------------------------

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn result_open(w: &mut Writer, op: &str) {
    w.out.push('<');
    w.out.push_str(op);
    w.out.push_str("Result>");
}

fn result_close(w: &mut Writer, op: &str) {
    w.out.push_str("</");
    w.out.push_str(op);
    w.out.push_str("Result>");
}

fn write_address(w: &mut Writer, name: &str, a: &Address) {
    w.open(name)
        .leaf("Street1", &a.street1)
        .leaf("Street2", &a.street2)
        .leaf("City", &a.city)
        .leaf("State", &a.state)
        .leaf("Zip", &a.zip)
        .leaf("CountryId", &a.country_id)
        .close(name);
}

pub(crate) fn write_customer(w: &mut Writer, c: &Customer, store: &Store) {
    let rep_support_id = store
        .rep_by_login(&c.sales_rep_login_name)
        .map(|r| r.support_id)
        .unwrap_or(0);
    w.num("CustomerId", c.customer_id)
        .leaf("LoginName", &c.login_name)
        .leaf("DealerCustomerId", &c.dealer_customer_id)
        .flag("IsTerminated", c.is_terminated);
    if let Some(t) = c.terminated_date {
        w.leaf("TerminatedDate", &time(t));
    }
    w.flag("IsCommitment", c.is_commitment)
        .num("CommitmentId", c.commitment_id)
        .num("BuilderProgramId", c.builder_program_id)
        .num("SubDealerId", c.sub_dealer_id)
        .leaf("SubDealerName", store.sub_dealer_name(c.sub_dealer_id))
        .leaf("FirstName", &c.first_name)
        .leaf("LastName", &c.last_name)
        .leaf("CompanyName", &c.company_name)
        .leaf("Email", &c.email)
        .leaf("Phone", &c.phone);
    write_address(w, "InstallAddress", &c.install_address);
    w.leaf("TimeZone", &c.time_zone)
        .open("ModemInfo")
        .leaf("PanelType", &c.panel_type)
        .leaf("ModemSerialNumber", &c.modem_serial_number)
        .close("ModemInfo")
        .num("PackageId", c.package_id)
        .leaf("ServicePlanName", store.package_name(c.package_id))
        .open("AddOnFeatures");
    for f in &c.add_on_features {
        w.leaf("AddOnFeature", f);
    }
    w.close("AddOnFeatures")
        .leaf("SalesRepLoginName", &c.sales_rep_login_name)
        .num("SalesRepSupportId", rep_support_id)
        .leaf("InstallerLoginName", &c.installer_login_name)
        .leaf(
            "CentralStationAccountNumber",
            &c.central_station_account_number,
        )
        .leaf(
            "CentralStationReceiverNumber",
            &c.central_station_receiver_number,
        )
        .leaf("InstallType", &c.install_type)
        .leaf("JoinDate", &time(c.join_date))
        .leaf("CreatedDate", &time(c.created))
        .leaf("LastModifiedDate", &time(c.modified));
}

pub(crate) fn write_rep(w: &mut Writer, r: &Rep, store: &Store) {
    w.num("SupportId", r.support_id)
        .leaf("RepLoginName", &r.login_name)
        .leaf("FirstName", &r.first_name)
        .leaf("LastName", &r.last_name)
        .leaf("Email", &r.email)
        .leaf("Phone", &r.phone);
    write_address(w, "Address", &r.address);
    w.num("SubDealerId", r.sub_dealer_id)
        .leaf("SubDealerName", store.sub_dealer_name(r.sub_dealer_id))
        .open("Roles");
    for role in &r.roles {
        w.open("Role")
            .num("RoleId", store.role_id(role))
            .leaf("Name", role)
            .close("Role");
    }
    w.close("Roles")
        .flag("IsActive", r.is_active)
        .leaf("UserField", &r.user_field);
}

fn outcome(op: &str, result: Result<(), Refusal>) -> Result<Answer, Fault> {
    let mut w = Writer::new();
    result_open(&mut w, op);
    let success = match result {
        Ok(()) => {
            w.flag("Success", true).leaf("ErrorMessage", "");
            true
        }
        Err(Refusal::NotFound(m)) => return Err(Fault::client(m)),
        Err(Refusal::Rejected(m)) => {
            w.flag("Success", false).leaf("ErrorMessage", &m);
            false
        }
    };
    result_close(&mut w, op);
    Ok(Answer {
        xml: w.out,
        success,
    })
}

fn ints(op: &str, ids: &[i64]) -> Answer {
    let mut w = Writer::new();
    w.out.reserve(ids.len() * 20 + 64);
    result_open(&mut w, op);
    for id in ids {
        w.num("int", *id);
    }
    result_close(&mut w, op);
    Answer {
        xml: w.out,
        success: true,
    }
}

fn scalar(op: &str, value: &str) -> Answer {
    let mut w = Writer::new();
    w.leaf(&format!("{op}Result"), value);
    Answer {
        xml: w.out,
        success: true,
    }
}

fn filled(op: &str, f: impl FnOnce(&mut Writer)) -> Answer {
    let mut w = Writer::new();
    result_open(&mut w, op);
    f(&mut w);
    result_close(&mut w, op);
    Answer {
        xml: w.out,
        success: true,
    }
}

// ---- dispatch --------------------------------------------------------------

/// Runs `op` (already known to be served) for an authenticated caller.
pub(crate) fn call(op: &Operation, c: Call<'_>) -> Result<Answer, Fault> {
    let p = c.params;
    let name = op.name;
    match name {
        "GetLatestCallerVersion" => Ok(scalar(name, &LATEST_CALLER_VERSION.to_string())),
        "GetCustomerList" => {
            let filter = ListFilter {
                include_termed: boolean(p, "includeTermed")?,
                ..ListFilter::default()
            };
            let ids = c.state.with_store(|s| s.customer_ids(&filter));
            Ok(ints(name, &ids))
        }
        "GetCustomerList_V2" => {
            let filter = ListFilter {
                include_termed: boolean(p, "IncludeTermed")?,
                start: date(p, "StartDate")?,
                end: date(p, "EndDate")?,
                exclude_commitments: boolean(p, "ExcludeCommitments")?,
                exclude_customers: boolean(p, "ExcludeCustomers")?,
                panel_types: list(p, "PanelVersions").unwrap_or_default(),
                alternate_id: p
                    .text_of("AlternateId")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            };
            let ids = c.state.with_store(|s| s.customer_ids(&filter));
            Ok(ints(name, &ids))
        }
        "GetCustomerInfo_V2" => {
            let version = int(p, "CallerVersion")?.unwrap_or(0);
            if !(1..=LATEST_CALLER_VERSION).contains(&version) {
                return Err(Fault::client(format!(
                    "CallerVersion {version} is not supported; call GetLatestCallerVersion"
                )));
            }
            let id = required_id(p, "CustomerId")?;
            c.state.with_store(|s| {
                let customer = s
                    .customer(id)
                    .ok_or_else(|| Fault::client(CUSTOMER_NOT_FOUND))?;
                Ok(filled(name, |w| write_customer(w, customer, s)))
            })
        }
        "CreateCustomer" => {
            let new = new_account(p)?;
            let result = c
                .state
                .with_store(|s| s.create_customer(new, c.permissions, c.now));
            let mut w = Writer::new();
            result_open(&mut w, name);
            let success = result.is_ok();
            match result {
                Ok(id) => w
                    .flag("Success", true)
                    .leaf("ErrorMessage", "")
                    .num("CustomerId", id),
                Err(e) => w
                    .flag("Success", false)
                    .leaf("ErrorMessage", e.message())
                    .num("CustomerId", 0),
            };
            result_close(&mut w, name);
            Ok(Answer {
                xml: w.out,
                success,
            })
        }
        "CreateCommitment" => {
            let new = new_account(p)?;
            let result = c
                .state
                .with_store(|s| s.create_commitment(new, c.permissions, c.now));
            let mut w = Writer::new();
            result_open(&mut w, name);
            let success = result.is_ok();
            let (msg, commitment, customer) = match result {
                Ok((commitment, customer)) => (String::new(), commitment, customer),
                Err(e) => (e.message().to_string(), 0, 0),
            };
            w.flag("Success", success)
                .leaf("ErrorMessage", &msg)
                .num("CommitmentId", commitment)
                .num("CustomerId", customer);
            result_close(&mut w, name);
            Ok(Answer {
                xml: w.out,
                success,
            })
        }
        "TerminateCustomer" => {
            let id = required_id(p, "CustomerId")?;
            outcome(name, c.state.with_store(|s| s.terminate(id, c.now)))
        }
        "UpdateCentralStationInfo_V2" => {
            let id = required_id(p, "CustomerId")?;
            let account = p.string("AccountNumber");
            let receiver = p.string("ReceiverNumber");
            outcome(
                name,
                c.state
                    .with_store(|s| s.update_central_station(id, &account, &receiver, c.now)),
            )
        }
        "ChangeServicePlan" => {
            let id = required_id(p, "CustomerId")?;
            let package = required_id(p, "PackageId")?;
            let features = list(p, "AddOnFeatures");
            outcome(
                name,
                c.state
                    .with_store(|s| s.change_service_plan(id, package, features, c.now)),
            )
        }
        "GetRepList" => Ok(c.state.with_store(|s| {
            filled(name, |w| {
                for r in s.reps() {
                    w.open("Rep");
                    write_rep(w, r, s);
                    w.close("Rep");
                }
            })
        })),
        "GetCurrentRepInfo" => Ok(c.state.with_store(|s| {
            let own = s.rep_by_login(c.login).cloned().unwrap_or_else(|| Rep {
                support_id: 0,
                login_name: c.login.to_string(),
                first_name: "Integration".into(),
                last_name: "User".into(),
                email: String::new(),
                phone: String::new(),
                address: Address::default(),
                sub_dealer_id: 0,
                roles: vec![seed::ROLE_ADMIN.into()],
                is_active: true,
                user_field: String::new(),
            });
            filled(name, |w| write_rep(w, &own, s))
        })),
        "GetDealerId" => Ok(scalar(name, &seed::DEALER_ID.to_string())),
        "GetCSPhoneNumber" => Ok(scalar(name, seed::CS_PHONE_NUMBER)),
        "GetPackageIds" => Ok(c.state.with_store(|s| {
            filled(name, |w| {
                for pk in s.packages() {
                    w.open("PackageInfo")
                        .num("PackageId", pk.package_id)
                        .leaf("Name", &pk.name)
                        .close("PackageInfo");
                }
            })
        })),
        "GetSubDealerList" => Ok(c.state.with_store(|s| {
            filled(name, |w| {
                for sd in s.sub_dealers() {
                    w.open("SubDealer")
                        .num("SubDealerId", sd.sub_dealer_id)
                        .leaf("Name", &sd.name)
                        .close("SubDealer");
                }
            })
        })),
        "GetRoleList" => Ok(c.state.with_store(|s| {
            filled(name, |w| {
                for r in s.roles() {
                    w.open("Role")
                        .num("RoleId", r.role_id)
                        .leaf("Name", &r.name)
                        .close("Role");
                }
            })
        })),
        "GetBuilderProgramList" => Ok(c.state.with_store(|s| {
            filled(name, |w| {
                for b in s.builder_programs() {
                    w.open("BuilderProgram")
                        .num("BuilderProgramId", b.builder_program_id)
                        .leaf("Name", &b.name)
                        .close("BuilderProgram");
                }
            })
        })),
        "GetDealerPermissions" => Ok(filled(name, |w| {
            w.flag("BuilderProgram", c.permissions.builder_program)
                .flag("Billing", c.permissions.billing);
        })),
        other => Err(Fault {
            code: FaultCode::Server,
            message: format!("operation {other} is listed but not implemented"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_served_once() {
        for (i, a) in OPERATIONS.iter().enumerate() {
            for b in &OPERATIONS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
            assert_eq!(find(a.service, a.name), Some(a));
        }
        assert!(find(Service::DealerManagement, "GetCustomerList").is_none());
        assert_eq!(
            Service::from_file("customermanagement.ASMX"),
            Some(Service::CustomerManagement)
        );
    }

    /// The answers are written by hand; they must follow the WSDL types.
    #[test]
    fn records_are_written_as_the_wsdl_says() {
        let store = Store::seeded(300);
        let names = |xml: &str| -> Vec<String> {
            let doc = crate::xml::parse_document(&format!(
                "<R xmlns=\"{}\">{xml}</R>",
                crate::xml::ADC_NS
            ))
            .unwrap();
            doc.children.iter().map(|c| c.name.clone()).collect()
        };
        let fields = |ty: &str, skip_optional: bool| -> Vec<String> {
            crate::wsdl::type_fields(ty)
                .unwrap()
                .iter()
                .filter(|f| !(skip_optional && f.ty == "s:dateTime" && f.optional))
                .map(|f| f.name.to_string())
                .collect()
        };
        let active = store.customers().find(|c| !c.is_terminated).unwrap();
        let terminated = store.customers().find(|c| c.is_terminated).unwrap();
        let mut w = Writer::new();
        write_customer(&mut w, active, &store);
        assert_eq!(names(&w.out), fields("CustomerInfo", true));
        let mut w = Writer::new();
        write_customer(&mut w, terminated, &store);
        assert_eq!(names(&w.out), fields("CustomerInfo", false));
        let mut w = Writer::new();
        write_rep(&mut w, store.reps().next().unwrap(), &store);
        assert_eq!(names(&w.out), fields("Rep", false));
    }

    #[test]
    fn reads_dates_the_dotnet_way() {
        let el = |t: &str| Element {
            children: vec![Element {
                ns: Some(crate::xml::ADC_NS.into()),
                name: "D".into(),
                text: t.into(),
                ..Element::default()
            }],
            ..Element::default()
        };
        let d = |t: &str| date(&el(t), "D");
        assert_eq!(d("0001-01-01T00:00:00").unwrap(), None);
        assert_eq!(
            d("2024-05-06T07:08:09Z").unwrap().unwrap().to_rfc3339(),
            "2024-05-06T07:08:09+00:00"
        );
        assert_eq!(
            d("2024-05-06T07:08:09.5-05:00")
                .unwrap()
                .unwrap()
                .to_rfc3339(),
            "2024-05-06T12:08:09.500+00:00"
        );
        assert!(d("2024-05-06T07:08:09").unwrap().is_some());
        assert!(d("2024-05-06").unwrap().is_some());
        assert!(d("yesterday").is_err());
    }
}
