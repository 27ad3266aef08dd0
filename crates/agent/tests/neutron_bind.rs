//! Benchmark (not a test: `harness = false`, `test = false`, so the test
//! command does not run it): the time from a Neutron port's binding
//! (`PUT binding:host_id` answered) to traffic reaching its VM, from a VM
//! on the other host sending a datagram every millisecond. Run by
//! `bench/neutron_bind.sh` (`SAMPLES`, default 30); prints p50/p99/max.

mod common;

use std::time::{Duration, Instant};

use common::env::{prerequisites, udp_cutover, Env, Provider};
use common::neutron::{vm_port, Neutron};
use midonet_testkit::VmSpec;
use serde_json::json;

fn main() {
    if !prerequisites("neutron_bind") {
        return;
    }
    let samples: usize = std::env::var("SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let mut env = Env::new(Provider::Ebpf);
    let api = Neutron::start(&env);
    let (net, _) = api.network("n", "10.30.0.0/24", json!({}));
    let (a, _) = vm_port(&mut env, &api, 0, "a", &net, json!({}), false);
    let host1 = env.hosts[1].id.to_string();
    let mut after_answer = Vec::new();
    let mut total = Vec::new();
    for i in 0..samples {
        let name = format!("b{i}");
        let p = api.post("/ports", json!({"port": {"network_id": net, "name": name}}));
        let pid = p["port"]["id"].as_str().expect("id").to_string();
        let ip = p["port"]["fixed_ips"][0]["ip_address"].as_str().expect("ip").to_string();
        let mac = p["port"]["mac_address"].as_str().expect("mac").to_string();
        let host_ns = env.hosts[1].ns.clone();
        let host_if = format!("{name}h");
        let cidr = format!("{ip}/24");
        let b = env
            .lab
            .add_vm(&VmSpec {
                name: &name,
                host_ns: &host_ns,
                host_if: &host_if,
                vm_if: &name,
                ip_cidr: &cidr,
                mac: Some(&mac),
                mtu: Some(1400),
                gateway: None,
            })
            .expect("vm");
        let ifname = env.lab.name(&host_if).expect("name");
        let answered = std::cell::Cell::new(Duration::ZERO);
        let d = udp_cutover(&a, &b, false, || {
            let t = Instant::now();
            api.put(
                &format!("/ports/{pid}"),
                json!({"port": {"binding:host_id": host1, "binding:profile": {"interface_name": ifname}}}),
            );
            answered.set(t.elapsed());
        });
        total.push(d);
        after_answer.push(d.saturating_sub(answered.get()));
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "bind_to_traffic: {samples} binds; after the API's answer p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
         from the request p50 {:.2} ms",
        pct(&mut after_answer, 0.5),
        pct(&mut after_answer, 0.99),
        pct(&mut after_answer, 1.0),
        pct(&mut total, 0.5),
    );
}
