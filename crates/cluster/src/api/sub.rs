//! Sub-resources: children that are top-level objects (through the generic
//! handlers), and the ones that are not (links, bindings, memberships,
//! DHCP, MAC/ARP tables, addresses, interfaces).

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

use super::ctx::{no_content, Ctx};
use super::generic::{self, check_parent, load_visible, parse_id};
use super::kinds::{Env, Kind};
use super::{Builder, D};
use crate::error::ApiError;
use crate::{txn, Cluster};

type Mr = MethodRouter<Arc<Cluster>>;

/// A child collection of top-level objects: `GET`/`POST /<parent>/{id}/<child>`.
macro_rules! children {
    ($b:expr, $path:literal, $parent:expr, $t:ty, $keep:expr) => {{
        let keep = $keep;
        let mr: Mr = get(move |ctx: Ctx, Path(id): Path<String>| async move {
            generic::list_children::<$t>(&ctx, $parent, &id, keep).await
        })
        .post(|ctx: Ctx, Path(id): Path<String>, body: Bytes| async move {
            generic::create_child::<$t>(&ctx, $parent, &id, &body).await
        });
        let d = <$t as Kind>::DESC;
        $b.route(
            $path,
            mr,
            vec![
                (
                    "get",
                    format!(
                        "List the {}s of a {}",
                        d.what,
                        $parent.segment().trim_end_matches('s')
                    ),
                    Some(d.media),
                    true,
                    200,
                    false,
                ),
                (
                    "post",
                    format!("Create a {} in a {}", d.what, $parent.segment().trim_end_matches('s')),
                    Some(d.media),
                    false,
                    201,
                    true,
                ),
            ],
        )
    }};
}

fn doc(
    method: &'static str,
    summary: &str,
    schema: Option<&'static str>,
    list: bool,
    status: u16,
    body: bool,
) -> D {
    (method, summary.to_string(), schema, list, status, body)
}

pub fn routes(b: Builder) -> Builder {
    let b = children!(b, "/bridges/{id}/ports", ObjectKind::Bridge, Port, |p: &Port, id: Uuid| p
        .device_id
        .uuid()
        == id);
    let b = children!(b, "/routers/{id}/ports", ObjectKind::Router, Port, |p: &Port, id: Uuid| p
        .device_id
        .uuid()
        == id);
    let b =
        children!(b, "/routers/{id}/routes", ObjectKind::Router, Route, |r: &Route, id: Uuid| r
            .router_id
            .uuid()
            == id);
    let b = children!(b, "/chains/{id}/rules", ObjectKind::Chain, Rule, |_: &Rule, _: Uuid| true);
    let b = children!(
        b,
        "/load_balancers/{id}/pools",
        ObjectKind::LoadBalancer,
        Pool,
        |p: &Pool, id: Uuid| p.load_balancer_id.uuid() == id
    );
    let b = children!(
        b,
        "/load_balancers/{id}/vips",
        ObjectKind::LoadBalancer,
        Vip,
        |v: &Vip, id: Uuid| v.load_balancer_id.uuid() == id
    );
    let b = children!(
        b,
        "/pools/{id}/pool_members",
        ObjectKind::Pool,
        PoolMember,
        |m: &PoolMember, id: Uuid| m.pool_id.uuid() == id
    );
    let b = children!(b, "/pools/{id}/vips", ObjectKind::Pool, Vip, |v: &Vip, id: Uuid| v
        .pool_id
        .uuid()
        == id);

    b.route(
        "/bridges/{id}/peer_ports",
        get(|ctx: Ctx, Path(id): Path<String>| async move { peer_ports(&ctx, ObjectKind::Bridge, &id).await }),
        vec![doc("get", "Interior ports of the bridge", Some("Port-v3"), true, 200, false)],
    )
    .route(
        "/routers/{id}/peer_ports",
        get(|ctx: Ctx, Path(id): Path<String>| async move { peer_ports(&ctx, ObjectKind::Router, &id).await }),
        vec![doc("get", "Interior ports of the router", Some("Port-v3"), true, 200, false)],
    )
    .route(
        "/ports/{id}/link",
        post(link).delete(unlink),
        vec![
            doc("post", "Link two ports (body: the port with peerId, or {peerId})", Some("PortLink-v1"), false, 201, true),
            doc("delete", "Unlink the port and its peer", None, false, 204, false),
        ],
    )
    .route(
        "/hosts",
        post(register_host),
        vec![doc("post", "Register a host (admin; used by agents and tests)", Some("Host-v3"), false, 201, true)],
    )
    .route(
        "/hosts/{id}/interfaces",
        get(list_interfaces).post(register_interface),
        vec![
            doc("get", "Interfaces of a host", Some("Interface-v1"), true, 200, false),
            doc("post", "Register an interface (admin; used by agents and tests)", Some("Interface-v1"), false, 201, true),
        ],
    )
    .route(
        "/hosts/{id}/interfaces/{name}",
        get(get_interface),
        vec![doc("get", "One interface of a host", Some("Interface-v1"), false, 200, false)],
    )
    .route(
        "/hosts/{id}/ports",
        get(list_bindings).post(bind),
        vec![
            doc("get", "Ports bound to interfaces of a host", Some("HostInterfacePort-v1"), true, 200, false),
            doc("post", "Bind a port to an interface of the host", Some("HostInterfacePort-v1"), false, 201, true),
        ],
    )
    .route(
        "/hosts/{id}/ports/{port}",
        get(get_binding).delete(unbind),
        vec![
            doc("get", "One binding", Some("HostInterfacePort-v1"), false, 200, false),
            doc("delete", "Unbind the port", None, false, 204, false),
        ],
    )
    .route(
        "/tunnel_zones/{id}/hosts",
        get(list_members).post(add_member),
        vec![
            doc("get", "Members of a tunnel zone", Some("TunnelZoneHost-v1"), true, 200, false),
            doc("post", "Add a host to a tunnel zone", Some("TunnelZoneHost-v1"), false, 201, true),
        ],
    )
    .route(
        "/tunnel_zones/{id}/hosts/{host}",
        get(get_member).delete(remove_member),
        vec![
            doc("get", "One member", Some("TunnelZoneHost-v1"), false, 200, false),
            doc("delete", "Remove a host from the zone", None, false, 204, false),
        ],
    )
    .route(
        "/port_groups/{id}/ports",
        get(list_group_ports).post(add_group_port),
        vec![
            doc("get", "Members of a port group", Some("PortGroupPort-v1"), true, 200, false),
            doc("post", "Add a port to the group", Some("PortGroupPort-v1"), false, 201, true),
        ],
    )
    .route(
        "/port_groups/{id}/ports/{port}",
        get(get_group_port).delete(remove_group_port),
        vec![
            doc("get", "One membership", Some("PortGroupPort-v1"), false, 200, false),
            doc("delete", "Remove the port from the group", None, false, 204, false),
        ],
    )
    .route(
        "/ports/{id}/port_groups",
        get(port_groups_of_port),
        vec![doc("get", "Groups the port is a member of", Some("PortGroupPort-v1"), true, 200, false)],
    )
    .route(
        "/ip_addr_groups/{id}/ip_addrs",
        get(|c: Ctx, Path(g): Path<String>| async move { list_addrs(&c, &g, None).await })
            .post(|c: Ctx, Path(g): Path<String>, b: Bytes| async move { add_addr(&c, &g, None, &b).await }),
        vec![
            doc("get", "Addresses of an IP address group", Some("IpAddrGroupAddr-v1"), true, 200, false),
            doc("post", "Add an address", Some("IpAddrGroupAddr-v1"), false, 201, true),
        ],
    )
    .route(
        "/ip_addr_groups/{id}/ip_addrs/{addr}",
        get(|c: Ctx, Path((g, a)): Path<(String, String)>| async move { get_addr(&c, &g, None, &a).await })
            .delete(|c: Ctx, Path((g, a)): Path<(String, String)>| async move { remove_addr(&c, &g, None, &a).await }),
        vec![
            doc("get", "One address", Some("IpAddrGroupAddr-v1"), false, 200, false),
            doc("delete", "Remove an address", None, false, 204, false),
        ],
    )
    .route(
        "/ip_addr_groups/{id}/versions/{version}/ip_addrs",
        get(|c: Ctx, Path((g, v)): Path<(String, String)>| async move { list_addrs(&c, &g, Some(&v)).await })
            .post(|c: Ctx, Path((g, v)): Path<(String, String)>, b: Bytes| async move { add_addr(&c, &g, Some(&v), &b).await }),
        vec![
            doc("get", "Addresses of one IP version", Some("IpAddrGroupAddr-v1"), true, 200, false),
            doc("post", "Add an address of that version", Some("IpAddrGroupAddr-v1"), false, 201, true),
        ],
    )
    .route(
        "/ip_addr_groups/{id}/versions/{version}/ip_addrs/{addr}",
        get(|c: Ctx, Path((g, v, a)): Path<(String, String, String)>| async move { get_addr(&c, &g, Some(&v), &a).await })
            .delete(|c: Ctx, Path((g, v, a)): Path<(String, String, String)>| async move { remove_addr(&c, &g, Some(&v), &a).await }),
        vec![
            doc("get", "One address", Some("IpAddrGroupAddr-v1"), false, 200, false),
            doc("delete", "Remove an address", None, false, 204, false),
        ],
    )
    .route(
        "/bridges/{id}/dhcp",
        get(list_subnets).post(add_subnet),
        vec![
            doc("get", "DHCP subnets of a bridge", Some("DhcpSubnet-v2"), true, 200, false),
            doc("post", "Add a DHCP subnet", Some("DhcpSubnet-v2"), false, 201, true),
        ],
    )
    .route(
        "/bridges/{id}/dhcp/{subnet}",
        get(get_subnet).put(update_subnet).delete(delete_subnet),
        vec![
            doc("get", "One DHCP subnet (id 10.0.0.0_24)", Some("DhcpSubnet-v2"), false, 200, false),
            doc("put", "Replace a DHCP subnet", Some("DhcpSubnet-v2"), false, 204, true),
            doc("delete", "Delete a DHCP subnet and its hosts", None, false, 204, false),
        ],
    )
    .route(
        "/bridges/{id}/dhcp/{subnet}/hosts",
        get(list_dhcp_hosts).post(add_dhcp_host),
        vec![
            doc("get", "Static hosts of a DHCP subnet", Some("DhcpHost-v2"), true, 200, false),
            doc("post", "Add a static host", Some("DhcpHost-v2"), false, 201, true),
        ],
    )
    .route(
        "/bridges/{id}/dhcp/{subnet}/hosts/{mac}",
        get(get_dhcp_host).put(update_dhcp_host).delete(delete_dhcp_host),
        vec![
            doc("get", "One static host (MAC with dashes)", Some("DhcpHost-v2"), false, 200, false),
            doc("put", "Replace a static host", Some("DhcpHost-v2"), false, 204, true),
            doc("delete", "Delete a static host", None, false, 204, false),
        ],
    )
    .route(
        "/bridges/{id}/mac_table",
        get(|c: Ctx, Path(b): Path<String>| async move { list_macs(&c, &b, None).await })
            .post(|c: Ctx, Path(b): Path<String>, body: Bytes| async move { add_mac(&c, &b, None, &body).await }),
        vec![
            doc("get", "Seeded MAC table of a bridge (all VLANs)", Some("MacPort-v2"), true, 200, false),
            doc("post", "Add a MAC entry", Some("MacPort-v2"), false, 201, true),
        ],
    )
    .route(
        "/bridges/{id}/mac_table/{entry}",
        get(|c: Ctx, Path((b, e)): Path<(String, String)>| async move { get_mac(&c, &b, None, &e).await })
            .delete(|c: Ctx, Path((b, e)): Path<(String, String)>| async move { remove_mac(&c, &b, None, &e).await }),
        vec![
            doc("get", "One MAC entry (mac-with-dashes_portId)", Some("MacPort-v2"), false, 200, false),
            doc("delete", "Delete a MAC entry", None, false, 204, false),
        ],
    )
    .route(
        "/bridges/{id}/vlans/{vlan}/mac_table",
        get(|c: Ctx, Path((b, v)): Path<(String, String)>| async move { list_macs(&c, &b, Some(&v)).await })
            .post(|c: Ctx, Path((b, v)): Path<(String, String)>, body: Bytes| async move { add_mac(&c, &b, Some(&v), &body).await }),
        vec![
            doc("get", "Seeded MAC table of one VLAN", Some("MacPort-v2"), true, 200, false),
            doc("post", "Add a MAC entry on the VLAN", Some("MacPort-v2"), false, 201, true),
        ],
    )
    .route(
        "/bridges/{id}/vlans/{vlan}/mac_table/{entry}",
        get(|c: Ctx, Path((b, v, e)): Path<(String, String, String)>| async move { get_mac(&c, &b, Some(&v), &e).await })
            .delete(|c: Ctx, Path((b, v, e)): Path<(String, String, String)>| async move { remove_mac(&c, &b, Some(&v), &e).await }),
        vec![
            doc("get", "One MAC entry of the VLAN", Some("MacPort-v2"), false, 200, false),
            doc("delete", "Delete a MAC entry of the VLAN", None, false, 204, false),
        ],
    )
    .route(
        "/bridges/{id}/arp_table",
        get(list_arps).post(add_arp),
        vec![
            doc("get", "Seeded ARP table of a bridge", Some("IP4Mac-v1"), true, 200, false),
            doc("post", "Add an ARP entry", Some("IP4Mac-v1"), false, 201, true),
        ],
    )
    .route(
        "/bridges/{id}/arp_table/{entry}",
        get(get_arp).delete(remove_arp),
        vec![
            doc("get", "One ARP entry (ip_mac-with-dashes)", Some("IP4Mac-v1"), false, 200, false),
            doc("delete", "Delete an ARP entry", None, false, 204, false),
        ],
    )
}

// ---------------------------------------------------------------- peer ports and links

async fn peer_ports(ctx: &Ctx, kind: ObjectKind, id: &str) -> Result<Response, ApiError> {
    let pid = parse_id(kind.segment(), id)?;
    check_parent(&mut ctx.tx(), ctx, kind, pid).await?;
    generic::list_filtered::<Port>(ctx, |p| p.device_id.uuid() == pid && p.peer_id.is_some()).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkBody {
    #[serde(default, deserialize_with = "midonet_model::lenient::opt_parse")]
    peer_id: Option<PortId>,
}

async fn link(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let id = parse_id("port", &id)?;
    let b: LinkBody = ctx.parse(&body)?;
    let peer = b
        .peer_id
        .ok_or_else(|| ApiError::field("peerId", "the port to link to is required"))?
        .uuid();
    if peer == id {
        return Err(ApiError::field("peerId", "a port cannot be linked to itself"));
    }
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let mut a: Port = load_visible(&mut tx, ctx, id).await?;
        let mut p: Port = load_visible(&mut tx, ctx, peer).await.map_err(|e| e.on("peerId"))?;
        if a.peer_id == Some(p.id) && p.peer_id == Some(a.id) {
            return Ok(());
        }
        for (x, y) in [(&a, &p), (&p, &a)] {
            if let Some(other) = x.peer_id {
                if other != y.id {
                    return Err(ApiError::conflict(format!("port {} is already linked to port {other}", x.id)).on("peerId"));
                }
            }
            if x.is_exterior() {
                return Err(ApiError::conflict(format!("port {} is bound to an interface; unbind it first", x.id)).on("peerId"));
            }
        }
        if a.device_id == p.device_id {
            return Err(ApiError::conflict("cannot link two ports of the same device").on("peerId"));
        }
        if a.is_bridge_port() && p.is_bridge_port() && a.vlan_id.is_none() && p.vlan_id.is_none() {
            return Err(ApiError::field("peerId", "two bridge ports can be linked only if one of them has a vlanId"));
        }
        a.peer_id = Some(p.id);
        p.peer_id = Some(a.id);
        tx.put(&a.store_key(), &a);
        tx.put(&p.store_key(), &p);
        tx.touch(a.id.uuid());
        tx.touch(p.id.uuid());
        Ok(())
    })?;
    let loc = ctx.uri(&format!("/ports/{id}"));
    let mut tx = ctx.tx();
    let port: Port = load_visible(&mut tx, ctx, id).await?;
    let mut env = Env::default();
    Port::load_env(&mut tx, &mut env).await?;
    Ok(ctx.created("Port-v3", &loc, generic::render(ctx, &env, &port)))
}

async fn unlink(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("port", &id)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let mut a: Port = load_visible(&mut tx, ctx, id).await?;
        if let Some(peer) = a.peer_id.take() {
            let key = ObjectKind::Port.key(&[&peer.to_string()]);
            if let Some(mut p) = tx.get::<Port>(&key).await? {
                if p.peer_id == Some(a.id) {
                    p.peer_id = None;
                    tx.put(&key, &p);
                }
            }
            tx.put(&a.store_key(), &a);
        }
        Ok(())
    })?;
    Ok(no_content())
}

// ---------------------------------------------------------------- hosts

/// Agents (and tests) register hosts: create or refresh name and addresses.
async fn register_host(ctx: Ctx, body: Bytes) -> Result<Response, ApiError> {
    ctx.require_admin("hosts")?;
    let h: Host = ctx.parse(&body)?;
    h.validate()?;
    let ctx = &ctx;
    let host = txn!(ctx.cluster, tx => {
        let mut h = h.clone();
        if h.id.is_nil() {
            h.id = HostId::random();
        }
        h.alive = false;
        let key = h.store_key();
        if let Some(old) = tx.get::<Host>(&key).await? {
            // Keep operator-set weights and limits on re-registration.
            h.flooding_proxy_weight = old.flooding_proxy_weight;
            h.container_weight = old.container_weight;
            h.container_limit = old.container_limit;
            h.enforce_container_limit = old.enforce_container_limit;
        }
        tx.put(&key, &h);
        Ok(h)
    })?;
    let mut env = Env::default();
    Host::load_env(&mut ctx.tx(), &mut env).await?;
    let loc = ctx.uri(&format!("/hosts/{}", host.id));
    Ok(ctx.created("Host-v3", &loc, generic::render(ctx, &env, &host)))
}

// ---------------------------------------------------------------- helpers

fn obj_dto<T: serde::Serialize>(obj: &T, uri: String, links: &[(&str, String)]) -> Value {
    let mut v = serde_json::to_value(obj).expect("model objects always serialize");
    if let Value::Object(m) = &mut v {
        m.insert("uri".into(), Value::String(uri));
        for (k, l) in links {
            m.insert((*k).to_string(), Value::String(l.clone()));
        }
    }
    v
}

fn prefix_of(kind: ObjectKind, parts: &[&str]) -> String {
    format!("{}/", kind.key(parts))
}

fn conflict_exists(what: String) -> ApiError {
    ApiError::conflict(format!("{what} already exists"))
}

// ---------------------------------------------------------------- host interfaces and bindings

async fn host_of(tx: &mut crate::db::Tx, ctx: &Ctx, id: &str) -> Result<Host, ApiError> {
    ctx.require_admin("hosts")?;
    let id = parse_id("host", id)?;
    load_visible::<Host>(tx, ctx, id).await
}

fn interface_dto(ctx: &Ctx, i: &HostInterface) -> Value {
    obj_dto(i, ctx.uri(&format!("/hosts/{}/interfaces/{}", i.host_id, i.name)), &[])
}

async fn list_interfaces(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let h = host_of(&mut tx, &ctx, &id).await?;
    let items: Vec<HostInterface> =
        tx.list(&prefix_of(ObjectKind::HostInterface, &[&h.id.to_string()])).await?;
    Ok(ctx.many("Interface-v1", items.iter().map(|i| interface_dto(&ctx, i)).collect()))
}

async fn get_interface(
    ctx: Ctx,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let h = host_of(&mut tx, &ctx, &id).await?;
    let i: HostInterface = tx
        .get(&ObjectKind::HostInterface.key(&[&h.id.to_string(), &name]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("interface {name} of host {}", h.id)))?;
    Ok(ctx.one("Interface-v1", interface_dto(&ctx, &i)))
}

async fn register_interface(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    ctx.require_admin("hosts")?;
    let i: HostInterface = ctx.parse(&body)?;
    i.validate()?;
    // The name is a path segment of the interface's key and URI.
    if i.name.contains('/')
        || i.name.contains(char::is_whitespace)
        || i.name.contains(char::is_control)
    {
        return Err(ApiError::field(
            "name",
            format!("`{}` is not a valid interface name", i.name.escape_debug()),
        ));
    }
    let ctx = &ctx;
    let iface = txn!(ctx.cluster, tx => {
        let h = host_of(&mut tx, ctx, &id).await?;
        let mut i = i.clone();
        i.host_id = h.id;
        tx.put(&i.store_key(), &i);
        tx.touch(h.id.uuid());
        Ok(i)
    })?;
    let dto = interface_dto(ctx, &iface);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("Interface-v1", &loc, dto))
}

fn binding_dto(ctx: &Ctx, p: &Port) -> Value {
    let host = p.host_id.map(|h| h.to_string()).unwrap_or_default();
    json!({
        "hostId": host,
        "portId": p.id,
        "interfaceName": p.interface_name,
        "uri": ctx.uri(&format!("/hosts/{host}/ports/{}", p.id)),
        "host": ctx.uri(&format!("/hosts/{host}")),
        "port": ctx.uri(&format!("/ports/{}", p.id)),
    })
}

async fn list_bindings(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let h = host_of(&mut tx, &ctx, &id).await?;
    let ports: Vec<Port> = super::kinds::all(&mut tx).await?;
    let items = ports
        .iter()
        .filter(|p| p.host_id == Some(h.id) && p.interface_name.is_some())
        .map(|p| binding_dto(&ctx, p))
        .collect();
    Ok(ctx.many("HostInterfacePort-v1", items))
}

async fn bound_port(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    host: &str,
    port: &str,
) -> Result<Port, ApiError> {
    let h = host_of(tx, ctx, host).await?;
    let pid = parse_id("port", port)?;
    let p: Port = load_visible(tx, ctx, pid).await?;
    if p.host_id != Some(h.id) || p.interface_name.is_none() {
        return Err(ApiError::not_found(format!("binding of port {pid} on host {}", h.id)));
    }
    Ok(p)
}

async fn get_binding(ctx: Ctx, Path((h, p)): Path<(String, String)>) -> Result<Response, ApiError> {
    let p = bound_port(&mut ctx.tx(), &ctx, &h, &p).await?;
    Ok(ctx.one("HostInterfacePort-v1", binding_dto(&ctx, &p)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindBody {
    #[serde(default, deserialize_with = "midonet_model::lenient::opt_parse")]
    port_id: Option<PortId>,
    #[serde(default)]
    interface_name: Option<String>,
}

async fn bind(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    ctx.require_admin("hosts")?;
    let b: BindBody = ctx.parse(&body)?;
    let pid = b.port_id.ok_or_else(|| ApiError::field("portId", "the port to bind is required"))?;
    let ifname = b
        .interface_name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::field("interfaceName", "the interface to bind to is required"))?;
    let ctx = &ctx;
    let port = txn!(ctx.cluster, tx => {
        let h = host_of(&mut tx, ctx, &id).await?;
        let mut p: Port = load_visible(&mut tx, ctx, pid.uuid()).await.map_err(|e| e.on("portId"))?;
        if let Some(peer) = p.peer_id {
            return Err(ApiError::conflict(format!("port {pid} is linked to port {peer}; unlink it first")).on("portId"));
        }
        for other in super::kinds::all::<Port>(&mut tx).await? {
            if other.id != p.id && other.host_id == Some(h.id) && other.interface_name.as_deref() == Some(ifname.as_str()) {
                return Err(ApiError::conflict(format!(
                    "interface {ifname} of host {} is already bound to port {}", h.id, other.id
                )).on("interfaceName"));
            }
        }
        p.host_id = Some(h.id);
        p.interface_name = Some(ifname.clone());
        p.validate()?;
        tx.put(&p.store_key(), &p);
        tx.touch(h.id.uuid());
        Ok(p)
    })?;
    let dto = binding_dto(ctx, &port);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("HostInterfacePort-v1", &loc, dto))
}

async fn unbind(ctx: Ctx, Path((h, p)): Path<(String, String)>) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let mut port = bound_port(&mut tx, ctx, &h, &p).await?;
        port.host_id = None;
        port.interface_name = None;
        tx.put(&port.store_key(), &port);
        Ok(())
    })?;
    Ok(no_content())
}

// ---------------------------------------------------------------- tunnel zone members

async fn zone_of(tx: &mut crate::db::Tx, ctx: &Ctx, id: &str) -> Result<TunnelZone, ApiError> {
    ctx.require_admin("tunnel zones")?;
    let id = parse_id("tunnel zone", id)?;
    load_visible::<TunnelZone>(tx, ctx, id).await
}

fn member_dto(ctx: &Ctx, m: &TunnelZoneHost) -> Value {
    obj_dto(
        m,
        ctx.uri(&format!("/tunnel_zones/{}/hosts/{}", m.tunnel_zone_id, m.host_id)),
        &[("host", ctx.uri(&format!("/hosts/{}", m.host_id)))],
    )
}

async fn list_members(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let z = zone_of(&mut tx, &ctx, &id).await?;
    let items: Vec<TunnelZoneHost> =
        tx.list(&prefix_of(ObjectKind::TunnelZoneHost, &[&z.id.to_string()])).await?;
    Ok(ctx.many("TunnelZoneHost-v1", items.iter().map(|m| member_dto(&ctx, m)).collect()))
}

async fn member(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    z: &str,
    h: &str,
) -> Result<TunnelZoneHost, ApiError> {
    let z = zone_of(tx, ctx, z).await?;
    let hid = parse_id("host", h)?;
    tx.get(&ObjectKind::TunnelZoneHost.key(&[&z.id.to_string(), &hid.to_string()]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("host {hid} in tunnel zone {}", z.id)))
}

async fn get_member(ctx: Ctx, Path((z, h)): Path<(String, String)>) -> Result<Response, ApiError> {
    let m = member(&mut ctx.tx(), &ctx, &z, &h).await?;
    Ok(ctx.one("TunnelZoneHost-v1", member_dto(&ctx, &m)))
}

async fn add_member(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    ctx.require_admin("tunnel zones")?;
    let m: TunnelZoneHost = ctx.parse(&body)?;
    let ctx = &ctx;
    let m = txn!(ctx.cluster, tx => {
        let z = zone_of(&mut tx, ctx, &id).await?;
        let mut m = m.clone();
        m.tunnel_zone_id = z.id;
        m.validate()?;
        if !tx.exists(&ObjectKind::Host.key(&[&m.host_id.to_string()])).await? {
            return Err(ApiError::not_found(format!("host {}", m.host_id)).on("hostId"));
        }
        if tx.exists(&m.store_key()).await? {
            return Err(conflict_exists(format!("host {} in tunnel zone {}", m.host_id, z.id)).on("hostId"));
        }
        tx.put(&m.store_key(), &m);
        tx.touch(z.id.uuid());
        tx.touch(m.host_id.uuid());
        Ok(m)
    })?;
    let dto = member_dto(ctx, &m);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("TunnelZoneHost-v1", &loc, dto))
}

async fn remove_member(
    ctx: Ctx,
    Path((z, h)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let m = member(&mut tx, ctx, &z, &h).await?;
        tx.delete(&m.store_key());
        Ok(())
    })?;
    Ok(no_content())
}

// ---------------------------------------------------------------- port group members

fn group_port_dto(ctx: &Ctx, g: PortGroupId, p: PortId) -> Value {
    json!({
        "portGroupId": g,
        "portId": p,
        "uri": ctx.uri(&format!("/port_groups/{g}/ports/{p}")),
        "portGroup": ctx.uri(&format!("/port_groups/{g}")),
        "port": ctx.uri(&format!("/ports/{p}")),
    })
}

async fn group_of(tx: &mut crate::db::Tx, ctx: &Ctx, id: &str) -> Result<PortGroup, ApiError> {
    let id = parse_id("port group", id)?;
    load_visible::<PortGroup>(tx, ctx, id).await
}

async fn list_group_ports(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let g = group_of(&mut tx, &ctx, &id).await?;
    let ports: Vec<Port> = super::kinds::all(&mut tx).await?;
    let items = ports
        .iter()
        .filter(|p| p.port_group_ids.contains(&g.id))
        .map(|p| group_port_dto(&ctx, g.id, p.id))
        .collect();
    Ok(ctx.many("PortGroupPort-v1", items))
}

async fn group_member(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    g: &str,
    p: &str,
) -> Result<(PortGroup, Port), ApiError> {
    let g = group_of(tx, ctx, g).await?;
    let pid = parse_id("port", p)?;
    let port: Port = load_visible(tx, ctx, pid).await?;
    if !port.port_group_ids.contains(&g.id) {
        return Err(ApiError::not_found(format!("port {pid} in port group {}", g.id)));
    }
    Ok((g, port))
}

async fn get_group_port(
    ctx: Ctx,
    Path((g, p)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (g, p) = group_member(&mut ctx.tx(), &ctx, &g, &p).await?;
    Ok(ctx.one("PortGroupPort-v1", group_port_dto(&ctx, g.id, p.id)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupPortBody {
    #[serde(default, deserialize_with = "midonet_model::lenient::opt_parse")]
    port_id: Option<PortId>,
}

async fn add_group_port(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: GroupPortBody = ctx.parse(&body)?;
    let pid = b.port_id.ok_or_else(|| ApiError::field("portId", "the port to add is required"))?;
    let ctx = &ctx;
    let gid = txn!(ctx.cluster, tx => {
        let g = group_of(&mut tx, ctx, &id).await?;
        let mut p: Port = load_visible(&mut tx, ctx, pid.uuid()).await.map_err(|e| e.on("portId"))?;
        if p.port_group_ids.contains(&g.id) {
            return Err(conflict_exists(format!("port {pid} in port group {}", g.id)).on("portId"));
        }
        p.port_group_ids.push(g.id);
        tx.put(&p.store_key(), &p);
        tx.touch(g.id.uuid());
        Ok(g.id)
    })?;
    let dto = group_port_dto(ctx, gid, pid);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("PortGroupPort-v1", &loc, dto))
}

async fn remove_group_port(
    ctx: Ctx,
    Path((g, p)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let (g, mut port) = group_member(&mut tx, ctx, &g, &p).await?;
        port.port_group_ids.retain(|x| *x != g.id);
        tx.put(&port.store_key(), &port);
        Ok(())
    })?;
    Ok(no_content())
}

async fn port_groups_of_port(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let pid = parse_id("port", &id)?;
    let p: Port = load_visible(&mut ctx.tx(), &ctx, pid).await?;
    let items = p.port_group_ids.iter().map(|g| group_port_dto(&ctx, *g, p.id)).collect();
    Ok(ctx.many("PortGroupPort-v1", items))
}

// ---------------------------------------------------------------- IP address group addresses

fn parse_version(v: Option<&str>) -> Result<Option<u8>, ApiError> {
    match v {
        None => Ok(None),
        Some("4") => Ok(Some(4)),
        Some("6") => Ok(Some(6)),
        Some(other) => Err(ApiError::not_found(format!("IP version {other}"))),
    }
}

fn addr_dto(ctx: &Ctx, a: &IpAddrGroupAddr, version_path: bool) -> Value {
    let uri = if version_path {
        format!("/ip_addr_groups/{}/versions/{}/ip_addrs/{}", a.ip_addr_group_id, a.version, a.addr)
    } else {
        format!("/ip_addr_groups/{}/ip_addrs/{}", a.ip_addr_group_id, a.addr)
    };
    obj_dto(
        a,
        ctx.uri(&uri),
        &[("ipAddrGroup", ctx.uri(&format!("/ip_addr_groups/{}", a.ip_addr_group_id)))],
    )
}

async fn addr_group(tx: &mut crate::db::Tx, ctx: &Ctx, id: &str) -> Result<IpAddrGroup, ApiError> {
    let id = parse_id("IP address group", id)?;
    load_visible::<IpAddrGroup>(tx, ctx, id).await
}

async fn list_addrs(ctx: &Ctx, g: &str, v: Option<&str>) -> Result<Response, ApiError> {
    let version = parse_version(v)?;
    let mut tx = ctx.tx();
    let g = addr_group(&mut tx, ctx, g).await?;
    let items: Vec<IpAddrGroupAddr> =
        tx.list(&prefix_of(ObjectKind::IpAddrGroupAddr, &[&g.id.to_string()])).await?;
    let out = items
        .iter()
        .filter(|a| version.is_none_or(|v| a.version == v))
        .map(|a| addr_dto(ctx, a, version.is_some()))
        .collect();
    Ok(ctx.many("IpAddrGroupAddr-v1", out))
}

async fn one_addr(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    g: &str,
    v: Option<&str>,
    a: &str,
) -> Result<IpAddrGroupAddr, ApiError> {
    let version = parse_version(v)?;
    let g = addr_group(tx, ctx, g).await?;
    let addr: std::net::IpAddr =
        a.parse().map_err(|_| ApiError::not_found(format!("address {a}")))?;
    let item: IpAddrGroupAddr = tx
        .get(&ObjectKind::IpAddrGroupAddr.key(&[&g.id.to_string(), &addr.to_string()]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("address {addr} in group {}", g.id)))?;
    if version.is_some_and(|v| v != item.version) {
        return Err(ApiError::not_found(format!(
            "address {addr} in IPv{} of group {}",
            version.unwrap_or(0),
            g.id
        )));
    }
    Ok(item)
}

async fn get_addr(ctx: &Ctx, g: &str, v: Option<&str>, a: &str) -> Result<Response, ApiError> {
    let item = one_addr(&mut ctx.tx(), ctx, g, v, a).await?;
    Ok(ctx.one("IpAddrGroupAddr-v1", addr_dto(ctx, &item, v.is_some())))
}

async fn add_addr(ctx: &Ctx, g: &str, v: Option<&str>, body: &[u8]) -> Result<Response, ApiError> {
    let version = parse_version(v)?;
    let a: IpAddrGroupAddr = ctx.parse(body)?;
    let item = txn!(ctx.cluster, tx => {
        let grp = addr_group(&mut tx, ctx, g).await?;
        let mut a = a.clone();
        a.ip_addr_group_id = grp.id;
        let actual = if a.addr.is_ipv4() { 4 } else { 6 };
        if version.is_some_and(|v| v != actual) {
            return Err(ApiError::field("addr", format!("{} is not an IPv{} address", a.addr, version.unwrap_or(0))));
        }
        a.validate()?;
        a.version = actual;
        if tx.exists(&a.store_key()).await? {
            return Err(conflict_exists(format!("address {} in group {}", a.addr, grp.id)).on("addr"));
        }
        tx.put(&a.store_key(), &a);
        tx.touch(grp.id.uuid());
        Ok(a)
    })?;
    let dto = addr_dto(ctx, &item, version.is_some());
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("IpAddrGroupAddr-v1", &loc, dto))
}

async fn remove_addr(ctx: &Ctx, g: &str, v: Option<&str>, a: &str) -> Result<Response, ApiError> {
    txn!(ctx.cluster, tx => {
        let item = one_addr(&mut tx, ctx, g, v, a).await?;
        tx.delete(&item.store_key());
        Ok(())
    })?;
    Ok(no_content())
}

// ---------------------------------------------------------------- DHCP

async fn bridge_of(tx: &mut crate::db::Tx, ctx: &Ctx, id: &str) -> Result<Bridge, ApiError> {
    let id = parse_id("bridge", id)?;
    load_visible::<Bridge>(tx, ctx, id).await
}

/// `10.0.0.0_24` → (prefix, length), or 404.
fn parse_subnet(s: &str) -> Result<(std::net::Ipv4Addr, u8), ApiError> {
    let nf = || ApiError::not_found(format!("DHCP subnet {s} (ids look like 10.0.0.0_24)"));
    let (p, l) = s.split_once('_').ok_or_else(nf)?;
    Ok((p.parse().map_err(|_| nf())?, l.parse().map_err(|_| nf())?))
}

fn subnet_dto(ctx: &Ctx, s: &DhcpSubnet) -> Value {
    let uri = ctx.uri(&format!("/bridges/{}/dhcp/{}", s.bridge_id, s.key()));
    obj_dto(
        s,
        uri.clone(),
        &[
            ("hosts", format!("{uri}/hosts")),
            ("bridge", ctx.uri(&format!("/bridges/{}", s.bridge_id))),
        ],
    )
}

async fn list_subnets(ctx: Ctx, Path(b): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let br = bridge_of(&mut tx, &ctx, &b).await?;
    let items: Vec<DhcpSubnet> =
        tx.list(&prefix_of(ObjectKind::DhcpSubnet, &[&br.id.to_string()])).await?;
    Ok(ctx.many("DhcpSubnet-v2", items.iter().map(|s| subnet_dto(&ctx, s)).collect()))
}

async fn subnet_of(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    b: &str,
    s: &str,
) -> Result<DhcpSubnet, ApiError> {
    let br = bridge_of(tx, ctx, b).await?;
    let (p, l) = parse_subnet(s)?;
    let key = format!("{p}_{l}");
    tx.get(&ObjectKind::DhcpSubnet.key(&[&br.id.to_string(), &key]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("DHCP subnet {key} of bridge {}", br.id)))
}

async fn get_subnet(ctx: Ctx, Path((b, s)): Path<(String, String)>) -> Result<Response, ApiError> {
    let sub = subnet_of(&mut ctx.tx(), &ctx, &b, &s).await?;
    Ok(ctx.one("DhcpSubnet-v2", subnet_dto(&ctx, &sub)))
}

async fn add_subnet(ctx: Ctx, Path(b): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let sub: DhcpSubnet = ctx.parse(&body)?;
    let ctx = &ctx;
    let sub = txn!(ctx.cluster, tx => {
        let br = bridge_of(&mut tx, ctx, &b).await?;
        let mut sub = sub.clone();
        sub.bridge_id = br.id;
        sub.validate()?;
        sub.subnet_prefix = std::net::Ipv4Addr::from(
            u32::from(sub.subnet_prefix) & midonet_model::port::prefix_mask(sub.subnet_length),
        );
        if tx.exists(&sub.store_key()).await? {
            return Err(conflict_exists(format!("DHCP subnet {} of bridge {}", sub.key(), br.id)).on("subnetPrefix"));
        }
        tx.put(&sub.store_key(), &sub);
        tx.touch(br.id.uuid());
        Ok(sub)
    })?;
    let dto = subnet_dto(ctx, &sub);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("DhcpSubnet-v2", &loc, dto))
}

async fn update_subnet(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: DhcpSubnet = ctx.parse(&body)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = subnet_of(&mut tx, ctx, &b, &s).await?;
        let mut new = new.clone();
        new.bridge_id = old.bridge_id;
        if new.key() != old.key() {
            return Err(ApiError::field("subnetPrefix", format!(
                "the subnet of {} cannot change (got {}); delete and create instead", old.key(), new.key()
            )));
        }
        new.validate()?;
        tx.put(&new.store_key(), &new);
        Ok(())
    })?;
    Ok(no_content())
}

async fn delete_subnet(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = subnet_of(&mut tx, ctx, &b, &s).await?;
        for (k, _) in tx.list_raw(&prefix_of(ObjectKind::DhcpHost, &[&old.bridge_id.to_string(), &old.key()])).await? {
            tx.delete(&k);
        }
        tx.delete(&old.store_key());
        Ok(())
    })?;
    Ok(no_content())
}

fn dhcp_host_dto(ctx: &Ctx, h: &DhcpHost) -> Value {
    let uri = ctx.uri(&format!(
        "/bridges/{}/dhcp/{}/hosts/{}",
        h.bridge_id,
        h.subnet,
        h.mac_addr.to_uri_string()
    ));
    obj_dto(h, uri, &[])
}

async fn list_dhcp_hosts(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let sub = subnet_of(&mut tx, &ctx, &b, &s).await?;
    let items: Vec<DhcpHost> = tx
        .list(&prefix_of(ObjectKind::DhcpHost, &[&sub.bridge_id.to_string(), &sub.key()]))
        .await?;
    Ok(ctx.many("DhcpHost-v2", items.iter().map(|h| dhcp_host_dto(&ctx, h)).collect()))
}

async fn dhcp_host_of(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    b: &str,
    s: &str,
    mac: &str,
) -> Result<DhcpHost, ApiError> {
    let sub = subnet_of(tx, ctx, b, s).await?;
    let mac: MacAddr = mac.parse().map_err(|_| ApiError::not_found(format!("DHCP host {mac}")))?;
    tx.get(&ObjectKind::DhcpHost.key(&[
        &sub.bridge_id.to_string(),
        &sub.key(),
        &mac.to_uri_string(),
    ]))
    .await?
    .ok_or_else(|| ApiError::not_found(format!("DHCP host {mac} in subnet {}", sub.key())))
}

async fn get_dhcp_host(
    ctx: Ctx,
    Path((b, s, m)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let h = dhcp_host_of(&mut ctx.tx(), &ctx, &b, &s, &m).await?;
    Ok(ctx.one("DhcpHost-v2", dhcp_host_dto(&ctx, &h)))
}

fn check_host_in_subnet(h: &DhcpHost, sub: &DhcpSubnet) -> Result<(), ApiError> {
    if !midonet_model::port::prefix_contains(sub.subnet_prefix, sub.subnet_length, h.ip_addr) {
        return Err(ApiError::field(
            "ipAddr",
            format!("{} is not inside {}/{}", h.ip_addr, sub.subnet_prefix, sub.subnet_length),
        ));
    }
    Ok(())
}

async fn add_dhcp_host(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let h: DhcpHost = ctx.parse(&body)?;
    let ctx = &ctx;
    let h = txn!(ctx.cluster, tx => {
        let sub = subnet_of(&mut tx, ctx, &b, &s).await?;
        let mut h = h.clone();
        h.bridge_id = sub.bridge_id;
        h.subnet = sub.key();
        h.validate()?;
        check_host_in_subnet(&h, &sub)?;
        if tx.exists(&h.store_key()).await? {
            return Err(conflict_exists(format!("DHCP host {} in subnet {}", h.mac_addr, sub.key())).on("macAddr"));
        }
        tx.put(&h.store_key(), &h);
        Ok(h)
    })?;
    let dto = dhcp_host_dto(ctx, &h);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("DhcpHost-v2", &loc, dto))
}

async fn update_dhcp_host(
    ctx: Ctx,
    Path((b, s, m)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: DhcpHost = ctx.parse(&body)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = dhcp_host_of(&mut tx, ctx, &b, &s, &m).await?;
        let sub = subnet_of(&mut tx, ctx, &b, &s).await?;
        let mut new = new.clone();
        if new.mac_addr != old.mac_addr {
            return Err(ApiError::field("macAddr", "the MAC of a DHCP host cannot change; delete and create instead"));
        }
        new.bridge_id = old.bridge_id;
        new.subnet = old.subnet.clone();
        new.validate()?;
        check_host_in_subnet(&new, &sub)?;
        tx.put(&new.store_key(), &new);
        Ok(())
    })?;
    Ok(no_content())
}

async fn delete_dhcp_host(
    ctx: Ctx,
    Path((b, s, m)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = dhcp_host_of(&mut tx, ctx, &b, &s, &m).await?;
        tx.delete(&old.store_key());
        Ok(())
    })?;
    Ok(no_content())
}

// ---------------------------------------------------------------- MAC and ARP tables

fn parse_vlan(v: Option<&str>) -> Result<Option<u16>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) => match s.parse::<u16>() {
            Ok(v) if v <= 4094 => Ok(Some(v)),
            _ => Err(ApiError::not_found(format!("VLAN {s}"))),
        },
    }
}

fn mac_dto(ctx: &Ctx, e: &MacTableEntry) -> Value {
    let tail = format!("mac_table/{}_{}", e.mac_addr.to_uri_string(), e.port_id);
    let uri = if e.vlan_id == 0 {
        format!("/bridges/{}/{tail}", e.bridge_id)
    } else {
        format!("/bridges/{}/vlans/{}/{tail}", e.bridge_id, e.vlan_id)
    };
    obj_dto(e, ctx.uri(&uri), &[])
}

async fn list_macs(ctx: &Ctx, b: &str, v: Option<&str>) -> Result<Response, ApiError> {
    let vlan = parse_vlan(v)?;
    let mut tx = ctx.tx();
    let br = bridge_of(&mut tx, ctx, b).await?;
    let items: Vec<MacTableEntry> =
        tx.list(&prefix_of(ObjectKind::MacTableEntry, &[&br.id.to_string()])).await?;
    let out = items
        .iter()
        .filter(|e| vlan.is_none_or(|v| e.vlan_id == v))
        .map(|e| mac_dto(ctx, e))
        .collect();
    Ok(ctx.many("MacPort-v2", out))
}

async fn one_mac(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    b: &str,
    v: Option<&str>,
    entry: &str,
) -> Result<MacTableEntry, ApiError> {
    let vlan = parse_vlan(v)?.unwrap_or(0);
    let br = bridge_of(tx, ctx, b).await?;
    let nf = || {
        ApiError::not_found(format!("MAC entry {entry} (ids look like 02-00-00-00-00-01_<portId>)"))
    };
    let (mac, port) = entry.rsplit_once('_').ok_or_else(nf)?;
    let mac: MacAddr = mac.parse().map_err(|_| nf())?;
    let port: PortId = port.parse().map_err(|_| nf())?;
    let e: MacTableEntry = tx
        .get(&ObjectKind::MacTableEntry.key(&[
            &br.id.to_string(),
            &vlan.to_string(),
            &mac.to_uri_string(),
        ]))
        .await?
        .ok_or_else(nf)?;
    if e.port_id != port {
        return Err(nf());
    }
    Ok(e)
}

async fn get_mac(ctx: &Ctx, b: &str, v: Option<&str>, entry: &str) -> Result<Response, ApiError> {
    let e = one_mac(&mut ctx.tx(), ctx, b, v, entry).await?;
    Ok(ctx.one("MacPort-v2", mac_dto(ctx, &e)))
}

async fn add_mac(ctx: &Ctx, b: &str, v: Option<&str>, body: &[u8]) -> Result<Response, ApiError> {
    let vlan = parse_vlan(v)?;
    let e: MacTableEntry = ctx.parse(body)?;
    let e = txn!(ctx.cluster, tx => {
        let br = bridge_of(&mut tx, ctx, b).await?;
        let mut e = e.clone();
        e.bridge_id = br.id;
        if let Some(v) = vlan {
            if e.vlan_id != 0 && e.vlan_id != v {
                return Err(ApiError::field("vlanId", format!("the URI says VLAN {v}, the body {}", e.vlan_id)));
            }
            e.vlan_id = v;
        }
        e.validate()?;
        let port: Option<Port> = tx.get(&ObjectKind::Port.key(&[&e.port_id.to_string()])).await?;
        if port.as_ref().and_then(Port::bridge_id) != Some(br.id) {
            return Err(ApiError::field("portId", format!("port {} is not a port of bridge {}", e.port_id, br.id)));
        }
        if tx.exists(&e.store_key()).await? {
            return Err(conflict_exists(format!("MAC {} on VLAN {} of bridge {}", e.mac_addr, e.vlan_id, br.id)).on("macAddr"));
        }
        tx.put(&e.store_key(), &e);
        tx.touch(br.id.uuid());
        tx.touch(e.port_id.uuid());
        Ok(e)
    })?;
    let dto = mac_dto(ctx, &e);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("MacPort-v2", &loc, dto))
}

async fn remove_mac(
    ctx: &Ctx,
    b: &str,
    v: Option<&str>,
    entry: &str,
) -> Result<Response, ApiError> {
    txn!(ctx.cluster, tx => {
        let e = one_mac(&mut tx, ctx, b, v, entry).await?;
        tx.delete(&e.store_key());
        Ok(())
    })?;
    Ok(no_content())
}

fn arp_dto(ctx: &Ctx, e: &ArpTableEntry) -> Value {
    obj_dto(
        e,
        ctx.uri(&format!("/bridges/{}/arp_table/{}_{}", e.bridge_id, e.ip, e.mac.to_uri_string())),
        &[],
    )
}

async fn list_arps(ctx: Ctx, Path(b): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let br = bridge_of(&mut tx, &ctx, &b).await?;
    let items: Vec<ArpTableEntry> =
        tx.list(&prefix_of(ObjectKind::ArpTableEntry, &[&br.id.to_string()])).await?;
    Ok(ctx.many("IP4Mac-v1", items.iter().map(|e| arp_dto(&ctx, e)).collect()))
}

async fn one_arp(
    tx: &mut crate::db::Tx,
    ctx: &Ctx,
    b: &str,
    entry: &str,
) -> Result<ArpTableEntry, ApiError> {
    let br = bridge_of(tx, ctx, b).await?;
    let nf = || {
        ApiError::not_found(format!("ARP entry {entry} (ids look like 10.0.0.5_02-00-00-00-00-01)"))
    };
    let (ip, mac) = entry.split_once('_').ok_or_else(nf)?;
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| nf())?;
    let mac: MacAddr = mac.parse().map_err(|_| nf())?;
    let e: ArpTableEntry = tx
        .get(&ObjectKind::ArpTableEntry.key(&[&br.id.to_string(), &ip.to_string()]))
        .await?
        .ok_or_else(nf)?;
    if e.mac != mac {
        return Err(nf());
    }
    Ok(e)
}

async fn get_arp(ctx: Ctx, Path((b, e)): Path<(String, String)>) -> Result<Response, ApiError> {
    let e = one_arp(&mut ctx.tx(), &ctx, &b, &e).await?;
    Ok(ctx.one("IP4Mac-v1", arp_dto(&ctx, &e)))
}

async fn add_arp(ctx: Ctx, Path(b): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let e: ArpTableEntry = ctx.parse(&body)?;
    let ctx = &ctx;
    let e = txn!(ctx.cluster, tx => {
        let br = bridge_of(&mut tx, ctx, &b).await?;
        let mut e = e.clone();
        e.bridge_id = br.id;
        e.validate()?;
        if tx.exists(&e.store_key()).await? {
            return Err(conflict_exists(format!("ARP entry for {} on bridge {}", e.ip, br.id)).on("ip"));
        }
        tx.put(&e.store_key(), &e);
        tx.touch(br.id.uuid());
        Ok(e)
    })?;
    let dto = arp_dto(ctx, &e);
    let loc = dto["uri"].as_str().unwrap_or_default().to_string();
    Ok(ctx.created("IP4Mac-v1", &loc, dto))
}

async fn remove_arp(ctx: Ctx, Path((b, e)): Path<(String, String)>) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let e = one_arp(&mut tx, ctx, &b, &e).await?;
        tx.delete(&e.store_key());
        Ok(())
    })?;
    Ok(no_content())
}
