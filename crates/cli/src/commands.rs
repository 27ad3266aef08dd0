//! Generic resource commands built from [`crate::resources::RESOURCES`].
//!
//! ```text
//! midonet <resource> list   [--PARENT ID] [--tenant T]
//! midonet <resource> show   ID            [--PARENT ID]   (parents only for id-less entries)
//! midonet <resource> create [--PARENT ID] [--FIELD VALUE]... [--set k=v]... [--json '{..}']
//! midonet <resource> update ID            [--FIELD VALUE]... [--set k=v]... [--json '{..}']
//! midonet <resource> delete ID...         [--PARENT ID]
//! midonet port link ID --peer PEER | port unlink ID | host interfaces ID
//! ```
//!
//! `ID` may be a UUID or, for top-level resources, a unique name. Update is a
//! read–modify–write of the whole object (PUT), as MidoNet expects.

use std::io::Write;

use anyhow::{anyhow, bail, Context as _};
use clap::{Arg, ArgAction, ArgMatches, Command};
use midonet_client::{Client, ClientError};
use serde_json::{Map, Value};

use crate::fields::{self, Kind};
use crate::render::{self, cell};
use crate::resources::{self, Col, Extra, Key, ParentSpec, ResourceSpec};
use crate::Output;

/// Columns of `host interfaces`.
const INTERFACE_COLUMNS: &[(&str, Col)] = &[
    ("NAME", Col::Key("name")),
    ("MAC", Col::Key("mac")),
    ("MTU", Col::Key("mtu")),
    ("STATUS", Col::Key("status")),
    ("TYPE", Col::Key("type")),
    ("ADDRESSES", Col::Key("addresses")),
];

/// The clap subcommand for one resource.
pub fn resource_command(spec: &'static ResourceSpec) -> Command {
    let id_name = match spec.key {
        Key::Id => "ID",
        Key::Field(_) | Key::Cidr(..) => "KEY",
    };
    let id_help = match spec.key {
        Key::Id if spec.collection.is_some() => "id or unique name".to_owned(),
        Key::Id => "id".to_owned(),
        Key::Field(k) => format!("the entry's `{k}`"),
        Key::Cidr(..) => "the subnet as ADDR/LEN".to_owned(),
    };
    let keyed = !matches!(spec.key, Key::Id);
    let id_arg = || Arg::new("id").value_name(id_name).required(true).help(id_help.clone());

    let mut list = Command::new("list").visible_alias("ls").about(format!("list {}", spec.about));
    list = with_parent_args(list, spec, "list under this parent");
    if spec.has_tenant() && spec.collection.is_some() {
        list = list.arg(
            Arg::new("tenant")
                .long("tenant")
                .value_name("TENANT")
                .help("only objects of this tenant"),
        );
    }
    let mut show = Command::new("show").visible_alias("get").about("show one").arg(id_arg());
    if keyed {
        show = with_parent_args(show, spec, "parent of the entry");
    }
    let mut cmd = Command::new(spec.name)
        .about(spec.about)
        .visible_aliases(spec.aliases.iter().copied())
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(list)
        .subcommand(show);

    if spec.creatable {
        cmd = cmd.subcommand(with_field_args(
            with_parent_args(
                Command::new("create").visible_alias("add").about("create one"),
                spec,
                "create under this parent",
            ),
            spec,
        ));
    }
    if spec.writable {
        let mut update = with_field_args(
            Command::new("update").visible_alias("set").about("change fields of one").arg(id_arg()),
            spec,
        );
        let mut delete = Command::new("delete")
            .visible_aliases(["rm", "remove"])
            .about("delete one or more")
            .arg(
                Arg::new("id")
                    .value_name(id_name)
                    .required(true)
                    .num_args(1..)
                    .help(id_help.clone()),
            );
        if keyed {
            update = with_parent_args(update, spec, "parent of the entry");
            delete = with_parent_args(delete, spec, "parent of the entry");
        }
        cmd = cmd.subcommand(update).subcommand(delete);
    }
    for extra in spec.extras {
        match extra {
            Extra::Link => {
                cmd = cmd
                    .subcommand(
                        Command::new("link")
                            .about("link this interior port to a peer port (both sides)")
                            .arg(id_arg())
                            .arg(
                                Arg::new("peer")
                                    .long("peer")
                                    .value_name("PORT")
                                    .required(true)
                                    .help("peer port id"),
                            ),
                    )
                    .subcommand(
                        Command::new("unlink").about("remove the link of this port").arg(id_arg()),
                    );
            }
            Extra::Interfaces => {
                cmd = cmd.subcommand(
                    Command::new("interfaces")
                        .about("list the host's network interfaces")
                        .arg(id_arg()),
                );
            }
            Extra::Credential => {
                cmd = cmd
                    .subcommand(
                        Command::new("enroll")
                            .about("issue a host's agent credential (replaces any earlier one; shown once)")
                            .arg(Arg::new("id").value_name("HOST").help(
                                "host id (or name of a registered host); default: a new id",
                            ))
                            .arg(
                                Arg::new("out")
                                    .long("out")
                                    .value_name("FILE")
                                    .help("write the credential to FILE (mode 0600) instead of printing it"),
                            ),
                    )
                    .subcommand(
                        Command::new("revoke")
                            .about("revoke a host's agent credential; its agent is cut off at once")
                            .arg(id_arg()),
                    );
            }
            Extra::LbStatus => {
                cmd = cmd.subcommand(
                    Command::new("status")
                        .about("members of the pools, with weight, admin state and health")
                        .arg(Arg::new("id").value_name(id_name).help("only this one")),
                );
            }
        }
    }
    cmd
}

/// Parent flags of `spec`, plus those of id-less parents (a DHCP host needs
/// `--subnet` and that subnet's `--bridge`).
fn parent_flags(spec: &'static ResourceSpec, acc: &mut Vec<&'static ParentSpec>) {
    for p in spec.parents {
        if acc.iter().all(|q| q.flag != p.flag) {
            acc.push(p);
        }
        if let Some(ps) = resources::find(p.resource) {
            if !matches!(ps.key, Key::Id) {
                parent_flags(ps, acc);
            }
        }
    }
}

fn with_parent_args(mut cmd: Command, spec: &'static ResourceSpec, help: &str) -> Command {
    let mut ps = Vec::new();
    parent_flags(spec, &mut ps);
    for p in ps {
        cmd = cmd.arg(
            Arg::new(p.flag).long(p.flag).value_name("ID").help(format!("{help} ({})", p.resource)),
        );
    }
    cmd
}

fn with_field_args(mut cmd: Command, spec: &'static ResourceSpec) -> Command {
    for fs in spec.fields() {
        let flag: &'static str = fs.flag.as_ref();
        let mut a = Arg::new(flag).long(flag).help(fs.help.as_ref());
        a = match fs.kind {
            Kind::Switch => a.action(ArgAction::SetTrue),
            Kind::List | Kind::RefList(_) | Kind::NatTarget => a.action(ArgAction::Append),
            _ => a.action(ArgAction::Set),
        };
        a = match fs.kind {
            Kind::Switch => a,
            Kind::Cidr(_) => a.value_name("ADDR/LEN"),
            Kind::Range => a.value_name("FROM[:TO]"),
            Kind::Bool => a.value_name("BOOL"),
            Kind::Int | Kind::Proto | Kind::EtherType => a.value_name("N"),
            Kind::Ref(_) => a.value_name("ID"),
            Kind::RefList(_) | Kind::List => a.value_name("A,B,..."),
            Kind::NatTarget => a.value_name("ADDR[-ADDR][:PORT[-PORT]]"),
            Kind::Json => a.value_name("JSON"),
            Kind::Str => a.value_name("VALUE"),
        };
        cmd = cmd.arg(a);
    }
    cmd.arg(
        Arg::new("set")
            .long("set")
            .value_name("KEY=VALUE")
            .action(ArgAction::Append)
            .help("set any JSON field (value parsed as JSON if it can be)"),
    )
    .arg(
        Arg::new("json")
            .long("json")
            .value_name("JSON")
            .help("whole JSON body; flags and --set apply on top"),
    )
}

/// State shared by the verbs.
pub struct Ctx<'a> {
    pub client: &'a Client,
    pub output: Output,
    pub out: &'a mut dyn Write,
}

/// Runs `<resource> <verb>`.
pub fn run(ctx: &mut Ctx<'_>, spec: &'static ResourceSpec, m: &ArgMatches) -> anyhow::Result<()> {
    let (verb, vm) = m.subcommand().ok_or_else(|| anyhow!("missing verb"))?;
    match verb {
        "list" => list(ctx, spec, vm),
        "show" => {
            let obj = locate(ctx.client, spec, vm, arg(vm, "id")?)?;
            render::print_object(ctx.out, ctx.output, &obj)
        }
        "create" => create(ctx, spec, vm),
        "update" => update(ctx, spec, vm),
        "delete" => delete(ctx, spec, vm),
        "link" => link(ctx, spec, vm),
        "unlink" => unlink(ctx, spec, vm),
        "interfaces" => {
            let host = locate(ctx.client, spec, vm, arg(vm, "id")?)?;
            let items = ctx.client.list(&link_of(&host, "interfaces", "interfaces")?)?;
            render::print_list(ctx.out, ctx.output, INTERFACE_COLUMNS, &items)
        }
        "enroll" => enroll(ctx, spec, vm),
        "revoke" => {
            let id = resolve_id(ctx.client, spec, arg(vm, "id")?)?;
            ctx.client.delete(&format!("hosts/{id}/credential"))?;
            writeln!(ctx.out, "revoked the credential of host {id}")?;
            Ok(())
        }
        "status" => {
            let id = match opt(vm, "id") {
                Some(raw) => Some(resolve_id(ctx.client, spec, raw)?),
                None => None,
            };
            crate::lb::status(ctx.client, id.as_deref(), ctx.output, ctx.out)
        }
        other => bail!("unknown verb `{other}`"),
    }
}

/// `host enroll`: the credential an agent needs (`credential_file`).
fn enroll(ctx: &mut Ctx<'_>, spec: &ResourceSpec, vm: &ArgMatches) -> anyhow::Result<()> {
    let id = match opt(vm, "id") {
        Some(raw) => resolve_id(ctx.client, spec, raw)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let r = ctx
        .client
        .post_json(&format!("hosts/{id}/credential"), &Value::Object(Default::default()))?;
    let token = r
        .get("credential")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the cluster's answer has no credential"))?;
    match opt(vm, "out") {
        Some(path) => {
            midonet_proto::tls::write_private(
                std::path::Path::new(path),
                format!("{token}\n").as_bytes(),
            )
            .map_err(|e| anyhow!("writing {path}: {e}"))?;
            writeln!(ctx.out, "host {id}: credential written to {path}")?;
        }
        None => match ctx.output {
            Output::Json => {
                writeln!(ctx.out, "{}", serde_json::json!({ "hostId": id, "credential": token }))?
            }
            _ => writeln!(ctx.out, "{token}")?,
        },
    }
    Ok(())
}

fn arg<'m>(m: &'m ArgMatches, name: &str) -> anyhow::Result<&'m str> {
    m.get_one::<String>(name).map(String::as_str).ok_or_else(|| anyhow!("missing <{name}>"))
}

fn opt<'m>(m: &'m ArgMatches, name: &str) -> Option<&'m str> {
    // `try_get_one` so that asking for an arg a subcommand does not declare
    // is "absent", not a panic.
    m.try_get_one::<String>(name).ok().flatten().map(String::as_str)
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// An id, or a unique name looked up in the resource's collection.
pub fn resolve_id(client: &Client, spec: &ResourceSpec, raw: &str) -> anyhow::Result<String> {
    if is_uuid(raw) {
        return Ok(raw.to_owned());
    }
    let Some(coll) = spec.collection else {
        bail!("`{raw}` is not a {} id (expected a UUID)", spec.name);
    };
    let items = client.list(&client.root_link(coll)?)?;
    let hits: Vec<&Value> =
        items.iter().filter(|o| o.get("name").and_then(Value::as_str) == Some(raw)).collect();
    match hits.as_slice() {
        [one] => one
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{} `{raw}` has no id", spec.name)),
        [] => bail!("no {} named `{raw}` (and it is not a UUID)", spec.name),
        many => bail!("{} {}s are named `{raw}`; use the id", many.len(), spec.name),
    }
}

/// URI of an id-keyed object: the root template, else collection/id.
fn object_uri(client: &Client, spec: &ResourceSpec, id: &str) -> anyhow::Result<String> {
    if let Some(t) = spec.template {
        match client.template(t, id) {
            Ok(u) => return Ok(u),
            Err(ClientError::MissingLink(_)) if spec.collection.is_some() => {}
            Err(e) => return Err(e.into()),
        }
    }
    match spec.collection {
        Some(c) => Ok(format!("{}/{id}", client.root_link(c)?)),
        None => bail!("the API root has no `{}` template", spec.template.unwrap_or(spec.name)),
    }
}

/// A child collection link of a fetched object, with a fallback segment
/// under its `uri`.
fn link_of(obj: &Value, link: &str, fallback: &str) -> anyhow::Result<String> {
    if let Some(l) = obj.get(link).and_then(Value::as_str) {
        return Ok(l.to_owned());
    }
    let uri = obj
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("object has neither a `{link}` link nor a `uri`"))?;
    Ok(format!("{}/{fallback}", uri.trim_end_matches('/')))
}

/// The child collection named by whichever parent flag was given.
fn parent_collection(
    client: &Client,
    spec: &'static ResourceSpec,
    m: &ArgMatches,
) -> anyhow::Result<Option<(String, &'static ParentSpec)>> {
    for p in spec.parents {
        if let Some(raw) = opt(m, p.flag) {
            let pspec = resources::find(p.resource)
                .ok_or_else(|| anyhow!("unknown parent resource {}", p.resource))?;
            let parent = locate(client, pspec, m, raw)
                .with_context(|| format!("looking up --{} {raw}", p.flag))?;
            return Ok(Some((link_of(&parent, p.link, p.fallback)?, p)));
        }
    }
    Ok(None)
}

fn parent_hint(spec: &ResourceSpec) -> String {
    spec.parents
        .iter()
        .map(|p| format!("--{} {}", p.flag, p.resource.to_uppercase()))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn require_parent(
    client: &Client,
    spec: &'static ResourceSpec,
    m: &ArgMatches,
) -> anyhow::Result<(String, &'static ParentSpec)> {
    parent_collection(client, spec, m)?
        .ok_or_else(|| anyhow!("{} needs {}", spec.name, parent_hint(spec)))
}

/// Fetches one object: by id (or name) for id-keyed resources, else by
/// listing the parent's collection and matching the key.
fn locate(
    client: &Client,
    spec: &'static ResourceSpec,
    m: &ArgMatches,
    raw: &str,
) -> anyhow::Result<Value> {
    match spec.key {
        Key::Id => {
            let id = resolve_id(client, spec, raw)?;
            let uri = object_uri(client, spec, &id)?;
            client.get(&uri).map_err(|e| match e.status() {
                Some(404) => anyhow!("no {} with id {id}", spec.name),
                _ => e.into(),
            })
        }
        Key::Field(k) => {
            let (coll, _) = require_parent(client, spec, m)?;
            // A key that is a reference (`portId`) may be given by name.
            let want = match spec.fields().iter().find(|f| f.key == k).map(|f| f.kind) {
                Some(Kind::Ref(r)) => resolve_ref(client, r, raw)?,
                _ => raw.to_owned(),
            };
            client
                .list(&coll)?
                .into_iter()
                .find(|o| cell(&o[k]).eq_ignore_ascii_case(&want))
                .ok_or_else(|| anyhow!("no {} with {k} {want}", spec.name))
        }
        Key::Cidr(a, l) => {
            let (coll, _) = require_parent(client, spec, m)?;
            let (addr, len) =
                fields::parse_cidr(raw).map_err(|e| anyhow!("{} `{raw}`: {e}", spec.name))?;
            client
                .list(&coll)?
                .into_iter()
                .find(|o| cell(&o[a]) == addr && cell(&o[l]) == len.to_string())
                .ok_or_else(|| anyhow!("no {} {addr}/{len}", spec.name))
        }
    }
}

fn resolve_ref(client: &Client, resource: &str, raw: &str) -> anyhow::Result<String> {
    let spec = resources::find(resource).ok_or_else(|| anyhow!("unknown resource {resource}"))?;
    resolve_id(client, spec, raw)
}

/// Builds a body: `--json`, then flags in table order, then `--set`.
pub fn body_from_args(
    spec: &ResourceSpec,
    m: &ArgMatches,
    base: Map<String, Value>,
    resolve: &mut fields::Resolver<'_>,
) -> anyhow::Result<Map<String, Value>> {
    let mut body = base;
    if let Some(j) = opt(m, "json") {
        body.extend(fields::parse_body(j)?);
    }
    for fs in spec.fields() {
        if let Kind::Switch = fs.kind {
            if m.get_flag(&fs.flag) {
                fields::apply(&mut body, fs, "", resolve)?;
            }
            continue;
        }
        if let Some(values) = m.get_many::<String>(&fs.flag) {
            if matches!(fs.kind, Kind::List | Kind::RefList(_) | Kind::NatTarget) {
                // Repeated flags accumulate; replace what an update read.
                body.remove(fs.key);
            }
            for v in values {
                fields::apply(&mut body, fs, v, resolve)?;
            }
        }
    }
    if let Some(sets) = m.get_many::<String>("set") {
        for s in sets {
            let (k, v) = fields::parse_set(s)?;
            body.insert(k, v);
        }
    }
    Ok(body)
}

fn list(ctx: &mut Ctx<'_>, spec: &'static ResourceSpec, m: &ArgMatches) -> anyhow::Result<()> {
    let url = match parent_collection(ctx.client, spec, m)? {
        Some((coll, _)) => coll,
        None => match spec.collection {
            Some(c) if !spec.parent_required => ctx.client.root_link(c)?,
            _ => bail!("listing {}s needs {}", spec.name, parent_hint(spec)),
        },
    };
    let url = match opt(m, "tenant") {
        Some(t) => format!("{url}?tenant_id={}", encode_query(t)),
        None => url,
    };
    let items = ctx.client.list(&url)?;
    render::print_list(ctx.out, ctx.output, spec.columns, &items)
}

/// Percent-encodes a query value (tenant ids are usually plain, but a name
/// with spaces or `&` must not break the URL).
fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn create(ctx: &mut Ctx<'_>, spec: &'static ResourceSpec, m: &ArgMatches) -> anyhow::Result<()> {
    let client = ctx.client;
    // The body first: a malformed flag is reported before any request.
    let mut resolver = |r: &str, raw: &str| resolve_ref(client, r, raw);
    let mut body = body_from_args(spec, m, Map::new(), &mut resolver)?;
    let url = if spec.parents.is_empty() {
        let c =
            spec.collection.ok_or_else(|| anyhow!("{} cannot be created directly", spec.name))?;
        client.root_link(c)?
    } else {
        let (coll, parent) = require_parent(client, spec, m)?;
        for (k, v) in parent.defaults {
            body.entry((*k).to_owned()).or_insert_with(|| Value::String((*v).to_owned()));
        }
        coll
    };
    let created = client.create(&url, &Value::Object(body))?;
    render::print_object(ctx.out, ctx.output, &created)
}

fn update(ctx: &mut Ctx<'_>, spec: &'static ResourceSpec, m: &ArgMatches) -> anyhow::Result<()> {
    let client = ctx.client;
    let current = locate(client, spec, m, arg(m, "id")?)?;
    let uri = uri_of(spec, &current)?.to_owned();
    let base = current.as_object().cloned().unwrap_or_default();
    let mut resolver = |r: &str, raw: &str| resolve_ref(client, r, raw);
    let body = body_from_args(spec, m, base, &mut resolver)?;
    let updated = client.update(&uri, &Value::Object(body))?;
    render::print_object(ctx.out, ctx.output, &updated)
}

fn delete(ctx: &mut Ctx<'_>, spec: &'static ResourceSpec, m: &ArgMatches) -> anyhow::Result<()> {
    let ids: Vec<&String> =
        m.get_many::<String>("id").ok_or_else(|| anyhow!("missing id"))?.collect();
    for raw in ids {
        let uri = match spec.key {
            Key::Id => object_uri(ctx.client, spec, &resolve_id(ctx.client, spec, raw)?)?,
            _ => uri_of(spec, &locate(ctx.client, spec, m, raw)?)?.to_owned(),
        };
        ctx.client.delete(&uri).map_err(|e| match e.status() {
            Some(404) => anyhow!("no {} `{raw}`", spec.name),
            _ => anyhow::Error::from(e),
        })?;
        if ctx.output == Output::Table {
            writeln!(ctx.out, "deleted {} {raw}", spec.name)?;
        }
    }
    Ok(())
}

/// The `uri` every MidoNet object carries.
fn uri_of<'v>(spec: &ResourceSpec, obj: &'v Value) -> anyhow::Result<&'v str> {
    obj.get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server's {} has no `uri`", spec.name))
}

fn link(ctx: &mut Ctx<'_>, spec: &'static ResourceSpec, m: &ArgMatches) -> anyhow::Result<()> {
    let client = ctx.client;
    let port = locate(client, spec, m, arg(m, "id")?)?;
    let peer = resolve_id(client, spec, arg(m, "peer")?)?;
    // Like midonetclient: post the whole port with `peerId` set.
    let mut body = port.as_object().cloned().unwrap_or_default();
    body.insert("peerId".into(), Value::String(peer));
    client.post_json(&link_of(&port, "link", "link")?, &Value::Object(body))?;
    let fresh = client.get(uri_of(spec, &port)?)?;
    render::print_object(ctx.out, ctx.output, &fresh)
}

fn unlink(ctx: &mut Ctx<'_>, spec: &'static ResourceSpec, m: &ArgMatches) -> anyhow::Result<()> {
    let client = ctx.client;
    let port = locate(client, spec, m, arg(m, "id")?)?;
    client.delete(&link_of(&port, "link", "link")?)?;
    let fresh = client.get(uri_of(spec, &port)?)?;
    render::print_object(ctx.out, ctx.output, &fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches_for(args: &[&str]) -> (&'static ResourceSpec, ArgMatches) {
        let spec = resources::find(args[0]).expect("resource");
        let m = resource_command(spec)
            .try_get_matches_from(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        (spec, m)
    }

    fn body(args: &[&str]) -> anyhow::Result<Value> {
        let (spec, m) = matches_for(args);
        let (_, vm) = m.subcommand().expect("verb");
        let mut r = |_: &str, v: &str| -> anyhow::Result<String> { Ok(format!("id-of-{v}")) };
        Ok(Value::Object(body_from_args(spec, vm, Map::new(), &mut r)?))
    }

    #[test]
    fn every_resource_command_is_well_formed() {
        for spec in resources::RESOURCES {
            resource_command(spec).debug_assert();
        }
    }

    #[test]
    fn rule_create_from_flags() {
        let b = body(&[
            "rule",
            "create",
            "--chain",
            "c1",
            "--type",
            "drop",
            "--nw-src",
            "10.0.0.0/8",
            "--inv-nw-src",
            "--tp-dst",
            "80:81",
            "--position",
            "1",
            "--set",
            "nwTos=4",
        ])
        .expect("valid");
        assert_eq!(
            b,
            json!({"type":"drop","position":1,"nwSrcAddress":"10.0.0.0","nwSrcLength":8,
                   "invNwSrc":true,"tpDst":{"start":80,"end":81},"nwTos":4})
        );
    }

    #[test]
    fn json_body_is_overridden_by_flags_then_set() {
        let b = body(&[
            "bridge",
            "create",
            "--json",
            r#"{"name":"a","tenantId":"t"}"#,
            "--name",
            "b",
            "--set",
            "tenantId=u",
            "--inbound-filter",
            "web",
        ])
        .expect("valid");
        assert_eq!(b, json!({"name":"b","tenantId":"u","inboundFilterId":"id-of-web"}));
    }

    #[test]
    fn keyed_entries_take_grandparent_flags() {
        let (_, m) = matches_for(&[
            "dhcp-host",
            "delete",
            "--bridge",
            "b",
            "--subnet",
            "10.0.0.0/24",
            "02:00:00:00:00:01",
        ]);
        let (_, vm) = m.subcommand().expect("verb");
        assert_eq!(opt(vm, "bridge"), Some("b"));
        assert_eq!(opt(vm, "subnet"), Some("10.0.0.0/24"));
    }

    #[test]
    fn bad_flag_value_is_reported_with_flag() {
        let e = body(&["port", "create", "--router", "r", "--network", "10.0.0.0/40"])
            .expect_err("bad length");
        assert!(format!("{e:#}").contains("--network"), "{e:#}");
    }

    #[test]
    fn interface_columns_name_model_fields() {
        use midonet_model::schema::Described;
        let model = midonet_model::HostInterface::fields();
        for (header, col) in INTERFACE_COLUMNS {
            let Col::Key(k) = col else { panic!("{header}: a plain key column expected") };
            assert!(
                model.iter().any(|f| f.name == *k),
                "{header}: `{k}` is not a HostInterface field"
            );
        }
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("t 1&x"), "t%201%26x");
        assert_eq!(encode_query("admin"), "admin");
    }
}
