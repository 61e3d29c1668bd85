//! What an import asks for (A1 customer filters and options, A3 user filters
//! and options, A4 as kept with each run) and the rules a request for one must
//! pass: [`ImportSpec::new`] turns a request as a client gave it into a spec,
//! with every refusal at once; the filters decide which read records a run takes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ImportKind;
use crate::adc::{AdcCustomer, AdcCustomerId, AdcRep};
use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::validation::ValidationError;

/// Which customers a run takes; every filter given must match, an empty one
/// matches all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerFilters {
    /// Exact ADC customer ids.
    #[serde(default)]
    pub customer_ids: Vec<AdcCustomerId>,
    /// Customers of any of these sub-dealers.
    #[serde(default)]
    pub sub_dealer_ids: Vec<i64>,
}

impl CustomerFilters {
    /// Whether the id filter lets the customer through (known before reading it).
    pub fn check_id(&self, id: AdcCustomerId) -> Result<(), String> {
        if self.customer_ids.is_empty() || self.customer_ids.contains(&id) {
            Ok(())
        } else {
            Err("the customer id is not among the filter's customer ids".into())
        }
    }

    /// Whether the customer, read, passes every filter; `Err` says why not.
    pub fn check(&self, c: &AdcCustomer) -> Result<(), String> {
        self.check_id(c.customer_id)?;
        if self.sub_dealer_ids.is_empty() {
            return Ok(());
        }
        match &c.sub_dealer {
            Some(sd) if self.sub_dealer_ids.contains(&sd.id) => Ok(()),
            Some(sd) => Err(format!(
                "sub-dealer {} ({}) is not among the filter's sub-dealers",
                sd.id, sd.name
            )),
            None => Err("the customer belongs to no sub-dealer".into()),
        }
    }
}

/// What imported customers get on the billing side.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerOptions {
    #[serde(default)]
    pub office_location: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The billing user who becomes the rep of customers whose ADC rep is
    /// not a billing user; none leaves their rep blank (A2).
    #[serde(default)]
    pub default_rep: Option<BillingId>,
    /// List what the run would do (new, matched, filtered) without writing
    /// a billing record, a mapping, an ISP account link or an event.
    #[serde(default)]
    pub dry_run: bool,
}

/// Which reps a run takes; every filter given must match, an empty one matches all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserFilters {
    /// Exact ADC support ids.
    #[serde(default)]
    pub support_ids: Vec<i64>,
    /// Reps holding any of these roles (by name, any case, or by role id).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Reps of any of these sub-dealers.
    #[serde(default)]
    pub sub_dealer_ids: Vec<i64>,
}

impl UserFilters {
    pub fn check(&self, r: &AdcRep) -> Result<(), String> {
        if !self.support_ids.is_empty()
            && !r.support_id.is_some_and(|s| self.support_ids.contains(&s))
        {
            return Err("the support id is not among the filter's support ids".into());
        }
        if !self.roles.is_empty() {
            let holds = r.roles.iter().any(|role| {
                self.roles.iter().any(|wanted| {
                    let wanted = wanted.trim();
                    role.name.eq_ignore_ascii_case(wanted)
                        || (role.id != 0 && wanted.parse::<i64>() == Ok(role.id))
                })
            });
            if !holds {
                return Err("the user holds none of the filter's roles".into());
            }
        }
        if !self.sub_dealer_ids.is_empty() {
            match &r.sub_dealer {
                Some(sd) if self.sub_dealer_ids.contains(&sd.id) => {}
                Some(sd) => {
                    return Err(format!(
                        "sub-dealer {} ({}) is not among the filter's sub-dealers",
                        sd.id, sd.name
                    ))
                }
                None => return Err("the user belongs to no sub-dealer".into()),
            }
        }
        Ok(())
    }
}

/// What imported users get on the billing side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOptions {
    #[serde(default = "yes")]
    pub active: bool,
    /// May log in to the billing system: each such user is announced on the
    /// change feed so the credentials get sent.
    #[serde(default)]
    pub can_login: bool,
    #[serde(default)]
    pub permission_group: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// As for customers: list, write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

fn yes() -> bool {
    true
}

impl Default for UserOptions {
    fn default() -> Self {
        Self {
            active: true,
            can_login: false,
            permission_group: String::new(),
            tags: Vec::new(),
            dry_run: false,
        }
    }
}

/// What a run imports, how it filters, and what it sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImportSpec {
    Customers {
        filters: CustomerFilters,
        options: CustomerOptions,
    },
    Users {
        filters: UserFilters,
        options: UserOptions,
    },
}

impl ImportSpec {
    pub fn kind(&self) -> ImportKind {
        match self {
            Self::Customers { .. } => ImportKind::Customers,
            Self::Users { .. } => ImportKind::Users,
        }
    }

    /// A dry run lists what it would do and writes nothing else.
    pub fn dry_run(&self) -> bool {
        match self {
            Self::Customers { options, .. } => options.dry_run,
            Self::Users { options, .. } => options.dry_run,
        }
    }

    /// The filters and the options as JSON, as stored and shown.
    pub fn parts(&self) -> (serde_json::Value, serde_json::Value) {
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or_default();
        match self {
            Self::Customers { filters, options } => (
                json(serde_json::to_value(filters)),
                json(serde_json::to_value(options)),
            ),
            Self::Users { filters, options } => (
                json(serde_json::to_value(filters)),
                json(serde_json::to_value(options)),
            ),
        }
    }

    /// The spec back from its stored parts.
    pub fn from_parts(
        kind: ImportKind,
        filters: serde_json::Value,
        options: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            ImportKind::Customers => Self::Customers {
                filters: serde_json::from_value(filters)?,
                options: serde_json::from_value(options)?,
            },
            ImportKind::Users => Self::Users {
                filters: serde_json::from_value(filters)?,
                options: serde_json::from_value(options)?,
            },
        })
    }
}

// ---- a request for a run, and its rules ------------------------------------

/// Ids as a client gives them: one text of comma-separated ids (`"101, 102"`)
/// or a list (numbers given as numbers arrive here as their text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedIds {
    Text(String),
    List(Vec<String>),
}

/// The filters of a request, as given. Customer runs take `customer_ids` and
/// `sub_dealer_ids`; user runs `support_ids`, `roles` and `sub_dealer_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestedFilters {
    pub customer_ids: Option<RequestedIds>,
    pub sub_dealer_ids: Vec<i64>,
    pub support_ids: Option<RequestedIds>,
    pub roles: Vec<String>,
}

/// The options of a request, as given. Customer runs take `office_location`,
/// `tags` and `default_rep`; user runs `active` (default true), `can_login`,
/// `permission_group` and `tags`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestedOptions {
    pub office_location: Option<String>,
    pub tags: Vec<String>,
    pub default_rep: Option<String>,
    pub active: Option<bool>,
    pub can_login: Option<bool>,
    pub permission_group: Option<String>,
}

/// A run as a client asks for it, before any rule: the connection it reads
/// (its id as given), what it brings over, its filters and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub connection_id: String,
    pub kind: ImportKind,
    pub filters: RequestedFilters,
    pub options: RequestedOptions,
    pub dry_run: bool,
}

const NOT_A_CONNECTION_ID: &str = "is not a connection id";

impl ImportSpec {
    /// The spec a request asks for, with the connection it reads from; every
    /// refusal at once, each under the request's field (`filters.roles[2]`).
    /// A filter or option of the other kind of run is refused rather than
    /// ignored, so a mistaken request never quietly imports everything.
    pub fn new(request: ImportRequest) -> Result<(ConnectionId, Self), ValidationError> {
        let mut v = ValidationError::default();
        let cid = Uuid::parse_str(request.connection_id.trim())
            .map(ConnectionId)
            .map_err(|_| v.push("connection_id", NOT_A_CONNECTION_ID))
            .ok();
        let (f, o, dry_run) = (request.filters, request.options, request.dry_run);
        let spec = match request.kind {
            ImportKind::Customers => customer_spec(&mut v, f, o, dry_run),
            ImportKind::Users => user_spec(&mut v, f, o, dry_run),
        };
        v.into_result()?;
        match cid {
            Some(cid) => Ok((cid, spec)),
            None => Err(ValidationError::field("connection_id", NOT_A_CONNECTION_ID)),
        }
    }
}

fn customer_spec(
    v: &mut ValidationError,
    f: RequestedFilters,
    o: RequestedOptions,
    dry_run: bool,
) -> ImportSpec {
    not_for(
        v,
        "filters.support_ids",
        f.support_ids.is_some(),
        "customer",
    );
    not_for(v, "filters.roles", !f.roles.is_empty(), "customer");
    not_for(v, "options.active", o.active.is_some(), "customer");
    not_for(v, "options.can_login", o.can_login.is_some(), "customer");
    not_for(
        v,
        "options.permission_group",
        o.permission_group.is_some(),
        "customer",
    );
    let customer_ids = f
        .customer_ids
        .map(|ids| ids.parse(v, "filters.customer_ids"))
        .unwrap_or_default()
        .into_iter()
        .map(AdcCustomerId)
        .collect();
    let default_rep = o
        .default_rep
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let default_rep = default_rep.and_then(|r| v.check("options.default_rep", BillingId::parse(r)));
    ImportSpec::Customers {
        filters: CustomerFilters {
            customer_ids,
            sub_dealer_ids: sub_dealers(v, f.sub_dealer_ids),
        },
        options: CustomerOptions {
            office_location: text(v, "options.office_location", o.office_location, 100),
            tags: tags(v, o.tags),
            default_rep,
            dry_run,
        },
    }
}

fn user_spec(
    v: &mut ValidationError,
    f: RequestedFilters,
    o: RequestedOptions,
    dry_run: bool,
) -> ImportSpec {
    not_for(v, "filters.customer_ids", f.customer_ids.is_some(), "user");
    not_for(
        v,
        "options.office_location",
        o.office_location.is_some(),
        "user",
    );
    not_for(v, "options.default_rep", o.default_rep.is_some(), "user");
    let support_ids = f
        .support_ids
        .map(|ids| ids.parse(v, "filters.support_ids"))
        .unwrap_or_default();
    let mut roles: Vec<String> = Vec::new();
    for (i, r) in f.roles.into_iter().enumerate() {
        let r = text(v, &format!("filters.roles[{i}]"), Some(r), 100);
        if r.is_empty() {
            v.push(format!("filters.roles[{i}]"), "must not be empty");
        } else if !roles.contains(&r) {
            roles.push(r);
        }
    }
    ImportSpec::Users {
        filters: UserFilters {
            support_ids,
            roles,
            sub_dealer_ids: sub_dealers(v, f.sub_dealer_ids),
        },
        options: UserOptions {
            active: o.active.unwrap_or(true),
            can_login: o.can_login.unwrap_or(false),
            permission_group: text(v, "options.permission_group", o.permission_group, 100),
            tags: tags(v, o.tags),
            dry_run,
        },
    }
}

impl RequestedIds {
    /// The ids, each once, in the order given; refusals go to `v` under `field`.
    fn parse(self, v: &mut ValidationError, field: &str) -> Vec<i64> {
        let raw: Vec<String> = match self {
            Self::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Self::List(items) => items.into_iter().map(|t| t.trim().to_owned()).collect(),
        };
        if raw.len() > 10_000 {
            v.push(field, "at most 10000 ids");
            return Vec::new();
        }
        let mut ids = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            match r.parse::<i64>() {
                Ok(n) if n > 0 => {
                    if !ids.contains(&n) {
                        ids.push(n)
                    }
                }
                _ => v.push(
                    format!("{field}[{i}]"),
                    format!(
                        "'{}' is not an Alarm.com id (a positive whole number)",
                        short(r)
                    ),
                ),
            }
        }
        ids
    }
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

fn text(v: &mut ValidationError, field: &str, value: Option<String>, max: usize) -> String {
    let value = value.unwrap_or_default().trim().to_owned();
    if value.chars().count() > max {
        v.push(field, format!("must be at most {max} characters"));
    } else if value.chars().any(char::is_control) {
        v.push(field, "must not contain control characters");
    }
    value
}

fn tags(v: &mut ValidationError, tags: Vec<String>) -> Vec<String> {
    if tags.len() > 50 {
        v.push("options.tags", "at most 50 tags");
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in tags.into_iter().enumerate() {
        let t = text(v, &format!("options.tags[{i}]"), Some(t), 50);
        if t.is_empty() {
            v.push(format!("options.tags[{i}]"), "must not be empty");
        } else if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn not_for(v: &mut ValidationError, field: &str, given: bool, kind: &str) {
    if given {
        v.push(field, format!("does not apply to {kind} imports"));
    }
}

fn sub_dealers(v: &mut ValidationError, ids: Vec<i64>) -> Vec<i64> {
    if ids.iter().any(|id| *id <= 0) {
        v.push("filters.sub_dealer_ids", "sub-dealer ids are positive");
    }
    let mut out = Vec::new();
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::fixtures::{customer, rep};
    use crate::import::ItemOutcome;

    #[test]
    fn customer_filters_must_all_match() {
        let f = CustomerFilters {
            customer_ids: vec![AdcCustomerId(1), AdcCustomerId(2)],
            sub_dealer_ids: vec![201, 202],
        };
        assert!(f.check(&customer(1, Some(201))).is_ok());
        assert!(f.check(&customer(2, Some(202))).is_ok());
        assert!(f.check(&customer(3, Some(201))).is_err(), "id not listed");
        assert!(
            f.check(&customer(1, Some(203))).is_err(),
            "other sub-dealer"
        );
        assert!(f.check(&customer(1, None)).is_err(), "no sub-dealer");
        assert!(CustomerFilters::default().check(&customer(9, None)).is_ok());
        assert!(f.check_id(AdcCustomerId(3)).is_err());
    }

    #[test]
    fn user_filters_take_any_role_or_sub_dealer() {
        let f = UserFilters {
            support_ids: vec![],
            roles: vec!["sales rep".into(), "5".into()],
            sub_dealer_ids: vec![201],
        };
        assert!(f.check(&rep(1, &["Sales Rep"], Some(201))).is_ok());
        assert!(f.check(&rep(1, &["Technician"], Some(201))).is_err());
        assert!(f.check(&rep(1, &["Sales Rep"], Some(202))).is_err());
        let by_id = rep(1, &["A", "B", "C", "D", "Office"], Some(201));
        assert!(f.check(&by_id).is_ok(), "role id 5");
        let f = UserFilters {
            support_ids: vec![7],
            ..Default::default()
        };
        assert!(f.check(&rep(7, &[], None)).is_ok());
        assert!(f.check(&rep(8, &[], None)).is_err());
    }

    #[test]
    fn specs_round_trip_through_their_parts() {
        let spec = ImportSpec::Users {
            filters: UserFilters {
                support_ids: vec![1],
                roles: vec!["Manager".into()],
                sub_dealer_ids: vec![],
            },
            options: UserOptions::default(),
        };
        let (f, o) = spec.parts();
        assert_eq!(
            ImportSpec::from_parts(ImportKind::Users, f, o).unwrap(),
            spec
        );
        assert_eq!(
            ItemOutcome::parse("filtered_out"),
            Some(ItemOutcome::FilteredOut)
        );
    }

    #[test]
    fn a_request_is_refused_field_by_field_all_at_once() {
        let request = |kind, filters, options| ImportRequest {
            connection_id: " 0190a8f6-8c4e-7a51-9d3e-4c1a2b3c4d5e ".into(),
            kind,
            filters,
            options,
            dry_run: false,
        };
        let refused = ImportSpec::new(request(
            ImportKind::Customers,
            RequestedFilters {
                customer_ids: Some(RequestedIds::Text("12, x".into())),
                roles: vec!["Manager".into()],
                ..Default::default()
            },
            RequestedOptions {
                can_login: Some(true),
                ..Default::default()
            },
        ))
        .unwrap_err();
        let fields: Vec<&str> = refused.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "filters.roles",
                "options.can_login",
                "filters.customer_ids[1]"
            ]
        );
        let (_, spec) = ImportSpec::new(request(
            ImportKind::Users,
            RequestedFilters {
                support_ids: Some(RequestedIds::List(vec!["7".into(), " 7 ".into()])),
                roles: vec![" Manager ".into(), "Manager".into()],
                ..Default::default()
            },
            RequestedOptions {
                tags: vec!["a".into(), "a".into()],
                ..Default::default()
            },
        ))
        .unwrap();
        let ImportSpec::Users { filters, options } = spec else {
            panic!("a user spec")
        };
        assert_eq!(filters.support_ids, vec![7]);
        assert_eq!(filters.roles, vec!["Manager".to_owned()]);
        assert!(options.active && !options.can_login);
        assert_eq!(options.tags, vec!["a".to_owned()]);
        let mut bad = request(ImportKind::Users, Default::default(), Default::default());
        bad.connection_id = "nope".into();
        assert_eq!(
            ImportSpec::new(bad).unwrap_err(),
            ValidationError::field("connection_id", "is not a connection id")
        );
    }
}
