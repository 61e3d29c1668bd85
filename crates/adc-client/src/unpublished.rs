//! Our names for the operations Alarm.com has not published.
//!
//! `ADC-API.md` lists what public scripts show; the Builder Program
//! commitment call, changing a service plan, the sub-dealer, role and
//! Builder Program lists and the login's permissions are not among them, and
//! neither is the parameter of `TerminateCustomer`. Everything we had to
//! invent for them — operation names, services, element names of inputs and
//! results — is in this one module, so it can be corrected here alone when
//! the real schema is known. The names agree with the simulator's (`adc-sim`,
//! its operation table and `docs/adc-protocol.md`), which marks them as ours
//! too.

use domain::adc::{
    AdcBuilderProgram, AdcCustomerId, AdcError, AdcPackageId, AdcPermissions, AdcResult, AdcRole,
    AdcSubDealer, CreatedAdcCommitment, NewAdcCommitment,
};

use crate::client::{customer_input, id_of, value_at};
use crate::operation::Operation;
use crate::operation::Service::{CustomerManagement as Cm, DealerManagement as Dm};
use crate::soap::parse_bool;
use crate::xml::{Element, Node};

/// Creates a Builder Program commitment. Its input is `CreateCustomer`'s with
/// `BuilderProgramId` required; it answers `Success`, `ErrorMessage`,
/// `CommitmentId` and `CustomerId`.
pub(crate) const CREATE_COMMITMENT: Operation = Operation::change(Cm, "CreateCommitment");
/// Moves a customer to another service plan: `CustomerId`, `PackageId`;
/// answers `Success` / `ErrorMessage`.
pub(crate) const CHANGE_SERVICE_PLAN: Operation = Operation::change(Cm, "ChangeServicePlan");
/// The dealer's sub-dealers: `<SubDealer><SubDealerId/><Name/></SubDealer>...`
pub(crate) const GET_SUB_DEALER_LIST: Operation = Operation::read(Dm, "GetSubDealerList");
/// The permission roles reps can hold: `<Role><RoleId/><Name/></Role>...`
pub(crate) const GET_ROLE_LIST: Operation = Operation::read(Dm, "GetRoleList");
/// The dealer's Builder Programs:
/// `<BuilderProgram><BuilderProgramId/><Name/></BuilderProgram>...`
pub(crate) const GET_BUILDER_PROGRAM_LIST: Operation = Operation::read(Dm, "GetBuilderProgramList");
/// What the calling login may do: `<BuilderProgram>bool</BuilderProgram>
/// <Billing>bool</Billing>`.
pub(crate) const GET_DEALER_PERMISSIONS: Operation = Operation::read(Dm, "GetDealerPermissions");

/// `TerminateCustomer` is public but its parameter is not: `<CustomerId>`
/// directly under the operation, as the simulator reads it. One public PHP
/// script sends a lower-case `<customerId>` instead (like `GetCustomerList`'s
/// `includeTermed`); check this first against the real host.
pub(crate) fn terminate_customer_body(customer: AdcCustomerId) -> Vec<Node> {
    vec![Node::text("CustomerId", customer.to_string())]
}

/// `<input>{CreateCustomer's input, BuilderProgramId set}</input>`.
pub(crate) fn create_commitment_body(commitment: &NewAdcCommitment) -> Vec<Node> {
    let mut customer = commitment.customer.clone();
    customer.builder_program_id = Some(commitment.builder_program_id);
    vec![Node::parent(
        "input",
        customer_input(&customer).into_nodes(),
    )]
}

pub(crate) fn read_created_commitment(result: Option<&Element>) -> AdcResult<CreatedAdcCommitment> {
    let result = result.ok_or_else(|| no_customer_id(&CREATE_COMMITMENT))?;
    let customer_id = id_of(result, &["CustomerId"])
        .filter(|id| *id > 0)
        .ok_or_else(|| no_customer_id(&CREATE_COMMITMENT))?;
    Ok(CreatedAdcCommitment {
        customer_id: AdcCustomerId(customer_id),
        commitment_id: id_of(result, &["CommitmentId"]).filter(|id| *id > 0),
    })
}

fn no_customer_id(op: &Operation) -> AdcError {
    AdcError::BadAnswer(format!("{} succeeded without a CustomerId", op.name))
}

/// `<input><CustomerId/><PackageId/></input>`.
pub(crate) fn change_service_plan_body(
    customer: AdcCustomerId,
    package: AdcPackageId,
    add_ons: Option<&[String]>,
) -> Vec<Node> {
    let mut input = vec![
        Node::text("CustomerId", customer.to_string()),
        Node::text("PackageId", package.to_string()),
    ];
    // Given, it replaces the account's add-ons (also with none); left out,
    // they stay as they are.
    if let Some(add_ons) = add_ons {
        input.push(Node::parent(
            "AddOnFeatures",
            add_ons
                .iter()
                .map(|a| Node::text("AddOnFeatureEnum", a.clone()))
                .collect(),
        ));
    }
    vec![Node::parent("input", input)]
}

/// The items of a list result that have an id at one of `id_paths`, as
/// (id, name).
fn id_name_items<'a>(
    result: Option<&'a Element>,
    id_paths: &'a [&'a str],
) -> impl Iterator<Item = (i64, String)> + 'a {
    result
        .into_iter()
        .flat_map(|r| r.children.iter())
        .filter_map(move |item| id_name(item, id_paths))
}

/// An (id, name) pair of a list item; the name is `Name` or `<Thing>Name`.
pub(crate) fn id_name(item: &Element, id_paths: &[&str]) -> Option<(i64, String)> {
    let id = id_of(item, id_paths)?;
    let name = value_at(item, &["Name", &format!("{}Name", item.name)])
        .unwrap_or_default()
        .to_owned();
    Some((id, name))
}

pub(crate) fn read_sub_dealers(result: Option<&Element>) -> Vec<AdcSubDealer> {
    id_name_items(result, &["SubDealerId", "Id"])
        .map(|(id, name)| AdcSubDealer { id, name })
        .collect()
}

pub(crate) fn read_roles(result: Option<&Element>) -> Vec<AdcRole> {
    id_name_items(result, &["RoleId", "Id"])
        .map(|(id, name)| AdcRole { id, name })
        .collect()
}

pub(crate) fn read_builder_programs(result: Option<&Element>) -> Vec<AdcBuilderProgram> {
    id_name_items(result, &["BuilderProgramId", "Id"])
        .map(|(id, name)| AdcBuilderProgram { id, name })
        .collect()
}

pub(crate) fn read_permissions(result: Option<&Element>) -> AdcPermissions {
    let flag = |name: &str| {
        result
            .and_then(|r| value_at(r, &[name]))
            .and_then(parse_bool)
            .unwrap_or(false)
    };
    AdcPermissions {
        builder_program: flag("BuilderProgram"),
        billing: flag("Billing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{self, Content};

    fn el(xml: &str) -> Element {
        xml::parse(xml.as_bytes()).unwrap()
    }

    #[test]
    fn reads_the_lists() {
        let r = el("<R><SubDealer><SubDealerId>2</SubDealerId><Name>North</Name></SubDealer><SubDealer><Name>no id</Name></SubDealer></R>");
        assert_eq!(
            read_sub_dealers(Some(&r)),
            [AdcSubDealer {
                id: 2,
                name: "North".into()
            }]
        );
        let r = el("<R><Role><RoleId>4</RoleId><RoleName>Tech</RoleName></Role></R>");
        assert_eq!(
            read_roles(Some(&r)),
            [AdcRole {
                id: 4,
                name: "Tech".into()
            }]
        );
        let r = el("<R><BuilderProgram><BuilderProgramId>9</BuilderProgramId><Name>Oak Ridge</Name></BuilderProgram></R>");
        assert_eq!(
            read_builder_programs(Some(&r)),
            [AdcBuilderProgram {
                id: 9,
                name: "Oak Ridge".into()
            }]
        );
        assert_eq!(read_roles(None), []);
    }

    #[test]
    fn reads_permissions() {
        let r = el("<R><BuilderProgram>true</BuilderProgram><Billing>false</Billing></R>");
        assert_eq!(
            read_permissions(Some(&r)),
            AdcPermissions {
                builder_program: true,
                billing: false
            }
        );
        assert_eq!(read_permissions(None), AdcPermissions::default());
    }

    #[test]
    fn a_commitment_is_a_customer_input_with_its_builder_program() {
        let body = create_commitment_body(&NewAdcCommitment {
            builder_program_id: 9,
            customer: domain::adc::NewAdcCustomer {
                desired_login_name: "x".into(),
                builder_program_id: Some(1),
                ..Default::default()
            },
        });
        let Content::Children(input) = &body[0].content else {
            panic!("no input");
        };
        assert_eq!(body[0].name, "input");
        assert!(input.contains(&Node::text("BuilderProgramId", "9")));
        assert!(!input.contains(&Node::text("BuilderProgramId", "1")));

        let created = read_created_commitment(Some(&el(
            "<R><Success>true</Success><CommitmentId>70</CommitmentId><CustomerId>10000009</CustomerId></R>",
        )))
        .unwrap();
        assert_eq!(
            created,
            CreatedAdcCommitment {
                customer_id: AdcCustomerId(10000009),
                commitment_id: Some(70)
            }
        );
        assert!(read_created_commitment(Some(&el("<R><CustomerId>0</CustomerId></R>"))).is_err());
    }
}
