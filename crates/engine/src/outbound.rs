//! The outbound address policy: which addresses `call: http` may connect to.
//!
//! By default a workflow may not reach the host's own network: loopback, private (RFC 1918),
//! link-local, unique-local (fc00::/7), shared/CGNAT (100.64/10), unspecified, "this network"
//! (0/8), multicast, broadcast and the reserved 240/4. An IPv6 address that carries an IPv4
//! address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) is judged by that IPv4 address. Operators open ranges with `allow`
//! (CIDR blocks); nothing else is configurable, so a rule cannot be half switched off.
//!
//! The policy is applied to the address of every connection: to a literal address in the URL
//! (the URL parser has already turned decimal, octal and hex forms such as `2130706433`,
//! `0177.1` or `0x7f.0.0.1` into `127.0.0.1`) and to every address a host name resolves to,
//! in the client's resolver, so a name that points at a blocked address is refused however it
//! was reached. Redirects are never followed: a 3xx answer is the call's result (with
//! `redirect: true`) or its error, so no connection is made to an address the policy has not
//! seen.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an address is blocked: the rule's name, as error messages give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Loopback,
    Private,
    LinkLocal,
    UniqueLocal,
    SharedCgnat,
    Unspecified,
    ThisNetwork,
    Multicast,
    Broadcast,
    Reserved,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::UniqueLocal => "unique-local",
            Self::SharedCgnat => "shared address space (CGNAT)",
            Self::Unspecified => "unspecified",
            Self::ThisNetwork => "\"this network\" (0.0.0.0/8)",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
        }
    }
}

/// A refused address, with the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the outbound address policy blocks {addr}: it is a {} address (allow it in baton.toml's [http] allow)",
    rule.as_str()
)]
pub struct Blocked {
    pub addr: IpAddr,
    pub rule: Rule,
}

/// Which addresses calls may reach. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Arc<[IpNet]>,
}

impl AddressPolicy {
    /// Blocks every internal range except those in `allow`.
    pub fn allowing(allow: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            allow: allow.into_iter().collect(),
        }
    }

    /// Checks one address.
    pub fn check(&self, addr: IpAddr) -> Result<(), Blocked> {
        let Some(rule) = classify(addr) else {
            return Ok(());
        };
        // An allowed range matches the address as written or the IPv4 address it carries.
        let carried = embedded_v4(addr).map(IpAddr::V4);
        if self
            .allow
            .iter()
            .any(|n| n.contains(&addr) || carried.is_some_and(|v4| n.contains(&v4)))
        {
            return Ok(());
        }
        Err(Blocked { addr, rule })
    }

    /// The addresses of `addrs` this policy allows, or why the first one is blocked when none is.
    pub fn filter(
        &self,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Blocked> {
        let mut allowed = Vec::new();
        let mut first_blocked = None;
        for a in addrs {
            match self.check(a.ip()) {
                Ok(()) => allowed.push(a),
                Err(b) => {
                    first_blocked.get_or_insert(b);
                }
            }
        }
        match (allowed.is_empty(), first_blocked) {
            (true, Some(b)) => Err(b),
            _ => Ok(allowed),
        }
    }
}

/// An allowed range as operators write it: a CIDR block (`10.0.0.0/8`) or one address.
pub fn parse_range(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{s}` is not an address range (write `10.0.0.0/8`, `::1/128` or one address)")
        })
}

/// The rule an address falls under, if any.
pub fn classify(addr: IpAddr) -> Option<Rule> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(addr) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(a: Ipv4Addr) -> Option<Rule> {
    let [o0, o1, ..] = a.octets();
    Some(if a.is_unspecified() {
        Rule::Unspecified
    } else if o0 == 0 {
        Rule::ThisNetwork
    } else if a.is_loopback() {
        Rule::Loopback
    } else if a.is_private() {
        Rule::Private
    } else if a.is_link_local() {
        Rule::LinkLocal
    } else if o0 == 100 && (o1 & 0xc0) == 64 {
        Rule::SharedCgnat
    } else if a.is_broadcast() {
        Rule::Broadcast
    } else if a.is_multicast() {
        Rule::Multicast
    } else if o0 >= 240 {
        Rule::Reserved
    } else {
        return None;
    })
}

fn classify_v6(a: Ipv6Addr) -> Option<Rule> {
    let s0 = a.segments()[0];
    Some(if a.is_unspecified() {
        Rule::Unspecified
    } else if a.is_loopback() {
        Rule::Loopback
    } else if (s0 & 0xfe00) == 0xfc00 {
        Rule::UniqueLocal
    } else if (s0 & 0xffc0) == 0xfe80 {
        Rule::LinkLocal
    } else if (s0 & 0xffc0) == 0xfec0 {
        // Site-local, deprecated but still routed inside some networks.
        Rule::Private
    } else if a.is_multicast() {
        Rule::Multicast
    } else {
        return None;
    })
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped, IPv4-compatible (not `::` or `::1`),
/// NAT64 well-known prefix, 6to4.
fn embedded_v4(addr: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(a) = addr else {
        return None;
    };
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = a.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !a.is_unspecified() && !a.is_loopback())
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else {
        None
    }
}

/// The client's resolver: the configured host overrides, else the system's, and only the
/// addresses the policy allows.
#[derive(Debug, Clone)]
pub(crate) struct Resolver {
    pub(crate) policy: AddressPolicy,
    pub(crate) overrides: Arc<[(String, SocketAddr)]>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str();
            let overridden: Vec<SocketAddr> = this
                .overrides
                .iter()
                .filter(|(h, _)| h.eq_ignore_ascii_case(host))
                .map(|(_, a)| *a)
                .collect();
            let found = if overridden.is_empty() {
                tokio::net::lookup_host((host, 0)).await?.collect()
            } else {
                overridden
            };
            let allowed = this.policy.filter(found)?;
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn internal_ranges_are_blocked_by_name() {
        for (addr, rule) in [
            ("127.0.0.1", Rule::Loopback),
            ("127.255.255.254", Rule::Loopback),
            ("10.1.2.3", Rule::Private),
            ("172.16.0.1", Rule::Private),
            ("172.31.255.255", Rule::Private),
            ("192.168.1.1", Rule::Private),
            ("169.254.169.254", Rule::LinkLocal),
            ("100.64.0.1", Rule::SharedCgnat),
            ("100.127.255.255", Rule::SharedCgnat),
            ("0.0.0.0", Rule::Unspecified),
            ("0.1.2.3", Rule::ThisNetwork),
            ("224.0.0.1", Rule::Multicast),
            ("255.255.255.255", Rule::Broadcast),
            ("240.0.0.1", Rule::Reserved),
            ("::1", Rule::Loopback),
            ("::", Rule::Unspecified),
            ("fc00::1", Rule::UniqueLocal),
            ("fd12:3456::1", Rule::UniqueLocal),
            ("fe80::1", Rule::LinkLocal),
            ("ff02::1", Rule::Multicast),
            ("::ffff:127.0.0.1", Rule::Loopback),
            ("::ffff:7f00:1", Rule::Loopback),
            ("::127.0.0.1", Rule::Loopback),
            ("64:ff9b::10.0.0.1", Rule::Private),
            ("2002:a9fe:a9fe::", Rule::LinkLocal),
        ] {
            assert_eq!(classify(ip(addr)), Some(rule), "{addr}");
            assert!(AddressPolicy::default().check(ip(addr)).is_err(), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(classify(ip(addr)), None, "{addr}");
            assert!(AddressPolicy::default().check(ip(addr)).is_ok(), "{addr}");
        }
    }

    #[test]
    fn allowed_ranges_open_only_themselves() {
        let p = AddressPolicy::allowing(["127.0.0.1/32".parse().unwrap()]);
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(
            p.check(ip("::ffff:127.0.0.1")).is_ok(),
            "the carried address"
        );
        assert!(p.check(ip("127.0.0.2")).is_err());
        assert!(p.check(ip("::1")).is_err());
        let b = p.check(ip("10.0.0.1")).unwrap_err();
        assert_eq!(b.rule, Rule::Private);
        assert!(b.to_string().contains("private"), "{b}");
    }

    #[test]
    fn filter_keeps_the_allowed_and_names_the_first_refusal() {
        let p = AddressPolicy::default();
        let a = |s: &str| SocketAddr::new(ip(s), 80);
        assert_eq!(
            p.filter([a("127.0.0.1"), a("8.8.8.8")]).unwrap(),
            vec![a("8.8.8.8")]
        );
        let b = p.filter([a("10.0.0.1"), a("::1")]).unwrap_err();
        assert_eq!((b.addr, b.rule), (ip("10.0.0.1"), Rule::Private));
        assert_eq!(p.filter([]).unwrap(), Vec::<SocketAddr>::new());
    }
}
