//! The `?WSDL` documents: WSDL 1.1 with SOAP 1.1 and 1.2 bindings, written
//! from the operation table in [`crate::ops`] and the type table below, so
//! that what the simulator describes is what it serves. Tools that generate
//! clients from a WSDL can be pointed at it.

use crate::ops::{Operation, Service, OPERATIONS};
use crate::xml::{escape, ADC_NS};

/// One element of a complex type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeField {
    pub name: &'static str,
    pub ty: &'static str,
    /// Zero or more (`maxOccurs="unbounded"`).
    pub many: bool,
    /// May be left out (always for strings and our own types).
    pub optional: bool,
}

const fn e(name: &'static str, ty: &'static str) -> TypeField {
    TypeField {
        name,
        ty,
        many: false,
        optional: !is_value_type(ty),
    }
}

const fn maybe(name: &'static str, ty: &'static str) -> TypeField {
    TypeField {
        name,
        ty,
        many: false,
        optional: true,
    }
}

const fn many(name: &'static str, ty: &'static str) -> TypeField {
    TypeField {
        name,
        ty,
        many: true,
        optional: true,
    }
}

/// .NET value types are written `minOccurs="1"`.
const fn is_value_type(ty: &str) -> bool {
    let b = ty.as_bytes();
    // "s:int", "s:boolean", "s:dateTime"
    matches!(
        b,
        [b's', b':', b'i', ..] | [b's', b':', b'b', ..] | [b's', b':', b'd', ..]
    )
}

/// Our complex types, by name.
pub const TYPES: &[(&str, &[TypeField])] = &[
    (
        "Authentication",
        &[
            e("User", "s:string"),
            e("Password", "s:string"),
            e("TwoFactorDeviceId", "s:string"),
        ],
    ),
    ("ArrayOfInt", &[many("int", "s:int")]),
    ("ArrayOfString", &[many("string", "s:string")]),
    ("ArrayOfAddOnFeature", &[many("AddOnFeature", "s:string")]),
    (
        "Address",
        &[
            e("Street1", "s:string"),
            e("Street2", "s:string"),
            e("City", "s:string"),
            e("State", "s:string"),
            e("Zip", "s:string"),
            e("CountryId", "s:string"),
        ],
    ),
    (
        "CustomerAddress",
        &[
            e("FirstName", "s:string"),
            e("LastName", "s:string"),
            e("CompanyName", "s:string"),
            e("Phone", "s:string"),
            e("Street1", "s:string"),
            e("Street2", "s:string"),
            e("City", "s:string"),
            e("State", "s:string"),
            e("Zip", "s:string"),
            e("CountryId", "s:string"),
        ],
    ),
    (
        "ModemInfo",
        &[
            e("PanelType", "s:string"),
            e("ModemSerialNumber", "s:string"),
        ],
    ),
    (
        "CustomerInfo",
        &[
            e("CustomerId", "s:int"),
            e("LoginName", "s:string"),
            e("DealerCustomerId", "s:string"),
            e("IsTerminated", "s:boolean"),
            maybe("TerminatedDate", "s:dateTime"),
            e("IsCommitment", "s:boolean"),
            e("CommitmentId", "s:int"),
            e("BuilderProgramId", "s:int"),
            e("SubDealerId", "s:int"),
            e("SubDealerName", "s:string"),
            e("FirstName", "s:string"),
            e("LastName", "s:string"),
            e("CompanyName", "s:string"),
            e("Email", "s:string"),
            e("Phone", "s:string"),
            e("InstallAddress", "tns:Address"),
            e("TimeZone", "s:string"),
            e("ModemInfo", "tns:ModemInfo"),
            e("PackageId", "s:int"),
            e("ServicePlanName", "s:string"),
            e("AddOnFeatures", "tns:ArrayOfAddOnFeature"),
            e("SalesRepLoginName", "s:string"),
            e("SalesRepSupportId", "s:int"),
            e("InstallerLoginName", "s:string"),
            e("CentralStationAccountNumber", "s:string"),
            e("CentralStationReceiverNumber", "s:string"),
            e("InstallType", "s:string"),
            e("JoinDate", "s:dateTime"),
            e("CreatedDate", "s:dateTime"),
            e("LastModifiedDate", "s:dateTime"),
        ],
    ),
    (
        "OperationResult",
        &[e("Success", "s:boolean"), e("ErrorMessage", "s:string")],
    ),
    (
        "CreateCustomerResult",
        &[
            e("Success", "s:boolean"),
            e("ErrorMessage", "s:string"),
            e("CustomerId", "s:int"),
        ],
    ),
    (
        "CreateCommitmentResult",
        &[
            e("Success", "s:boolean"),
            e("ErrorMessage", "s:string"),
            e("CommitmentId", "s:int"),
            e("CustomerId", "s:int"),
        ],
    ),
    ("Role", &[e("RoleId", "s:int"), e("Name", "s:string")]),
    ("ArrayOfRole", &[many("Role", "tns:Role")]),
    (
        "Rep",
        &[
            e("SupportId", "s:int"),
            e("RepLoginName", "s:string"),
            e("FirstName", "s:string"),
            e("LastName", "s:string"),
            e("Email", "s:string"),
            e("Phone", "s:string"),
            e("Address", "tns:Address"),
            e("SubDealerId", "s:int"),
            e("SubDealerName", "s:string"),
            e("Roles", "tns:ArrayOfRole"),
            e("IsActive", "s:boolean"),
            e("UserField", "s:string"),
        ],
    ),
    ("ArrayOfRep", &[many("Rep", "tns:Rep")]),
    (
        "PackageInfo",
        &[e("PackageId", "s:int"), e("Name", "s:string")],
    ),
    (
        "ArrayOfPackageInfo",
        &[many("PackageInfo", "tns:PackageInfo")],
    ),
    (
        "SubDealer",
        &[e("SubDealerId", "s:int"), e("Name", "s:string")],
    ),
    ("ArrayOfSubDealer", &[many("SubDealer", "tns:SubDealer")]),
    (
        "BuilderProgram",
        &[e("BuilderProgramId", "s:int"), e("Name", "s:string")],
    ),
    (
        "ArrayOfBuilderProgram",
        &[many("BuilderProgram", "tns:BuilderProgram")],
    ),
    (
        "DealerPermissions",
        &[e("BuilderProgram", "s:boolean"), e("Billing", "s:boolean")],
    ),
];

/// The fields of one of our types.
pub fn type_fields(name: &str) -> Option<&'static [TypeField]> {
    TYPES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn element(out: &mut String, name: &str, ty: &str, optional: bool, many: bool) {
    out.push_str(&format!(
        "<s:element minOccurs=\"{}\" maxOccurs=\"{}\" name=\"{name}\" type=\"{ty}\" />",
        if optional { 0 } else { 1 },
        if many { "unbounded" } else { "1" },
    ));
}

fn schema(out: &mut String, ops: &[&Operation]) {
    out.push_str(&format!(
        "<wsdl:types><s:schema elementFormDefault=\"qualified\" targetNamespace=\"{ADC_NS}\">"
    ));
    for op in ops {
        out.push_str(&format!(
            "<s:element name=\"{}\"><s:complexType><s:sequence>",
            op.name
        ));
        for f in op.input {
            element(out, f.name, f.ty, f.optional, false);
        }
        out.push_str(&format!(
            "</s:sequence></s:complexType></s:element><s:element name=\"{}Response\">\
             <s:complexType><s:sequence>",
            op.name
        ));
        element(
            out,
            &format!("{}Result", op.name),
            op.output,
            !is_value_type(op.output),
            false,
        );
        out.push_str("</s:sequence></s:complexType></s:element>");
    }
    for (name, fields) in TYPES {
        out.push_str(&format!("<s:complexType name=\"{name}\"><s:sequence>"));
        for f in *fields {
            element(out, f.name, f.ty, f.optional, f.many);
        }
        out.push_str("</s:sequence>");
        if *name == "Authentication" {
            out.push_str("<s:anyAttribute />");
        }
        out.push_str("</s:complexType>");
    }
    out.push_str(
        "<s:element name=\"Authentication\" type=\"tns:Authentication\" /></s:schema></wsdl:types>",
    );
}

fn binding(out: &mut String, service: &str, ops: &[&Operation], soap: &str, suffix: &str) {
    out.push_str(&format!(
        "<wsdl:binding name=\"{service}{suffix}\" type=\"tns:{service}Soap\">\
         <{soap}:binding transport=\"http://schemas.xmlsoap.org/soap/http\" />"
    ));
    for op in ops {
        let n = op.name;
        out.push_str(&format!(
            "<wsdl:operation name=\"{n}\">\
             <{soap}:operation soapAction=\"{ADC_NS}/{n}\" style=\"document\" />\
             <wsdl:input><{soap}:body use=\"literal\" />\
             <{soap}:header message=\"tns:{n}Authentication\" part=\"Authentication\" use=\"literal\" />\
             </wsdl:input><wsdl:output><{soap}:body use=\"literal\" /></wsdl:output></wsdl:operation>"
        ));
    }
    out.push_str("</wsdl:binding>");
}

/// The WSDL of `service`, with `base_url` (`http://host:port`) in the
/// service addresses.
pub fn wsdl(service: Service, base_url: &str) -> String {
    let ops: Vec<&Operation> = OPERATIONS.iter().filter(|o| o.service == service).collect();
    let name = service.name();
    let mut out = String::with_capacity(32 * 1024);
    out.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <wsdl:definitions xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" \
         xmlns:soap12=\"http://schemas.xmlsoap.org/wsdl/soap12/\" \
         xmlns:s=\"http://www.w3.org/2001/XMLSchema\" xmlns:tns=\"{ADC_NS}\" \
         xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" targetNamespace=\"{ADC_NS}\">\
         <wsdl:documentation>crosslink adc-sim: {name}. Operations marked 'Ours' are \
         not public Alarm.com names.</wsdl:documentation>"
    ));
    schema(&mut out, &ops);
    for op in &ops {
        let n = op.name;
        out.push_str(&format!(
            "<wsdl:message name=\"{n}SoapIn\"><wsdl:part name=\"parameters\" element=\"tns:{n}\" /></wsdl:message>\
             <wsdl:message name=\"{n}SoapOut\"><wsdl:part name=\"parameters\" element=\"tns:{n}Response\" /></wsdl:message>\
             <wsdl:message name=\"{n}Authentication\"><wsdl:part name=\"Authentication\" element=\"tns:Authentication\" /></wsdl:message>"
        ));
    }
    out.push_str(&format!("<wsdl:portType name=\"{name}Soap\">"));
    for op in &ops {
        out.push_str(&format!(
            "<wsdl:operation name=\"{n}\"><wsdl:documentation>{doc}</wsdl:documentation>\
             <wsdl:input message=\"tns:{n}SoapIn\" /><wsdl:output message=\"tns:{n}SoapOut\" />\
             </wsdl:operation>",
            n = op.name,
            doc = escape(op.summary),
        ));
    }
    out.push_str("</wsdl:portType>");
    binding(&mut out, name, &ops, "soap", "Soap");
    binding(&mut out, name, &ops, "soap12", "Soap12");
    let location = escape(&format!("{base_url}{}", service.path())).into_owned();
    out.push_str(&format!(
        "<wsdl:service name=\"{name}\">\
         <wsdl:port name=\"{name}Soap\" binding=\"tns:{name}Soap\"><soap:address location=\"{location}\" /></wsdl:port>\
         <wsdl:port name=\"{name}Soap12\" binding=\"tns:{name}Soap12\"><soap12:address location=\"{location}\" /></wsdl:port>\
         </wsdl:service></wsdl:definitions>"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_document;

    #[test]
    fn is_well_formed_and_names_every_type_it_uses() {
        for service in Service::ALL {
            let doc = wsdl(service, "http://127.0.0.1:1");
            parse_document(&doc).unwrap();
            for op in OPERATIONS {
                let tys = op.input.iter().map(|f| f.ty).chain([op.output]);
                for ty in tys {
                    if let Some(t) = ty.strip_prefix("tns:") {
                        assert!(type_fields(t).is_some(), "{t}");
                    }
                }
            }
            for (_, fields) in TYPES {
                for f in *fields {
                    if let Some(t) = f.ty.strip_prefix("tns:") {
                        assert!(type_fields(t).is_some(), "{t}");
                    }
                }
            }
        }
    }
}
