//! The demo topology, created through the REST API exactly as a user or an
//! orchestrator would (so the sandbox also exercises the API):
//!
//! ```text
//!            sandbox-router
//!        10.0.1.1 /     \ 10.0.2.1          router ports, linked to
//!   sandbox-br1           sandbox-br2       one bridge port each
//!   │ port per VM         │ port per VM     bound to the VM veth's host end
//!   vm0 (h0) vm1 (h1) …   vm2 (h0) vm3 (h1) …
//! ```
//!
//! Creating a router port makes the cluster add only the Local /32 route to
//! its address (as MidoNet does), so the route to each bridge's subnet is
//! posted here.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use midonet_client::Client;
use serde_json::{json, Value};

use super::layout::{Layout, VmPlan, BRIDGES};
use super::state::{BridgeRecord, HostRecord, VmRecord};

/// The `id` field of an object the API returned.
pub fn id_of(v: &Value) -> Result<String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the API returned an object without id: {v}"))
}

/// Waits until the API answers its root document.
pub fn wait_api(
    c: &Client,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match c.root() {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e)
                    .context(format!("the cluster API did not come up within {timeout:?}"))
            }
            Err(_) => {}
        }
        alive()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every host id is registered (and alive, if the API says).
pub fn wait_hosts(
    c: &Client,
    ids: &[String],
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut missing = Vec::new();
        for id in ids {
            match c.get(&format!("hosts/{id}")) {
                Ok(h) if h.get("alive").and_then(Value::as_bool) != Some(false) => {}
                _ => missing.push(id.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("hosts not registered (or not alive) within {timeout:?}: {}", missing.join(", "));
        }
        alive()?;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A VXLAN tunnel zone with every host at its underlay address.
pub fn tunnel_zone(c: &Client, hosts: &[HostRecord]) -> Result<String> {
    let tz = c
        .create("tunnel_zones", &json!({"name": "sandbox", "type": "vxlan"}))
        .context("creating the tunnel zone")?;
    let tz_id = id_of(&tz)?;
    for h in hosts {
        let ip = h.underlay_ip.map(|i| i.to_string());
        c.post_json(
            &format!("tunnel_zones/{tz_id}/hosts"),
            &json!({"hostId": h.id, "ipAddress": ip}),
        )
        .with_context(|| format!("adding host {} to the tunnel zone", h.ns))?;
    }
    Ok(tz_id)
}

/// The router, the two bridges and the router ports linked to them.
pub fn router_and_bridges(c: &Client) -> Result<(String, Vec<BridgeRecord>)> {
    let router =
        c.create("routers", &json!({"name": "sandbox-router"})).context("creating the router")?;
    let router_id = id_of(&router)?;
    let mut bridges = Vec::new();
    for (name, net) in BRIDGES {
        let br = c
            .create("bridges", &json!({"name": name}))
            .with_context(|| format!("creating bridge {name}"))?;
        let br_id = id_of(&br)?;
        let network = Ipv4Addr::new(net[0], net[1], net[2], 0);
        let gateway = Ipv4Addr::new(net[0], net[1], net[2], 1);
        let rp = c
            .create(
                &format!("routers/{router_id}/ports"),
                &json!({
                    "type": "Router",
                    "portAddress": gateway.to_string(),
                    "networkAddress": network.to_string(),
                    "networkLength": 24,
                }),
            )
            .with_context(|| format!("creating the router port for {name}"))?;
        let rp_id = id_of(&rp)?;
        let bp = c
            .create(&format!("bridges/{br_id}/ports"), &json!({"type": "Bridge"}))
            .context("creating a bridge port")?;
        let bp_id = id_of(&bp)?;
        c.post_json(&format!("ports/{rp_id}/link"), &json!({"peerId": bp_id}))
            .with_context(|| format!("linking the router to {name}"))?;
        c.create(
            &format!("routers/{router_id}/routes"),
            &json!({
                "srcNetworkAddr": "0.0.0.0",
                "srcNetworkLength": 0,
                "dstNetworkAddr": network.to_string(),
                "dstNetworkLength": 24,
                "nextHopPort": rp_id,
            }),
        )
        .with_context(|| format!("routing {network}/24 to {name}"))?;
        bridges.push(BridgeRecord {
            name: name.to_owned(),
            id: br_id,
            cidr: format!("{network}/24"),
            gateway,
            router_port_id: rp_id,
            router_port_mac: rp
                .get("portMac")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok((router_id, bridges))
}

/// The same topology through the Neutron API: a network and subnet per
/// bridge (gateway .1), a router with an interface on each. `mido` reads
/// back the router ports the translation made.
pub fn neutron_router_and_networks(
    n: &Client,
    mido: &Client,
) -> Result<(String, Vec<BridgeRecord>)> {
    let r = n
        .post_json("routers", &json!({"router": {"name": "sandbox-router"}}))
        .context("creating the router (Neutron)")?;
    let router_id = id_of(&r["router"])?;
    let mut bridges = Vec::new();
    for (name, net) in BRIDGES {
        let network = Ipv4Addr::new(net[0], net[1], net[2], 0);
        let gateway = Ipv4Addr::new(net[0], net[1], net[2], 1);
        let nw = n
            .post_json("networks", &json!({"network": {"name": name}}))
            .with_context(|| format!("creating network {name}"))?;
        let net_id = id_of(&nw["network"])?;
        let sub = n
            .post_json(
                "subnets",
                &json!({"subnet": {"network_id": net_id, "ip_version": 4, "name": name,
                    "cidr": format!("{network}/24"), "gateway_ip": gateway.to_string()}}),
            )
            .with_context(|| format!("creating the subnet of {name}"))?;
        let sub_id = id_of(&sub["subnet"])?;
        n.put_json(
            &format!("routers/{router_id}/add_router_interface"),
            &json!({"subnet_id": sub_id}),
        )
        .with_context(|| format!("adding {name} to the router"))?;
        let ports = mido.list(&format!("routers/{router_id}/ports"))?;
        let rp = ports
            .iter()
            .find(|p| p.get("portAddress").and_then(Value::as_str) == Some(&gateway.to_string()))
            .with_context(|| format!("no router port with {gateway} after adding {name}"))?;
        bridges.push(BridgeRecord {
            name: name.to_owned(),
            id: net_id,
            cidr: format!("{network}/24"),
            gateway,
            router_port_id: id_of(rp)?,
            router_port_mac: rp
                .get("portMac")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok((router_id, bridges))
}

/// A Neutron port per VM, with the VM's address and MAC, bound to its
/// host's veth end by `binding:host_id` and `binding:profile`.
pub fn neutron_vm_ports(
    n: &Client,
    l: &Layout,
    hosts: &[HostRecord],
    bridges: &[BridgeRecord],
) -> Result<Vec<VmRecord>> {
    let mut out = Vec::new();
    for vm in &l.vms {
        let br = &bridges[vm.bridge];
        let host = &hosts[vm.host];
        let port = n
            .post_json(
                "ports",
                &json!({"port": {"network_id": br.id, "name": vm.ns,
                    "mac_address": vm.mac.to_ascii_lowercase(),
                    "fixed_ips": [{"ip_address": vm.ip.to_string()}],
                    "binding:host_id": host.id,
                    "binding:profile": {"interface_name": vm.host_if}}}),
            )
            .with_context(|| format!("creating the port of {} (Neutron)", vm.ns))?;
        out.push(record(vm, id_of(&port["port"])?));
    }
    Ok(out)
}

/// A bridge port per VM, bound on the VM's host to the host end of its veth.
pub fn vm_ports(
    c: &Client,
    l: &Layout,
    hosts: &[HostRecord],
    bridges: &[BridgeRecord],
) -> Result<Vec<VmRecord>> {
    let mut out = Vec::new();
    for vm in &l.vms {
        let br = &bridges[vm.bridge];
        let host = &hosts[vm.host];
        let port = c
            .create(&format!("bridges/{}/ports", br.id), &json!({"type": "Bridge"}))
            .with_context(|| format!("creating the port of {}", vm.ns))?;
        let port_id = id_of(&port)?;
        bind(c, &host.id, &port_id, &vm.host_if)
            .with_context(|| format!("binding the port of {}", vm.ns))?;
        out.push(record(vm, port_id));
    }
    Ok(out)
}

/// What the sandbox records of a VM and the port it is plugged into.
fn record(vm: &VmPlan, port_id: String) -> VmRecord {
    VmRecord {
        ns: vm.ns.clone(),
        host: vm.host,
        bridge: vm.bridge,
        ip: vm.ip,
        gateway: vm.gateway,
        mac: vm.mac.clone(),
        vm_if: vm.vm_if.clone(),
        host_if: vm.host_if.clone(),
        port_id,
    }
}

/// `POST /hosts/{host}/ports {portId, interfaceName}`.
pub fn bind(c: &Client, host_id: &str, port_id: &str, ifname: &str) -> Result<()> {
    c.post_json(
        &format!("hosts/{host_id}/ports"),
        &json!({"portId": port_id, "interfaceName": ifname}),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_reads_the_id_or_says_what_came_back() {
        assert_eq!(id_of(&json!({"id": "abc"})).expect("id"), "abc");
        let e = id_of(&json!({"name": "x"})).expect_err("no id");
        assert!(e.to_string().contains("without id"), "{e}");
    }
}
