//! The egress policy: which addresses outbound calls may reach. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// The special-purpose range `ip` falls in, or `None` for an ordinary
/// (global unicast) address. An IPv6 address carrying an IPv4 one
/// (`::ffff:a.b.c.d`, `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
/// is judged by the IPv4 inside.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_broadcast() => "broadcast",
        (0, ..) => "reserved (0.0.0.0/8, this network)",
        (127, ..) => "loopback",
        (10, ..) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (100, 64..=127, _) => "shared (100.64.0.0/10, carrier-grade NAT)",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "reserved (192.0.0.0/24, protocol assignments)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        0xff00..=0xffff => "multicast",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xfc00..=0xfdff => "unique-local",
        0x0064 if s[1] == 0xff9b && s[2] == 0x0001 => "private (64:ff9b:1::/48, local NAT64)",
        0x0100 if s[1..4] == [0, 0, 0] => "reserved (100::/64, discard)",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] == 0 => "Teredo (2001::/32)",
        // Everything outside 2000::/3 is unassigned or special.
        0x0000..=0x1fff | 0x4000..=0xfbff => "reserved (outside 2000::/3)",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 one carries: IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d` (not `::` or `::1`), NAT64 `64:ff9b::a.b.c.d`
/// and 6to4 `2002:aabb:ccdd::/48`.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(low(hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some(low(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// A target the policy refuses: the host as named and the address it is or
/// resolved to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} is refused by the egress policy: {address} is in the {range} range (an operator can allow it with egress.allow)")]
pub struct Refused {
    pub host: String,
    pub address: IpAddr,
    pub range: &'static str,
}

/// An `egress.allow` entry that is neither a CIDR nor an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress.allow: {0:?} is not a CIDR range (10.20.0.0/16) or an IP address")]
pub struct AllowListError(pub String);

/// Which addresses outbound calls may reach: every ordinary address, and the
/// special-purpose ones (see [`classify`]) inside an allowed range. The
/// default allows no special range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
}

impl EgressPolicy {
    /// The default policy with these ranges let through.
    pub fn allowing(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// From `egress.allow` entries: CIDRs (`10.20.0.0/16`, `fd00::/8`) or
    /// single addresses. Blank entries are skipped.
    pub fn parse_allow<S: AsRef<str>>(entries: &[S]) -> Result<Self, AllowListError> {
        let mut allow = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| AllowListError(entry.to_owned()))?;
            allow.push(net.trunc());
        }
        Ok(Self { allow })
    }

    pub fn allowed_ranges(&self) -> &[IpNet] {
        &self.allow
    }

    /// `Err(range)` when `ip` is special and not allowed. An IPv6 address
    /// carrying an IPv4 one is allowed when either is in an allowed range.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        let Some(range) = classify(ip) else {
            return Ok(());
        };
        let inner = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || inner.is_some_and(|v4| net.contains(&v4)));
        if allowed {
            Ok(())
        } else {
            Err(range)
        }
    }

    /// [`EgressPolicy::check_ip`] naming `host` in the refusal.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        self.check_ip(ip).map_err(|range| Refused {
            host: host.to_owned(),
            address: ip,
            range,
        })
    }

    /// Checks a URL whose host is an IP literal (reqwest connects to those
    /// without asking the resolver); a host name passes here and is checked
    /// when it is resolved.
    pub fn check_literal(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check_address(&v4.to_string(), IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check_address(&format!("[{v6}]"), IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_special_range_is_classified() {
        let table: &[(&str, Option<&str>)] = &[
            // IPv4
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("reserved (0.0.0.0/8, this network)")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("10.255.255.255", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            (
                "100.64.0.1",
                Some("shared (100.64.0.0/10, carrier-grade NAT)"),
            ),
            (
                "100.127.255.255",
                Some("shared (100.64.0.0/10, carrier-grade NAT)"),
            ),
            ("169.254.169.254", Some("link-local")),
            ("169.254.0.1", Some("link-local")),
            (
                "192.0.0.1",
                Some("reserved (192.0.0.0/24, protocol assignments)"),
            ),
            ("192.0.2.1", Some("documentation")),
            ("198.51.100.1", Some("documentation")),
            ("203.0.113.1", Some("documentation")),
            ("198.18.0.1", Some("benchmarking")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved (240.0.0.0/4)")),
            ("255.255.255.255", Some("broadcast")),
            // IPv4 neighbours that are ordinary
            ("8.8.8.8", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.253.255.255", None),
            ("192.167.1.1", None),
            ("198.20.0.1", None),
            ("223.255.255.255", None),
            ("11.0.0.1", None),
            // IPv6
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("fc00::1", Some("unique-local")),
            ("fd00:ec2::254", Some("unique-local")),
            ("ff02::1", Some("multicast")),
            ("ff0e::1", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("2001:0:4136:e378::1", Some("Teredo (2001::/32)")),
            ("100::1", Some("reserved (100::/64, discard)")),
            (
                "64:ff9b:1::a00:1",
                Some("private (64:ff9b:1::/48, local NAT64)"),
            ),
            ("4000::1", Some("reserved (outside 2000::/3)")),
            // IPv6 carrying IPv4: judged by the IPv4 inside
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::127.0.0.1", Some("loopback")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("link-local")),
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:c0a8:101::1", Some("private")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
            ("2002:808:808::1", None),
            // ordinary IPv6
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
        ];
        for (addr, want) in table {
            assert_eq!(classify(ip(addr)), *want, "{addr}");
        }
    }

    #[test]
    fn the_default_policy_refuses_every_special_range() {
        let policy = EgressPolicy::default();
        for addr in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
        ] {
            assert!(policy.check_ip(ip(addr)).is_err(), "{addr}");
        }
        assert_eq!(policy.check_ip(ip("93.184.215.14")), Ok(()));
    }

    #[test]
    fn the_allow_list_lets_its_ranges_through() {
        let policy =
            EgressPolicy::parse_allow(&["10.20.0.0/16", " 127.0.0.1 ", "", "fd00::/8"]).unwrap();
        assert_eq!(policy.check_ip(ip("10.20.3.4")), Ok(()));
        assert_eq!(policy.check_ip(ip("10.21.0.1")), Err("private"));
        assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("127.0.0.2")), Err("loopback"));
        // The IPv4 inside an IPv6 address is allowed with its range.
        assert_eq!(policy.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("::ffff:10.20.0.9")), Ok(()));
        assert_eq!(policy.check_ip(ip("fd12::1")), Ok(()));
        assert_eq!(policy.check_ip(ip("fe80::1")), Err("link-local"));
        // A host address given with a prefix is taken as its network.
        let net = EgressPolicy::parse_allow(&["10.20.1.2/16"]).unwrap();
        assert_eq!(net.allowed_ranges()[0].to_string(), "10.20.0.0/16");
    }

    #[test]
    fn allow_entries_must_be_ranges_or_addresses() {
        for bad in ["10.0.0.0/33", "localhost", "10.0.0", "*"] {
            assert_eq!(
                EgressPolicy::parse_allow(&[bad]),
                Err(AllowListError(bad.into()))
            );
        }
    }

    #[test]
    fn literals_are_checked_and_names_left_to_the_resolver() {
        let policy = EgressPolicy::default();
        let url = |s: &str| url::Url::parse(s).unwrap();
        let refused = policy
            .check_literal(&url("http://[::ffff:127.0.0.1]:8080/x"))
            .unwrap_err();
        assert_eq!(refused.range, "loopback");
        assert_eq!(refused.host, "[::ffff:127.0.0.1]");
        // The URL parser turns other spellings of an IPv4 address into one.
        for spelled in ["http://0x7f.1/", "http://2130706433/", "http://127.1/"] {
            assert!(policy.check_literal(&url(spelled)).is_err(), "{spelled}");
        }
        assert!(policy
            .check_literal(&url("http://169.254.169.254/"))
            .is_err());
        assert!(policy.check_literal(&url("http://[fe80::1]/")).is_err());
        assert_eq!(policy.check_literal(&url("http://localhost/")), Ok(()));
        assert_eq!(policy.check_literal(&url("https://93.184.215.14/")), Ok(()));
        let message = policy
            .check_literal(&url("http://10.0.0.1/"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "10.0.0.1 is refused by the egress policy: 10.0.0.1 is in the private range (an operator can allow it with egress.allow)"
        );
    }
}
