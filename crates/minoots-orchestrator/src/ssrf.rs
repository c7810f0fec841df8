//! The SSRF guard: which addresses a webhook may connect to.
//!
//! A tenant chooses webhook URLs, so without a guard a timer could make MINOOTS call its
//! own admin ports, a cloud metadata service or machines on the operator's private
//! network. The guard refuses loopback, private (RFC 1918, ULA), link-local (including
//! the metadata address 169.254.169.254), CGNAT, multicast, broadcast, unspecified and
//! reserved addresses, including the IPv6 forms that embed an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4). URL hosts written as decimal, octal or hex
//! numbers are normalised to IPv4 by the URL parser first, so they cannot slip through.
//!
//! The guard is applied twice: to literal IP hosts when a URL is checked, and to every
//! address a name resolves to, at connect time, so DNS rebinding cannot pass a name that
//! resolved publicly at creation and privately later. This module holds the decisions as
//! plain functions on addresses; the HTTP client calls them from its resolver.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use url::{Host, Url};

/// Why an address is not a public internet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    /// RFC 1918 IPv4, IPv6 unique-local (fc00::/7) and deprecated site-local (fec0::/10).
    Private,
    /// 169.254.0.0/16 and fe80::/10.
    LinkLocal,
    /// Cloud instance metadata (169.254.169.254, fd00:ec2::254): refused even when private
    /// targets are allowed, unless listed explicitly.
    Metadata,
    /// Carrier-grade NAT, 100.64.0.0/10.
    Cgnat,
    Multicast,
    Broadcast,
    /// 0.0.0.0/8 and `::` — on Linux a connect to 0.0.0.0 reaches the local host.
    Unspecified,
    /// Documentation, benchmarking, IETF-reserved and other non-routable ranges.
    Reserved,
}

impl AddressClass {
    fn is_private_kind(self) -> bool {
        matches!(
            self,
            AddressClass::Loopback
                | AddressClass::Private
                | AddressClass::LinkLocal
                | AddressClass::Cgnat
        )
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::Metadata => "a cloud metadata address",
            AddressClass::Cgnat => "a carrier-grade NAT address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Reserved => "a reserved address",
        })
    }
}

/// The class of `ip`, or `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let o = ip.octets();
    let class = match o {
        // AWS/GCP/Azure/OpenStack, and Alibaba Cloud's (inside the CGNAT range).
        [169, 254, 169, 254] | [100, 100, 100, 200] => AddressClass::Metadata,
        [0, ..] => AddressClass::Unspecified,
        [127, ..] => AddressClass::Loopback,
        [10, ..] => AddressClass::Private,
        [172, b, ..] if (16..=31).contains(&b) => AddressClass::Private,
        [192, 168, ..] => AddressClass::Private,
        [169, 254, ..] => AddressClass::LinkLocal,
        [100, b, ..] if (64..=127).contains(&b) => AddressClass::Cgnat,
        [255, 255, 255, 255] => AddressClass::Broadcast,
        [a, ..] if (224..=239).contains(&a) => AddressClass::Multicast,
        [a, ..] if a >= 240 => AddressClass::Reserved,
        // IETF protocol assignments, documentation, benchmarking, 6to4 relay anycast.
        [192, 0, 0, _]
        | [192, 0, 2, _]
        | [198, 51, 100, _]
        | [203, 0, 113, _]
        | [192, 88, 99, _] => AddressClass::Reserved,
        [198, b, ..] if b == 18 || b == 19 => AddressClass::Reserved,
        _ => return None,
    };
    Some(class)
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // IPv4-compatible ::a.b.c.d (deprecated, but still routed by some stacks)
        [0, 0, 0, 0, 0, 0, _, _] if !(s[6] == 0 && s[7] <= 1) => Some(tail),
        // NAT64 well-known prefix 64:ff9b::/96 (the local-use 64:ff9b:1::/48 may embed the
        // IPv4 address elsewhere, so it is refused as reserved below)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // 6to4 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if let Some(v4) = embedded_v4(ip) {
        // An embedded public IPv4 address is as public as the IPv4 address itself.
        return classify_v4(v4);
    }
    let s = ip.segments();
    let class = if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if s == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] {
        AddressClass::Metadata
    } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        AddressClass::Private
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if (s[0] & 0xff00) == 0xff00 {
        AddressClass::Multicast
    } else if (s[0] & 0xe000) != 0x2000 || (s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] == 0)) {
        // Outside global unicast 2000::/3 (this includes the discard prefix 100::/64),
        // documentation 2001:db8::/32, and Teredo 2001::/32, which hides an IPv4 address.
        AddressClass::Reserved
    } else {
        return None;
    };
    Some(class)
}

/// An IP network in CIDR notation (`10.1.0.0/16`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("\"{s}\" is not an IP network like 10.0.0.0/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("\"{s}\" has a prefix length outside 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why a webhook target was refused. The message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("only http and https URLs can be called, not \"{0}\"")]
    Scheme(String),
    #[error("the URL is not valid: {0}")]
    Invalid(String),
    #[error("{host} is {class}; webhooks may only call public addresses")]
    Blocked { host: String, class: AddressClass },
    #[error("{host} resolves to {addr}, which is {class}; webhooks may only call public addresses")]
    ResolvesToBlocked {
        host: String,
        addr: IpAddr,
        class: AddressClass,
    },
    #[error("{0} did not resolve to any address")]
    NoAddress(String),
}

/// Where webhooks may go. The default allows public addresses only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Allow loopback, private, link-local and CGNAT targets (not metadata, multicast,
    /// broadcast, unspecified or reserved ones). Demo mode and single-host setups use it.
    pub allow_private: bool,
    /// Networks allowed whatever their class (an operator's internal services).
    pub allowed_cidrs: Vec<Cidr>,
}

/// What a checked URL still needs: nothing for a literal IP, a resolution check for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedTarget {
    /// The host is an IP address that passed the guard.
    Address(IpAddr),
    /// The host is a name; every address it resolves to must pass [`TargetPolicy::check_resolved`].
    Name(String),
}

impl TargetPolicy {
    /// Decides one address.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), TargetError> {
        if self.allowed_cidrs.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            Some(class) if self.allow_private && class.is_private_kind() => Ok(()),
            Some(class) => Err(TargetError::Blocked {
                host: host.to_string(),
                class,
            }),
        }
    }

    /// Checks a URL's scheme and, for a literal IP host (in any notation the URL parser
    /// accepts), the address itself.
    pub fn check_url(&self, url: &str) -> Result<CheckedTarget, TargetError> {
        let parsed = Url::parse(url).map_err(|e| TargetError::Invalid(e.to_string()))?;
        self.check_parsed_url(&parsed)
    }

    /// [`TargetPolicy::check_url`] for a URL the caller has already parsed.
    pub fn check_parsed_url(&self, parsed: &Url) -> Result<CheckedTarget, TargetError> {
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(TargetError::Scheme(parsed.scheme().to_string()));
        }
        match parsed.host() {
            None => Err(TargetError::Invalid("the URL has no host".into())),
            Some(Host::Ipv4(v4)) => self
                .check_ip(&v4.to_string(), IpAddr::V4(v4))
                .map(|()| CheckedTarget::Address(IpAddr::V4(v4))),
            Some(Host::Ipv6(v6)) => self
                .check_ip(&v6.to_string(), IpAddr::V6(v6))
                .map(|()| CheckedTarget::Address(IpAddr::V6(v6))),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                // These names always mean this machine; refuse without asking DNS.
                if !self.allow_private && (name == "localhost" || name.ends_with(".localhost")) {
                    return Err(TargetError::Blocked {
                        host: name,
                        class: AddressClass::Loopback,
                    });
                }
                Ok(CheckedTarget::Name(name))
            }
        }
    }

    /// Checks every address a name resolved to; one refused address refuses the name, so
    /// a name cannot mix a public address with a private one to get through.
    pub fn check_resolved(&self, host: &str, addrs: &[IpAddr]) -> Result<(), TargetError> {
        if addrs.is_empty() {
            return Err(TargetError::NoAddress(host.to_string()));
        }
        for &addr in addrs {
            if let Err(TargetError::Blocked { class, .. }) = self.check_ip(host, addr) {
                return Err(TargetError::ResolvesToBlocked {
                    host: host.to_string(),
                    addr,
                    class,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn urls_and_literal_addresses_in_every_notation() {
        use AddressClass::*;
        let strict = TargetPolicy::default();
        // (url, expected class of the refusal or None when allowed)
        let table: &[(&str, Option<AddressClass>)] = &[
            ("https://example.com/hook", None),
            ("http://93.184.215.14/", None),
            ("https://[2606:4700:4700::1111]/", None),
            ("http://127.0.0.1/", Some(Loopback)),
            ("http://127.255.255.254:8080/x", Some(Loopback)),
            ("http://2130706433/", Some(Loopback)), // decimal 127.0.0.1
            ("http://0x7f000001/", Some(Loopback)), // hex
            ("http://017700000001/", Some(Loopback)), // octal
            ("http://0x7f.0.0.1/", Some(Loopback)), // mixed hex octet
            ("http://127.1/", Some(Loopback)),      // short form
            ("http://0177.0.0.1/", Some(Loopback)), // octal octet
            ("http://[::1]/", Some(Loopback)),
            ("http://[::ffff:127.0.0.1]/", Some(Loopback)), // IPv4-mapped
            ("http://[::ffff:7f00:1]/", Some(Loopback)),    // mapped, hex form
            ("http://[::127.0.0.1]/", Some(Loopback)),      // IPv4-compatible
            ("http://[64:ff9b::7f00:1]/", Some(Loopback)),  // NAT64 of 127.0.0.1
            ("http://[2002:7f00:1::]/", Some(Loopback)),    // 6to4 of 127.0.0.1
            ("http://10.0.0.1/", Some(Private)),
            ("http://172.16.5.4/", Some(Private)),
            ("http://172.31.255.255/", Some(Private)),
            ("http://192.168.1.1/", Some(Private)),
            ("http://[fd12:3456::1]/", Some(Private)), // ULA
            ("http://[fec0::1]/", Some(Private)),      // site-local
            ("http://[::ffff:10.1.2.3]/", Some(Private)),
            ("http://[64:ff9b::a00:1]/", Some(Private)), // NAT64 of 10.0.0.1
            ("http://169.254.169.254/latest/meta-data/", Some(Metadata)),
            ("http://2852039166/", Some(Metadata)), // decimal metadata
            ("http://[::ffff:169.254.169.254]/", Some(Metadata)),
            ("http://[fd00:ec2::254]/", Some(Metadata)),
            ("http://169.254.1.1/", Some(LinkLocal)),
            ("http://[fe80::1]/", Some(LinkLocal)),
            ("http://100.64.0.1/", Some(Cgnat)),
            ("http://100.127.255.255/", Some(Cgnat)),
            ("http://224.0.0.1/", Some(Multicast)),
            ("http://[ff02::1]/", Some(Multicast)),
            ("http://255.255.255.255/", Some(Broadcast)),
            ("http://0.0.0.0/", Some(Unspecified)),
            ("http://0/", Some(Unspecified)),
            ("http://[::]/", Some(Unspecified)),
            ("http://240.0.0.1/", Some(Reserved)),
            ("http://192.0.2.10/", Some(Reserved)),
            ("http://198.18.0.1/", Some(Reserved)),
            ("http://[2001:db8::1]/", Some(Reserved)),
            (
                "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
                Some(Reserved),
            ), // Teredo
            ("http://localhost:3000/", Some(Loopback)),
            ("http://api.localhost./", Some(Loopback)),
            ("http://172.32.0.1/", None),       // just outside 172.16/12
            ("http://100.128.0.1/", None),      // just outside CGNAT
            ("http://[::ffff:8.8.8.8]/", None), // mapped public
        ];
        assert!(table.len() >= 30);
        for (url, want) in table {
            let got = strict.check_url(url);
            match want {
                None => assert!(got.is_ok(), "{url} should be allowed: {got:?}"),
                Some(class) => match got {
                    Err(TargetError::Blocked { class: c, .. }) => assert_eq!(c, *class, "{url}"),
                    other => panic!("{url} should be refused as {class:?}, got {other:?}"),
                },
            }
        }
    }

    #[test]
    fn only_http_and_https() {
        let p = TargetPolicy::default();
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(
                    p.check_url(url),
                    Err(TargetError::Scheme(_)) | Err(TargetError::Invalid(_))
                ),
                "{url}"
            );
        }
        assert!(matches!(
            p.check_url("not a url"),
            Err(TargetError::Invalid(_))
        ));
    }

    #[test]
    fn names_are_checked_on_what_they_resolve_to() {
        let p = TargetPolicy::default();
        assert_eq!(
            p.check_url("https://hooks.example.com/x"),
            Ok(CheckedTarget::Name("hooks.example.com".into()))
        );
        assert!(
            p.check_resolved(
                "hooks.example.com",
                &[
                    ip("93.184.215.14"),
                    ip("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
                ]
            )
            .is_ok()
        );
        // DNS rebinding: the same name later resolves to a private address.
        let err = p
            .check_resolved("hooks.example.com", &[ip("10.0.0.7")])
            .unwrap_err();
        assert!(
            matches!(
                err,
                TargetError::ResolvesToBlocked {
                    class: AddressClass::Private,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("10.0.0.7"));
        // One private address among public ones refuses the name.
        assert!(
            p.check_resolved("mixed.example.com", &[ip("93.184.215.14"), ip("127.0.0.1")])
                .is_err()
        );
        assert!(
            p.check_resolved("meta.example.com", &[ip("::ffff:169.254.169.254")])
                .is_err()
        );
        assert!(matches!(
            p.check_resolved("empty.example.com", &[]),
            Err(TargetError::NoAddress(_))
        ));
    }

    #[test]
    fn operators_can_open_private_targets_or_listed_networks() {
        let private = TargetPolicy {
            allow_private: true,
            allowed_cidrs: vec![],
        };
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.2.3.4/",
            "http://[::1]/",
            "http://100.64.1.1/",
            "http://localhost/",
        ] {
            assert!(private.check_url(url).is_ok(), "{url}");
        }
        // Metadata, multicast and unspecified stay closed.
        for url in [
            "http://169.254.169.254/",
            "http://224.0.0.1/",
            "http://0.0.0.0/",
        ] {
            assert!(private.check_url(url).is_err(), "{url}");
        }
        let listed = TargetPolicy {
            allow_private: false,
            allowed_cidrs: vec![
                "10.20.0.0/16".parse().unwrap(),
                "fd00:1::/32".parse().unwrap(),
            ],
        };
        assert!(listed.check_url("http://10.20.3.4/").is_ok());
        assert!(listed.check_url("http://[::ffff:10.20.3.4]/").is_ok());
        assert!(listed.check_url("http://[fd00:1::5]/").is_ok());
        assert!(listed.check_url("http://10.21.0.1/").is_err());
        assert!(listed.check_url("http://127.0.0.1/").is_err());
    }

    #[test]
    fn cidrs_parse_and_refuse_nonsense() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "192.168.1.7".parse::<Cidr>().unwrap().to_string(),
            "192.168.1.7/32"
        );
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "fd00::/129", "banana/8", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
