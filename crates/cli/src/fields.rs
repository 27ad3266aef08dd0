//! Command-line values → JSON fields.
//!
//! Every flag of a resource is a [`FieldSpec`] (made by [`crate::flags`] from
//! the model and the resource table): a flag name, the JSON key it sets (the
//! serde camelCase name of the `midonet-model` type, which is also MidoNet's
//! REST name) and a [`Kind`] that says how the text on the command line
//! becomes JSON. One flag may set two keys (`--nw-src 10.0.0.0/24` sets
//! `nwSrcAddress` and `nwSrcLength`).
//!
//! Parsing is lenient where people are sloppy and strict where a mistake would
//! silently change meaning: protocol names (`tcp`), ether-type names (`ipv4`)
//! and hex (`0x0800`) are accepted; a prefix without `/len` means a host route
//! (`/32`); a bad number is an error that names the flag.
//!
//! `--set key=value` is the escape hatch for any field without a flag: the
//! value is taken as JSON when it parses as JSON (`6`, `true`, `null`,
//! `{"start":1,"end":2}`), else as a string. `--json '{...}'` gives a whole body;
//! flags and `--set` are applied on top of it.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

/// How one flag's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string.
    Str,
    /// An integer, decimal or `0x` hex.
    Int,
    /// `true`/`false` (also yes/no, up/down, on/off, 1/0).
    Bool,
    /// A flag without a value that sets the key to `true` (`--inv-nw-src`).
    Switch,
    /// `ADDR[/LEN]`: sets the key to the address and `.0` of the pair to
    /// the length (32 for IPv4, 128 for IPv6 when omitted).
    Cidr(&'static str),
    /// `PORT` or `FROM:TO` / `FROM-TO`: `{"start","end"}`.
    Range,
    /// Comma-separated strings (may be repeated): a JSON array.
    List,
    /// An IP protocol: a number or `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `gre`.
    Proto,
    /// An ether type: a number (`0x0800`, `2048`) or `ipv4`, `arp`, `ipv6`, `vlan`.
    EtherType,
    /// A reference to another object by id, or by name (resolved through
    /// that resource's collection). The string is the resource's CLI name.
    Ref(&'static str),
    /// Like `Ref`, comma-separated, into an array.
    RefList(&'static str),
    /// `ADDR[-ADDR][:PORT[-PORT]]`, repeatable: appended to a NAT target list.
    NatTarget,
    /// Raw JSON.
    Json,
}

/// One flag of a resource. Names and help are `Cow`s because most are
/// derived from the model at run time; they live in a static table (see
/// [`crate::flags`]), so a `&'static FieldSpec` lends `&'static str`s to clap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Long flag name without dashes.
    pub flag: Cow<'static, str>,
    /// JSON key it sets.
    pub key: &'static str,
    pub kind: Kind,
    pub help: Cow<'static, str>,
}

/// An invalid value, with the flag it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub flag: String,
    pub message: String,
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, fm: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(fm, "--{}: {}", self.flag, self.message)
    }
}

impl std::error::Error for ValueError {}

fn bad(flag: &str, message: impl Into<String>) -> ValueError {
    ValueError { flag: flag.to_owned(), message: message.into() }
}

/// Resolves `(resource, id-or-name)` to an id. The CLI passes one that asks
/// the server; unit tests pass one that needs no server.
pub type Resolver<'a> = dyn FnMut(&str, &str) -> anyhow::Result<String> + 'a;

/// Applies one flag occurrence to `body`.
pub fn apply(
    body: &mut Map<String, Value>,
    spec: &FieldSpec,
    raw: &str,
    resolve: &mut Resolver<'_>,
) -> Result<(), ValueError> {
    let flag: &str = &spec.flag;
    let v = match spec.kind {
        Kind::Str => Value::String(raw.to_owned()),
        Kind::Int => json!(parse_int(raw).map_err(|m| bad(flag, m))?),
        Kind::Bool => Value::Bool(parse_bool(raw).map_err(|m| bad(flag, m))?),
        Kind::Switch => Value::Bool(true),
        Kind::Cidr(len_key) => {
            let (addr, len) = parse_cidr(raw).map_err(|m| bad(flag, m))?;
            body.insert(len_key.to_owned(), json!(len));
            Value::String(addr)
        }
        Kind::Range => parse_range(raw).map_err(|m| bad(flag, m))?,
        Kind::List => {
            let mut items = match body.remove(spec.key) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            items.extend(split_list(raw).map(|s| Value::String(s.to_owned())));
            Value::Array(items)
        }
        Kind::Proto => json!(parse_proto(raw).map_err(|m| bad(flag, m))?),
        Kind::EtherType => json!(parse_ether_type(raw).map_err(|m| bad(flag, m))?),
        Kind::Ref(res) => {
            Value::String(resolve(res, raw).map_err(|e| bad(flag, format!("{e:#}")))?)
        }
        Kind::RefList(res) => {
            let mut items = match body.remove(spec.key) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            for s in split_list(raw) {
                items
                    .push(Value::String(resolve(res, s).map_err(|e| bad(flag, format!("{e:#}")))?));
            }
            Value::Array(items)
        }
        Kind::NatTarget => {
            let mut items = match body.remove(spec.key) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            items.push(parse_nat_target(raw).map_err(|m| bad(flag, m))?);
            Value::Array(items)
        }
        Kind::Json => serde_json::from_str(raw).map_err(|e| bad(flag, format!("not JSON: {e}")))?,
    };
    body.insert(spec.key.to_owned(), v);
    Ok(())
}

fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `key=value` for `--set`: the value is JSON if it parses, else a string.
pub fn parse_set(raw: &str) -> Result<(String, Value), ValueError> {
    let (k, v) = raw
        .split_once('=')
        .ok_or_else(|| bad("set", format!("expected key=value, got `{raw}`")))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(bad("set", format!("empty key in `{raw}`")));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

/// `--json '{...}'`: must be an object.
pub fn parse_body(raw: &str) -> Result<Map<String, Value>, ValueError> {
    match serde_json::from_str(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("json", "expected a JSON object `{...}`")),
        Err(e) => Err(bad("json", format!("not JSON: {e}"))),
    }
}

pub fn parse_int(raw: &str) -> Result<i64, String> {
    let s = raw.trim();
    let parsed = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    parsed.map_err(|_| format!("expected a number, got `{raw}`"))
}

pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "up" | "on" | "1" => Ok(true),
        "false" | "no" | "n" | "down" | "off" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got `{raw}`")),
    }
}

/// `ADDR[/LEN]` → (address, length). The address is checked to be an IP
/// address so a typo fails here rather than as a 400 from the server.
pub fn parse_cidr(raw: &str) -> Result<(String, u8), String> {
    let (a, l) = match raw.trim().split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (raw.trim(), None),
    };
    let ip: std::net::IpAddr =
        a.parse().map_err(|_| format!("expected ADDRESS[/LENGTH], `{a}` is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match l {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("prefix length `{l}` must be 0..={max}"))?,
    };
    Ok((ip.to_string(), len))
}

/// `N`, `N:M` or `N-M` → `{"start": N, "end": M}`.
pub fn parse_range(raw: &str) -> Result<Value, String> {
    let s = raw.trim();
    let (a, b) = s.split_once(':').or_else(|| s.split_once('-')).unwrap_or((s, s));
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("expected PORT or FROM:TO with ports 0..=65535, got `{raw}`"))
    };
    let (start, end) = (port(a)?, port(b)?);
    if start > end {
        return Err(format!("range `{raw}` starts after it ends"));
    }
    Ok(json!({ "start": start, "end": end }))
}

pub fn parse_proto(raw: &str) -> Result<i64, String> {
    let n = match raw.trim().to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "icmpv6" | "icmp6" => 58,
        "sctp" => 132,
        _ => parse_int(raw).map_err(|_| {
            format!("expected a protocol number or tcp/udp/icmp/icmpv6/sctp/gre, got `{raw}`")
        })?,
    };
    if !(0..=255).contains(&n) {
        return Err(format!("protocol {n} is out of 0..=255"));
    }
    Ok(n)
}

pub fn parse_ether_type(raw: &str) -> Result<i64, String> {
    let n = match raw.trim().to_ascii_lowercase().as_str() {
        "ipv4" | "ip" => 0x0800,
        "arp" => 0x0806,
        "ipv6" => 0x86dd,
        "vlan" | "802.1q" => 0x8100,
        _ => parse_int(raw).map_err(|_| {
            format!("expected an ether type (0x0800, ipv4, arp, ipv6), got `{raw}`")
        })?,
    };
    if !(0..=0xffff).contains(&n) {
        return Err(format!("ether type {n} is out of 0..=0xffff"));
    }
    Ok(n)
}

/// `ADDR[-ADDR][:PORT[-PORT]]` → `{"addressFrom","addressTo","portFrom","portTo"}`.
/// Ports default to 0 (any), which is how MidoNet spells "keep the port".
pub fn parse_nat_target(raw: &str) -> Result<Value, String> {
    let s = raw.trim();
    let (addrs, ports) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let (from, to) = addrs.split_once('-').unwrap_or((addrs, addrs));
    for a in [from, to] {
        a.parse::<std::net::Ipv4Addr>().map_err(|_| {
            format!("expected ADDR[-ADDR][:PORT[-PORT]], `{a}` is not an IPv4 address")
        })?;
    }
    let (pf, pt) = match ports {
        Some(p) => {
            let r = parse_range(p)?;
            (r["start"].clone(), r["end"].clone())
        }
        None => (json!(0), json!(0)),
    };
    Ok(json!({
        "addressFrom": from, "addressTo": to, "portFrom": pf, "portTo": pt,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    fn no_resolve() -> impl FnMut(&str, &str) -> anyhow::Result<String> {
        |res: &str, v: &str| {
            if v.len() == 36 {
                Ok(v.to_owned())
            } else {
                anyhow::bail!("no {res} named `{v}` (test resolver)")
            }
        }
    }

    fn body_from(resource: &str, args: &[(&str, &str)]) -> Result<Value, ValueError> {
        let spec = resources::find(resource).expect("resource exists");
        let mut body = Map::new();
        let mut r = no_resolve();
        for (flag, raw) in args {
            let field = spec
                .fields()
                .iter()
                .find(|f| f.flag == *flag)
                .unwrap_or_else(|| panic!("{resource} has no --{flag}"));
            apply(&mut body, field, raw, &mut r)?;
        }
        Ok(Value::Object(body))
    }

    #[test]
    fn rule_conditions_map_to_midonet_fields() {
        let b = body_from(
            "rule",
            &[
                ("type", "accept"),
                ("nw-src", "10.0.0.0/24"),
                ("inv-nw-src", ""),
                ("nw-dst", "192.168.1.7"),
                ("tp-dst", "80:81"),
                ("tp-src", "1024-2048"),
                ("nw-proto", "tcp"),
                ("dl-type", "0x0800"),
                ("position", "2"),
                ("match-forward-flow", ""),
            ],
        )
        .expect("valid");
        assert_eq!(
            b,
            json!({
                "type": "accept",
                "nwSrcAddress": "10.0.0.0", "nwSrcLength": 24, "invNwSrc": true,
                "nwDstAddress": "192.168.1.7", "nwDstLength": 32,
                "tpDst": {"start": 80, "end": 81},
                "tpSrc": {"start": 1024, "end": 2048},
                "nwProto": 6, "dlType": 2048, "position": 2,
                "matchForwardFlow": true,
            })
        );
    }

    #[test]
    fn rule_nat_targets_accumulate() {
        let b = body_from(
            "rule",
            &[
                ("type", "dnat"),
                ("nat-target", "10.0.0.5"),
                ("nat-target", "10.0.0.10-10.0.0.20:8000-8010"),
                ("flow-action", "accept"),
            ],
        )
        .expect("valid");
        assert_eq!(
            b["natTargets"],
            json!([
                {"addressFrom":"10.0.0.5","addressTo":"10.0.0.5","portFrom":0,"portTo":0},
                {"addressFrom":"10.0.0.10","addressTo":"10.0.0.20","portFrom":8000,"portTo":8010},
            ])
        );
        assert_eq!(b["flowAction"], "accept");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = body_from("rule", &[("nw-src", "10.0.0/24")]).expect_err("bad address");
        assert_eq!(e.flag, "nw-src");
        assert!(e.to_string().starts_with("--nw-src: "), "{e}");
        let e = body_from("rule", &[("tp-dst", "90:80")]).expect_err("reversed range");
        assert!(e.message.contains("starts after"), "{e}");
        let e = body_from("rule", &[("nw-proto", "tcpp")]).expect_err("bad proto");
        assert_eq!(e.flag, "nw-proto");
        let e = body_from("port", &[("network", "10.0.0.0/33")]).expect_err("bad length");
        assert!(e.message.contains("0..=32"), "{e}");
    }

    #[test]
    fn refs_go_through_the_resolver() {
        let id = "3f0e5b2c-4c1d-4c2e-9f00-0123456789ab";
        let b = body_from("bridge", &[("inbound-filter", id), ("name", "b")]).expect("uuid ok");
        assert_eq!(b["inboundFilterId"], id);
        let e = body_from("bridge", &[("inbound-filter", "web")]).expect_err("unknown name");
        assert!(e.message.contains("no chain named `web`"), "{e}");
    }

    #[test]
    fn router_port_and_dhcp_fields() {
        let b = body_from(
            "port",
            &[
                ("port-address", "10.0.0.1"),
                ("network", "10.0.0.0/24"),
                ("port-mac", "02:00:00:aa:bb:cc"),
            ],
        )
        .expect("valid");
        assert_eq!(
            b,
            json!({"portAddress":"10.0.0.1","networkAddress":"10.0.0.0","networkLength":24,
                   "portMac":"02:00:00:aa:bb:cc"})
        );
        let d = body_from(
            "dhcp-subnet",
            &[
                ("subnet", "10.0.0.0/24"),
                ("dns", "8.8.8.8,1.1.1.1"),
                ("dns", "9.9.9.9"),
                ("mtu", "1450"),
                ("enabled", "yes"),
            ],
        )
        .expect("valid");
        assert_eq!(d["subnetPrefix"], "10.0.0.0");
        assert_eq!(d["subnetLength"], 24);
        assert_eq!(d["dnsServerAddrs"], json!(["8.8.8.8", "1.1.1.1", "9.9.9.9"]));
        assert_eq!(d["interfaceMTU"], 1450);
        assert_eq!(d["enabled"], true);
    }

    #[test]
    fn set_values_are_json_when_they_parse() {
        assert_eq!(parse_set("nwProto=6").expect("ok"), ("nwProto".into(), json!(6)));
        assert_eq!(parse_set("name=web").expect("ok"), ("name".into(), json!("web")));
        assert_eq!(parse_set("x=").expect("ok"), ("x".into(), json!("")));
        assert_eq!(
            parse_set("tpDst={\"start\":1,\"end\":2}").expect("ok").1,
            json!({"start":1,"end":2})
        );
        assert_eq!(parse_set("a=b=c").expect("ok"), ("a".into(), json!("b=c")));
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("=1").is_err());
    }

    #[test]
    fn body_must_be_an_object() {
        assert!(parse_body(r#"{"name":"x"}"#).is_ok());
        assert!(parse_body("[1]").is_err());
        assert!(parse_body("{").is_err());
    }

    #[test]
    fn lenient_scalars() {
        assert_eq!(parse_int("0x86dd"), Ok(0x86dd));
        assert!(parse_int("12a").is_err());
        assert_eq!(parse_bool("Down"), Ok(false));
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_cidr("fd00::/64"), Ok(("fd00::".into(), 64)));
        assert_eq!(parse_cidr("fd00::1"), Ok(("fd00::1".into(), 128)));
        assert_eq!(parse_range("22"), Ok(json!({"start":22,"end":22})));
        assert_eq!(parse_ether_type("arp"), Ok(0x0806));
        assert!(parse_proto("300").is_err());
    }
}
