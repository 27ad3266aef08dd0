//! No client input reaches a 500: every field of a valid body of every
//! writable collection is replaced by values of the wrong type or range,
//! and the answer must be a 2xx or a 4xx.
mod common;
use common::{host, Api};
use midonet_cluster::testing::TestCluster;
use serde_json::{json, Value};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no string {k} in {v}")).to_string()
}

fn bad_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(""),
        json!("x/y z"),
        json!(-1),
        json!(1e300),
        json!(18446744073709551615u64),
        json!([]),
        json!([1, "a", null]),
        json!({}),
        json!({"start": "a", "end": -5}),
        json!(true),
        json!("00000000-0000-0000-0000-000000000000"),
        json!("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        json!("255.255.255.255"),
        json!("::"),
        json!("ff:ff:ff:ff:ff:ff"),
        json!("\u{0}\u{7f}\u{10ffff}"),
    ]
}

#[test]
fn mutated_bodies_never_give_a_server_error() {
    let c = TestCluster::start("memory:", true);
    let api = Api::new(&c.url(), Some(c.admin_token()));
    let b = api.create("/bridges", &json!({"name": "b"}));
    let r = api.create("/routers", &json!({"name": "r"}));
    let bp = api.create(&s(&b, "ports"), &json!({}));
    let rp = api.create(
        &s(&r, "ports"),
        &json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24}),
    );
    let ch = api.create("/chains", &json!({"name": "c"}));
    let pg = api.create("/port_groups", &json!({"name": "pg"}));
    let ipg = api.create("/ip_addr_groups", &json!({"name": "ipg"}));
    let tz = api.create("/tunnel_zones", &json!({"name": "tz"}));
    let lb = api.create("/load_balancers", &json!({}));
    let pool = api.create(&s(&lb, "pools"), &json!({}));
    let sub =
        api.create(&s(&b, "dhcpSubnets"), &json!({"subnetPrefix": "10.0.0.0", "subnetLength": 24}));
    let h = host(&api, "h");
    let cases: Vec<(String, Value)> = vec![
        (
            "/bridges".into(),
            json!({"name": "b", "tenantId": "t", "adminStateUp": true, "inboundFilterId": ch["id"], "inboundMirrorIds": []}),
        ),
        (
            "/routers".into(),
            json!({"name": "r", "asNumber": 1, "forwardChainId": ch["id"], "loadBalancerId": lb["id"]}),
        ),
        ("/chains".into(), json!({"name": "c"})),
        ("/port_groups".into(), json!({"name": "pg", "stateful": true})),
        ("/ip_addr_groups".into(), json!({"name": "g"})),
        ("/tunnel_zones".into(), json!({"name": "tz", "type": "vxlan"})),
        ("/load_balancers".into(), json!({"routerId": r["id"], "adminStateUp": true})),
        (
            "/health_monitors".into(),
            json!({"type": "TCP", "delay": 5, "timeout": 5, "maxRetries": 3}),
        ),
        ("/mirrors".into(), json!({"toPortId": bp["id"], "conditions": [{"nwProto": 6}]})),
        (
            "/pools".into(),
            json!({"loadBalancerId": lb["id"], "protocol": "TCP", "lbMethod": "ROUND_ROBIN"}),
        ),
        (
            "/pool_members".into(),
            json!({"poolId": pool["id"], "address": "10.0.0.9", "protocolPort": 80, "weight": 1}),
        ),
        (
            "/vips".into(),
            json!({"loadBalancerId": lb["id"], "poolId": pool["id"], "address": "192.0.2.1", "protocolPort": 80, "sessionPersistence": "SOURCE_IP"}),
        ),
        (
            "/hosts".into(),
            json!({"name": "h2", "addresses": ["10.0.0.7"], "floodingProxyWeight": 1}),
        ),
        (
            s(&b, "ports"),
            json!({"type": "Bridge", "vlanId": 5, "inboundFilterId": ch["id"], "portGroupIds": [pg["id"]]}),
        ),
        (
            s(&r, "ports"),
            json!({"type": "Router", "portAddress": "10.1.0.1", "networkAddress": "10.1.0.0", "networkLength": 24, "portMac": "02:00:00:00:00:01"}),
        ),
        (
            s(&r, "routes"),
            json!({"type": "Normal", "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0, "dstNetworkAddr": "10.5.0.0", "dstNetworkLength": 16, "nextHopPort": rp["id"], "nextHopGateway": "10.0.0.2", "weight": 10}),
        ),
        (
            s(&ch, "rules"),
            json!({"type": "dnat", "position": 1, "nwProto": 6, "tpDst": {"start": 80, "end": 80}, "flowAction": "accept", "natTargets": [{"addressFrom": "10.0.0.5", "addressTo": "10.0.0.5", "portFrom": 8080, "portTo": 8080}], "portGroup": pg["id"], "ipAddrGroupSrc": ipg["id"], "dlSrc": "02:00:00:00:00:01", "dlSrcMask": "ffff.ffff.0000", "nwSrcAddress": "10.0.0.0", "nwSrcLength": 8, "fragmentPolicy": "header"}),
        ),
        (
            s(&b, "dhcpSubnets"),
            json!({"subnetPrefix": "10.9.0.0", "subnetLength": 24, "defaultGateway": "10.9.0.1", "dnsServerAddrs": ["8.8.8.8"], "interfaceMTU": 1400, "opt121Routes": [{"destinationPrefix": "10.10.0.0", "destinationLength": 16, "gatewayAddr": "10.9.0.1"}]}),
        ),
        (
            s(&sub, "hosts"),
            json!({"macAddr": "02:00:00:00:00:05", "ipAddr": "10.0.0.5", "name": "vm", "extraDhcpOpts": [{"optName": "mtu", "optValue": "1400"}]}),
        ),
        (
            s(&b, "macTable"),
            json!({"macAddr": "02:00:00:00:00:07", "portId": bp["id"], "vlanId": 0}),
        ),
        (s(&b, "arpTable"), json!({"ip": "10.0.0.7", "mac": "02:00:00:00:00:07"})),
        (s(&ipg, "addrs"), json!({"addr": "10.0.0.1", "version": 4})),
        (s(&tz, "hosts"), json!({"hostId": h, "ipAddress": "192.168.0.1"})),
        (s(&pg, "ports"), json!({"portId": bp["id"]})),
        (format!("/hosts/{h}/ports"), json!({"portId": bp["id"], "interfaceName": "tap0"})),
        (
            format!("/hosts/{h}/interfaces"),
            json!({"name": "eth9", "mtu": 1500, "mac": "02:00:00:00:00:09", "addresses": ["10.0.0.9"]}),
        ),
        (s(&rp, "link"), json!({"peerId": bp["id"]})),
    ];
    let mut requests = 0;
    for (path, valid) in &cases {
        let keys: Vec<String> = valid.as_object().expect("object").keys().cloned().collect();
        for k in &keys {
            for bad in bad_values() {
                let mut body = valid.clone();
                body[k.as_str()] = bad.clone();
                let r = api.post(path, &body);
                requests += 1;
                assert!(r.status < 500, "POST {path} with {k}={bad}: {} {}", r.status, r.text);
                if r.status >= 400 {
                    assert!(r.body["message"].is_string(), "error without a message: {}", r.text);
                }
            }
            // And the field missing altogether.
            let mut body = valid.clone();
            body.as_object_mut().expect("object").remove(k);
            let r = api.post(path, &body);
            assert!(r.status < 500, "POST {path} without {k}: {} {}", r.status, r.text);
        }
    }
    // Whole-body garbage, on POST and PUT.
    for (path, _) in &cases {
        for body in ["", "null", "[]", "1", "\"s\"", "{", "{\"a\":", "\u{feff}{}"] {
            let r = api.raw("POST", path, &[("Content-Type", "application/json")], Some(body));
            assert!(r.status < 500, "POST {path} {body:?}: {} {}", r.status, r.text);
        }
    }
    for uri in [
        s(&b, "uri"),
        s(&r, "uri"),
        s(&bp, "uri"),
        s(&rp, "uri"),
        s(&ch, "uri"),
        format!("/hosts/{h}"),
        s(&sub, "uri"),
        s(&pool, "uri"),
    ] {
        let dto = api.ok(&uri);
        for k in dto.as_object().expect("object").keys().cloned().collect::<Vec<_>>() {
            for bad in bad_values() {
                let mut body = dto.clone();
                body[k.as_str()] = bad.clone();
                let r = api.put(&uri, &body);
                requests += 1;
                assert!(r.status < 500, "PUT {uri} with {k}={bad}: {} {}", r.status, r.text);
            }
        }
    }
    assert!(requests > 1000, "{requests}");
}
