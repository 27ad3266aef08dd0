//! A Neutron API over a lab's store, and VMs plugged into Neutron ports:
//! for the tests and the benchmark that drive agents through Neutron.

use std::net::Ipv4Addr;

use midonet_testkit::{ns_exec, Vm, VmSpec};
use serde_json::{json, Value};

use super::env::Env;

/// The Neutron API of a cluster over the lab's store, on 127.0.0.1.
pub struct Neutron {
    base: String,
    agent: ureq::Agent,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Neutron {
    pub fn start(env: &Env) -> Neutron {
        let mut cfg = midonet_cluster::Config::default();
        cfg.auth.enabled = false;
        let cluster = midonet_cluster::Cluster::new(cfg, env.cluster.store.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = env.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        env.rt.spawn(async move {
            let _ = midonet_cluster::serve(listener, cluster, async move {
                let _ = rx.await;
            })
            .await;
        });
        Neutron {
            base: format!("http://{addr}/neutron/v2.0"),
            agent: ureq::AgentBuilder::new().build(),
            _stop: tx,
        }
    }

    /// The endpoint root (`http://127.0.0.1:port/neutron`), as a client
    /// configures it.
    pub fn endpoint(&self) -> String {
        self.base.trim_end_matches("/v2.0").to_string()
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("X-Auth-Token", "notused");
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let r = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = r.status();
        (status, r.into_json().unwrap_or(Value::Null))
    }

    #[track_caller]
    pub fn post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.call("POST", path, Some(body));
        assert_eq!(s, 201, "POST {path}: {v}");
        v
    }

    #[track_caller]
    pub fn put(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.call("PUT", path, Some(body));
        assert_eq!(s, 200, "PUT {path}: {v}");
        v
    }

    pub fn get(&self, path: &str) -> Value {
        let (s, v) = self.call("GET", path, None);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// A network with one IPv4 subnet: (network id, subnet id).
    pub fn network(&self, name: &str, cidr: &str, extra: Value) -> (String, String) {
        let mut n = json!({"name": name});
        for (k, v) in extra.as_object().expect("object") {
            n[k] = v.clone();
        }
        let net = self.post("/networks", json!({ "network": n }));
        let nid = net["network"]["id"].as_str().expect("id").to_string();
        let sub = self.post(
            "/subnets",
            json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": cidr, "enable_dhcp": false}}),
        );
        (nid, sub["subnet"]["id"].as_str().expect("id").to_string())
    }
}

/// What a VM needs to know of its Neutron port.
pub struct PortInfo {
    pub id: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// Creates a port on `net` bound to host `i` (by `binding:profile`'s
/// interface name, or by Nova's `tap` convention when `tap`), with
/// `extra` attributes, and plugs a VM into it.
pub fn vm_port(
    env: &mut Env,
    api: &Neutron,
    i: usize,
    name: &str,
    net: &str,
    extra: Value,
    tap: bool,
) -> (Vm, String) {
    let mut body =
        json!({"network_id": net, "name": name, "binding:host_id": env.hosts[i].id.to_string()});
    if !tap {
        body["binding:profile"] = json!({"interface_name": host_if_name(env, name)});
    }
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    let p = api.post("/ports", json!({ "port": body }));
    let subnet = api.get(&format!(
        "/subnets/{}",
        p["port"]["fixed_ips"][0]["subnet_id"].as_str().expect("subnet")
    ));
    let info = PortInfo {
        id: p["port"]["id"].as_str().expect("id").to_string(),
        ip: p["port"]["fixed_ips"][0]["ip_address"].as_str().expect("ip").parse().expect("v4"),
        mac: p["port"]["mac_address"].as_str().expect("mac").to_string(),
        prefix_len: subnet["subnet"]["cidr"]
            .as_str()
            .and_then(|c| c.split('/').nth(1))
            .and_then(|l| l.parse().ok())
            .expect("cidr"),
        gateway: subnet["subnet"]["gateway_ip"].as_str().and_then(|g| g.parse().ok()),
    };
    let vm = plug(env, i, name, &info, tap);
    (vm, info.id)
}

/// The name of the host-side interface of VM `name` (what a port's
/// `binding:profile.interface_name` names).
pub fn host_if_name(env: &Env, name: &str) -> String {
    env.lab.name(&format!("{name}h")).expect("name")
}

/// A VM on host `i` plugged into the port `info` describes: its host-side
/// interface is [`host_if_name`], or Nova's `tap` + 11 characters of the
/// port id when `tap`.
pub fn plug(env: &mut Env, i: usize, name: &str, info: &PortInfo, tap: bool) -> Vm {
    // The lab prefixes link names; Nova's `tap` + 11 characters of the id
    // is given whole, so it is created outside the prefix scheme.
    let host_if = if tap { format!("tap{}", &info.id[..11]) } else { format!("{name}h") };
    let host_ns = env.hosts[i].ns.clone();
    let cidr = format!("{}/{}", info.ip, info.prefix_len);
    let spec = VmSpec {
        name,
        host_ns: &host_ns,
        host_if: &host_if,
        vm_if: name,
        ip_cidr: &cidr,
        mac: Some(&info.mac),
        mtu: Some(1400),
        gateway: info.gateway,
    };
    let vm =
        if tap { env.lab.add_vm_exact_host_if(&spec) } else { env.lab.add_vm(&spec) }.expect("vm");
    ns_exec(&vm.ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).expect("sysctl");
    vm
}
