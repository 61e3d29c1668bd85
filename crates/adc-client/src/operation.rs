//! The operations the client calls, by service, and which of them are reads.
//!
//! Whether an operation may be retried is decided here, once, from what it
//! does: reads are repeated on transient failures, changes never are.

/// The two ASP.NET services of the dealer host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    CustomerManagement,
    DealerManagement,
}

impl Service {
    /// The path segments under the endpoint.
    pub fn segments(self) -> [&'static str; 2] {
        match self {
            Self::CustomerManagement => ["WebServices", "CustomerManagement.asmx"],
            Self::DealerManagement => ["WebServices", "DealerManagement.asmx"],
        }
    }
}

/// One SOAP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operation {
    pub service: Service,
    /// The operation name: the body element, `SOAPAction` suffix, and the
    /// prefix of `<name>Response` / `<name>Result`.
    pub name: &'static str,
    /// Changes nothing, so a repeat is harmless.
    pub read_only: bool,
}

impl Operation {
    pub const fn read(service: Service, name: &'static str) -> Self {
        Self {
            service,
            name,
            read_only: true,
        }
    }

    pub const fn change(service: Service, name: &'static str) -> Self {
        Self {
            service,
            name,
            read_only: false,
        }
    }

    /// `"http://www.alarm.com/WebServices/<name>"`, quotes included.
    pub fn soap_action(&self) -> String {
        format!("\"{}/{}\"", crate::xml::ADC_NS, self.name)
    }
}

use Service::{CustomerManagement as Cm, DealerManagement as Dm};

// The operations `ADC-API.md` names from public client scripts.
pub(crate) const GET_LATEST_CALLER_VERSION: Operation =
    Operation::read(Cm, "GetLatestCallerVersion");
pub(crate) const GET_CUSTOMER_LIST_V2: Operation = Operation::read(Cm, "GetCustomerList_V2");
pub(crate) const GET_CUSTOMER_INFO_V2: Operation = Operation::read(Cm, "GetCustomerInfo_V2");
pub(crate) const CREATE_CUSTOMER: Operation = Operation::change(Cm, "CreateCustomer");
pub(crate) const TERMINATE_CUSTOMER: Operation = Operation::change(Cm, "TerminateCustomer");
pub(crate) const UPDATE_CENTRAL_STATION_INFO_V2: Operation =
    Operation::change(Cm, "UpdateCentralStationInfo_V2");
pub(crate) const GET_REP_LIST: Operation = Operation::read(Dm, "GetRepList");
pub(crate) const GET_DEALER_ID: Operation = Operation::read(Dm, "GetDealerId");
pub(crate) const GET_PACKAGE_IDS: Operation = Operation::read(Dm, "GetPackageIds");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_action_is_quoted_in_the_adc_namespace() {
        assert_eq!(
            GET_CUSTOMER_INFO_V2.soap_action(),
            "\"http://www.alarm.com/WebServices/GetCustomerInfo_V2\""
        );
    }

    #[test]
    fn only_reads_are_read_only() {
        for op in [
            GET_LATEST_CALLER_VERSION,
            GET_CUSTOMER_LIST_V2,
            GET_CUSTOMER_INFO_V2,
            GET_REP_LIST,
            GET_DEALER_ID,
            GET_PACKAGE_IDS,
        ] {
            assert!(op.read_only, "{}", op.name);
            assert!(op.name.starts_with("Get"));
        }
        for op in [
            CREATE_CUSTOMER,
            TERMINATE_CUSTOMER,
            UPDATE_CENTRAL_STATION_INFO_V2,
        ] {
            assert!(!op.read_only, "{}", op.name);
        }
    }
}
