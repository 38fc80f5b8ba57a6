//! The SSRF guard: a webhook may not reach loopback, private, link-local,
//! unique-local, shared (CGNAT) or cloud-metadata addresses, nor use plain
//! `http://`, unless the operator allows that destination
//! (`webhooks.allow_private`: host names, addresses or CIDR blocks). The
//! check runs at delivery time on the resolved addresses, and the client
//! connects only to addresses that passed (see `client`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Host(String),
    Net(IpAddr, u32),
}

/// The operator's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// Entries that parse as neither a CIDR block nor an address are host
    /// names, compared case-insensitively.
    pub fn new<S: AsRef<str>>(items: &[S]) -> Self {
        let mut entries = Vec::new();
        for item in items {
            let e = item.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            if let Some((net, bits)) = e.split_once('/') {
                if let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    let max = if net.is_ipv4() { 32 } else { 128 };
                    if bits <= max {
                        entries.push(Entry::Net(net, bits));
                    }
                }
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                entries.push(Entry::Net(ip, bits));
            } else {
                entries.push(Entry::Host(e.to_ascii_lowercase()));
            }
        }
        Self { entries }
    }

    pub fn allows_host(&self, host: &str) -> bool {
        if let Ok(ip) = strip_brackets(host).parse::<IpAddr>() {
            return self.allows_ip(ip);
        }
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    /// Whether the host of an absolute URL is allowed (false when the URL
    /// does not parse or has no host).
    pub fn allows_url(&self, url: &str) -> bool {
        url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| self.allows_host(h)))
            .unwrap_or(false)
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.entries.iter().any(|e| match e {
            Entry::Net(net, bits) => in_cidr(ip, canonical(*net), *bits),
            Entry::Host(_) => false,
        })
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - bits.min(128)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Why an address may not be reached, or `None` when it is public.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared address space")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        Some("cloud metadata")
    } else if s[0] & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s[0] & 0xff00 == 0xff00 {
        Some("multicast")
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 carries an IPv4 address in its last 32 bits.
        forbidden_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else {
        None
    }
}

/// A destination refused before any connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: {0} is not an http(s) URL")]
    BadUrl(String),
    #[error(
        "refused: plain http:// is allowed only to destinations in webhooks.allow_private ({0})"
    )]
    PlainHttp(String),
    #[error("refused: {host} resolves to {ip}, a {why} address not in webhooks.allow_private")]
    Address {
        host: String,
        ip: IpAddr,
        why: &'static str,
    },
}

/// Checks one resolved address of `host`.
pub fn check_ip(allow: &AllowList, host: &str, ip: IpAddr) -> Result<(), Refusal> {
    if allow.allows_host(host) || allow.allows_ip(ip) {
        return Ok(());
    }
    match forbidden(ip) {
        Some(why) => Err(Refusal::Address {
            host: host.to_owned(),
            ip,
            why,
        }),
        None => Ok(()),
    }
}

/// Checks the URL's scheme: `https`, or `http` to an allowed destination.
pub fn check_scheme(allow: &AllowList, url: &url::Url) -> Result<(), Refusal> {
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow.allows_host(host) => Ok(()),
        "http" => Err(Refusal::PlainHttp(host.to_owned())),
        _ => Err(Refusal::BadUrl(url.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_ranges() {
        for (a, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("100.64.0.1", "shared address space"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a00:1", "private"),
        ] {
            assert_eq!(forbidden(ip(a)), Some(why), "{a}");
        }
        for a in [
            "93.184.216.34",
            "2606:2800:220:1::",
            "8.8.8.8",
            "100.128.0.1",
        ] {
            assert_eq!(forbidden(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn allow_list() {
        let l = AllowList::new(&[
            "127.0.0.1",
            "hooks.internal",
            "10.0.0.0/8",
            "::1/128",
            "bad/99",
        ]);
        assert!(l.allows_host("127.0.0.1"));
        assert!(l.allows_host("HOOKS.internal"));
        assert!(l.allows_host("[::1]"));
        assert!(l.allows_ip(ip("10.9.9.9")));
        assert!(l.allows_ip(ip("::ffff:10.9.9.9")));
        assert!(!l.allows_ip(ip("11.0.0.1")));
        assert!(!l.allows_host("hooks.internal.evil.com"));
        assert!(check_ip(&l, "x.example", ip("10.1.1.1")).is_ok());
        assert!(check_ip(&l, "hooks.internal", ip("192.168.0.1")).is_ok());
        let e = check_ip(&l, "x.example", ip("192.168.0.1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refused: x.example resolves to 192.168.0.1, a private address not in webhooks.allow_private"
        );
        assert!(check_ip(&AllowList::default(), "a.example", ip("8.8.8.8")).is_ok());
    }

    #[test]
    fn schemes() {
        let l = AllowList::new(&["127.0.0.1"]);
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_scheme(&l, &u("https://example.com/")).is_ok());
        assert!(check_scheme(&l, &u("http://127.0.0.1:9/")).is_ok());
        assert!(matches!(
            check_scheme(&l, &u("http://example.com/")),
            Err(Refusal::PlainHttp(_))
        ));
        assert!(matches!(
            check_scheme(&l, &u("ftp://example.com/")),
            Err(Refusal::BadUrl(_))
        ));
    }
}
