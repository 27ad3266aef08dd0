//! Seeds of the targets fed API requests: REST and Neutron bodies, and the
//! agents' gRPC messages.

use midonet_proto::pb;
use prost::Message;

use super::{seed, Seed};

pub(super) fn neutron_api() -> Vec<Seed> {
    let op = |method: &str, path: &str| {
        let i = crate::neutron_api::OPS
            .iter()
            .position(|(m, p)| *m == method && *p == path)
            .expect("an op");
        u8::try_from(i).expect("few ops")
    };
    let seeds: Vec<(&str, (&str, &str), &str)> = vec![
        (
            "network",
            ("POST", "/v2.0/networks"),
            r#"{"network":{"name":"n2","admin_state_up":true,"mtu":1400,"shared":false}}"#,
        ),
        (
            "networks_bulk",
            ("POST", "/v2.0/networks"),
            r#"{"networks":[{"name":"a"},{"name":"b","router:external":"True"}]}"#,
        ),
        (
            "network_unknown_attr",
            ("POST", "/v2.0/networks"),
            r#"{"network":{"name":"x","bogus":1}}"#,
        ),
        (
            "network_update",
            ("PUT", "/v2.0/networks/{net}"),
            r#"{"network":{"name":"renamed","port_security_enabled":false}}"#,
        ),
        (
            "subnet",
            ("POST", "/v2.0/subnets"),
            r#"{"subnet":{"network_id":"{net}","ip_version":4,"cidr":"10.1.0.0/24","allocation_pools":[{"start":"10.1.0.10","end":"10.1.0.20"}],"dns_nameservers":["8.8.8.8"],"host_routes":[{"destination":"172.16.0.0/12","nexthop":"10.1.0.254"}]}}"#,
        ),
        (
            "subnet_v6",
            ("POST", "/v2.0/subnets"),
            r#"{"subnet":{"network_id":"{net}","ip_version":6,"cidr":"2001:db8::/64","ipv6_ra_mode":"slaac","ipv6_address_mode":"slaac"}}"#,
        ),
        (
            "subnet_overlap",
            ("POST", "/v2.0/subnets"),
            r#"{"subnet":{"network_id":"{net}","ip_version":4,"cidr":"10.0.0.128/25"}}"#,
        ),
        (
            "subnet_update",
            ("PUT", "/v2.0/subnets/{subnet}"),
            r#"{"subnet":{"gateway_ip":null,"enable_dhcp":false}}"#,
        ),
        (
            "port",
            ("POST", "/v2.0/ports"),
            r#"{"port":{"network_id":"{net}","fixed_ips":[{"subnet_id":"{subnet}","ip_address":"10.0.0.50"}],"security_groups":["{sg}"],"allowed_address_pairs":[{"ip_address":"10.0.0.0/28"}],"extra_dhcp_opts":[{"opt_name":"mtu","opt_value":"1400"}],"binding:host_id":"h1","binding:profile":{"interface_name":"tap0"}}}"#,
        ),
        (
            "port_taken_ip",
            ("POST", "/v2.0/ports"),
            r#"{"port":{"network_id":"{net}","fixed_ips":[{"ip_address":"10.0.0.2"}]}}"#,
        ),
        (
            "port_update",
            ("PUT", "/v2.0/ports/{port}"),
            r#"{"port":{"security_groups":[],"port_security_enabled":false,"mac_address":"fa:16:3e:00:00:01"}}"#,
        ),
        (
            "router",
            ("POST", "/v2.0/routers"),
            r#"{"router":{"name":"r2","external_gateway_info":{"network_id":"{ext}","enable_snat":false,"external_fixed_ips":[{"subnet_id":"{ext_subnet}","ip_address":"172.24.4.77"}]}}}"#,
        ),
        (
            "router_routes",
            ("PUT", "/v2.0/routers/{router}"),
            r#"{"router":{"routes":[{"destination":"192.168.0.0/16","nexthop":"172.24.4.254"}]}}"#,
        ),
        (
            "router_clear_gateway",
            ("PUT", "/v2.0/routers/{router}"),
            r#"{"router":{"external_gateway_info":{}}}"#,
        ),
        (
            "add_interface",
            ("PUT", "/v2.0/routers/{router}/add_router_interface"),
            r#"{"subnet_id":"{subnet}"}"#,
        ),
        (
            "add_interface_port",
            ("PUT", "/v2.0/routers/{router}/add_router_interface"),
            r#"{"port_id":"{port}"}"#,
        ),
        (
            "remove_interface",
            ("PUT", "/v2.0/routers/{router}/remove_router_interface"),
            r#"{"subnet_id":"{subnet}"}"#,
        ),
        (
            "floatingip",
            ("POST", "/v2.0/floatingips"),
            r#"{"floatingip":{"floating_network_id":"{ext}","floating_ip_address":"172.24.4.99"}}"#,
        ),
        (
            "floatingip_port",
            ("POST", "/v2.0/floatingips"),
            r#"{"floatingip":{"floating_network_id":"{ext}","port_id":"{port}"}}"#,
        ),
        (
            "security_group",
            ("POST", "/v2.0/security-groups"),
            r#"{"security_group":{"name":"web","description":"web"}}"#,
        ),
        (
            "security_group_update",
            ("PUT", "/v2.0/security-groups/{sg}"),
            r#"{"security_group":{"name":"renamed"}}"#,
        ),
        (
            "rule_tcp",
            ("POST", "/v2.0/security-group-rules"),
            r#"{"security_group_rule":{"security_group_id":"{sg}","direction":"ingress","ethertype":"IPv4","protocol":"tcp","port_range_min":22,"port_range_max":22,"remote_ip_prefix":"10.0.0.5/24"}}"#,
        ),
        (
            "rule_icmp",
            ("POST", "/v2.0/security-group-rules"),
            r#"{"security_group_rule":{"security_group_id":"{sg}","direction":"egress","protocol":"icmp","port_range_min":8,"port_range_max":0,"remote_group_id":"{sg}"}}"#,
        ),
        ("quota", ("PUT", "/v2.0/quotas/{project}"), r#"{"quota":{"network":1,"port":-1}}"#),
        (
            "list_query",
            ("GET", "/v2.0/networks"),
            "name=n&fields=id&fields=name&sort_key=name&sort_dir=desc&limit=1",
        ),
        (
            "list_marker",
            ("GET", "/v2.0/ports"),
            "limit=1&marker={port}&page_reverse=True&fixed_ips=ip_address%3D10.0.0.2",
        ),
        ("delete_subnet_in_use", ("DELETE", "/v2.0/subnets/{subnet}"), ""),
        ("delete_network_in_use", ("DELETE", "/v2.0/networks/{net}"), ""),
    ];
    seeds.into_iter().map(|(n, (m, p), b)| seed(n, &[op(m, p)], b.as_bytes())).collect()
}

pub(super) fn rest_body() -> Vec<Seed> {
    use midonet_model::ObjectKind;
    let kind = |k: ObjectKind| {
        u8::try_from(ObjectKind::ALL.iter().position(|x| *x == k).expect("a kind")).expect("few")
    };
    let id = "6f1c1d2e-0000-4000-8000-000000000001";
    let id2 = "6f1c1d2e-0000-4000-8000-000000000002";
    let bodies: Vec<(&str, ObjectKind, String)> = vec![
        ("bridge", ObjectKind::Bridge, r#"{"name":"b","tenantId":"t1","adminStateUp":true}"#.into()),
        ("bridge_lenient", ObjectKind::Bridge, format!(r#"{{"name":"b","adminStateUp":null,"inboundFilterId":"{id}","inboundMirrorIds":null}}"#)),
        ("bridge_long_name", ObjectKind::Bridge, format!(r#"{{"name":"{}"}}"#, "n".repeat(256))),
        ("router", ObjectKind::Router, r#"{"name":"r","asNumber":"65000"}"#.into()),
        ("bridge_port", ObjectKind::Port, format!(r#"{{"type":"Bridge","deviceId":"{id}","vlanId":"10"}}"#)),
        ("router_port", ObjectKind::Port, format!(r#"{{"type":"Router","deviceId":"{id}","portAddress":"192.168.1.1","networkAddress":"192.168.1.0","networkLength":24,"portMac":"02:00:00:aa:bb:cc"}}"#)),
        ("port_both_kinds", ObjectKind::Port, format!(r#"{{"type":"Bridge","vlanId":5,"portAddress":"10.0.0.1","hostId":"{id}","interfaceName":"tap0","peerId":"{id2}"}}"#)),
        ("route", ObjectKind::Route, format!(r#"{{"routerId":"{id}","srcNetworkAddr":"0.0.0.0","srcNetworkLength":"0","dstNetworkAddr":"10.9.0.0","dstNetworkLength":"16","nextHopPort":"{id2}","nextHopGateway":"192.168.1.254","weight":"100"}}"#)),
        ("route_bad_length", ObjectKind::Route, r#"{"dstNetworkAddr":"10.0.0.0","dstNetworkLength":33,"srcNetworkAddr":"0.0.0.0","srcNetworkLength":0,"type":"Reject"}"#.into()),
        ("chain", ObjectKind::Chain, format!(r#"{{"name":"c","ruleIds":["{id}"]}}"#)),
        ("rule_accept", ObjectKind::Rule, r#"{"type":"accept","nwProto":"6","tpDst":{"start":"22","end":"22"},"invNwDst":null}"#.into()),
        ("rule_dnat", ObjectKind::Rule, r#"{"type":"dnat","flowAction":"accept","natTargets":[{"addressFrom":"10.0.0.5","addressTo":"10.0.0.5","portFrom":80,"portTo":80}],"nwDstAddress":"192.0.2.10","nwDstLength":32}"#.into()),
        ("rule_jump", ObjectKind::Rule, format!(r#"{{"type":"jump","jumpChainId":"{id}","position":2,"dlType":"2048","dlSrc":"02:00:00:00:00:01","dlSrcMask":"ff:ff:ff:00:00:00"}}"#)),
        ("rule_redirect", ObjectKind::Rule, format!(r#"{{"type":"l2_transform","flowAction":"redirect","targetPortId":"{id}","ingress":true,"failOpen":"false","pushVlan":"7"}}"#)),
        ("rule_bad_range", ObjectKind::Rule, r#"{"type":"drop","tpSrc":{"start":9,"end":1},"fragmentPolicy":"header","icmpDataSrcIp":"10.0.0.0","icmpDataSrcLength":8}"#.into()),
        ("port_group", ObjectKind::PortGroup, r#"{"name":"pg","stateful":"true"}"#.into()),
        ("ip_addr_group", ObjectKind::IpAddrGroup, r#"{"name":"ipg","tenantId":"t"}"#.into()),
        ("ip_addr_group_addr", ObjectKind::IpAddrGroupAddr, format!(r#"{{"ipAddrGroupId":"{id}","addr":"10.0.0.5","version":"4"}}"#)),
        ("ip_addr_group_addr6", ObjectKind::IpAddrGroupAddr, r#"{"addr":"2001:db8::5","version":4}"#.into()),
        ("host", ObjectKind::Host, format!(r#"{{"id":"{id}","name":"h1","addresses":["10.0.0.1"],"floodingProxyWeight":"5","containerLimit":-2}}"#)),
        ("host_interface", ObjectKind::HostInterface, format!(r#"{{"hostId":"{id}","name":"veth0","mtu":1500,"mac":"02:00:00:00:00:09","status":3,"type":"Virtual","addresses":["10.0.0.1","fe80::1"]}}"#)),
        ("host_interface_long", ObjectKind::HostInterface, r#"{"name":"a-very-long-interface-name"}"#.into()),
        ("tunnel_zone", ObjectKind::TunnelZone, r#"{"name":"tz","type":"vxlan"}"#.into()),
        ("tunnel_zone_gre", ObjectKind::TunnelZone, r#"{"name":" ","type":"gre"}"#.into()),
        ("tunnel_zone_host", ObjectKind::TunnelZoneHost, format!(r#"{{"tunnelZoneId":"{id}","hostId":"{id2}","ipAddress":"192.168.0.1"}}"#)),
        ("dhcp_subnet", ObjectKind::DhcpSubnet, format!(r#"{{"bridgeId":"{id}","subnetPrefix":"10.0.0.0","subnetLength":"24","defaultGateway":"10.0.0.1","dnsServerAddrs":["8.8.8.8"],"interfaceMTU":1400,"opt121Routes":[{{"destinationPrefix":"172.16.0.0","destinationLength":"16","gatewayAddr":"10.0.0.254"}}],"enabled":null}}"#)),
        ("dhcp_host", ObjectKind::DhcpHost, format!(r#"{{"bridgeId":"{id}","subnet":"10.0.0.0_24","macAddr":"02:00:00:00:00:01","ipAddr":"10.0.0.5","name":"vm1","extraDhcpOpts":[{{"optName":"mtu","optValue":"9000"}}]}}"#)),
        ("mac_entry", ObjectKind::MacTableEntry, format!(r#"{{"bridgeId":"{id}","macAddr":"02:00:00:00:00:01","portId":"{id2}","vlanId":"0"}}"#)),
        ("arp_entry", ObjectKind::ArpTableEntry, format!(r#"{{"bridgeId":"{id}","ip":"10.0.0.5","mac":"02:00:00:00:00:05"}}"#)),
        ("load_balancer", ObjectKind::LoadBalancer, format!(r#"{{"routerId":"{id}","adminStateUp":"true"}}"#)),
        ("pool", ObjectKind::Pool, format!(r#"{{"loadBalancerId":"{id}","protocol":"TCP","lbMethod":"ROUND_ROBIN"}}"#)),
        ("pool_member", ObjectKind::PoolMember, format!(r#"{{"poolId":"{id}","address":"10.0.0.5","protocolPort":"80","weight":1}}"#)),
        ("vip", ObjectKind::Vip, format!(r#"{{"loadBalancerId":"{id}","poolId":"{id2}","address":"192.0.2.10","protocolPort":80,"sessionPersistence":"SOURCE_IP"}}"#)),
        ("health_monitor", ObjectKind::HealthMonitor, r#"{"type":"TCP","delay":"3","timeout":1,"maxRetries":"2"}"#.into()),
        ("mirror", ObjectKind::Mirror, format!(r#"{{"toPortId":"{id}","conditions":[{{"nwProto":1,"invNwProto":null}},{{"dlType":"0x0800"}}]}}"#)),
        ("not_json", ObjectKind::Bridge, "{not json".into()),
        ("empty", ObjectKind::Port, String::new()),
        ("array", ObjectKind::Rule, "[1,2]".into()),
    ];
    bodies.into_iter().map(|(n, k, b)| seed(n, &[kind(k)], b.as_bytes())).collect()
}

pub(super) fn grpc_agent() -> Vec<Seed> {
    let h = "6f1c1d2e-0000-4000-8000-000000000001".to_string();
    let b = "6f1c1d2e-0000-4000-8000-0000000000b1".to_string();
    let iface = |name: &str, mtu: u32| pb::Interface {
        name: name.into(),
        mac: "02:00:00:00:00:01".into(),
        mtu,
        up: true,
        has_link: true,
        addresses: vec!["10.0.0.1/24".into(), "fe80::1/64".into()],
        r#type: "Physical".into(),
        endpoint: "DATAPATH".into(),
    };
    let reg = |name: &str, ifaces: Vec<pb::Interface>, ttl: i64| pb::RegisterHostRequest {
        host_id: h.clone(),
        name: name.into(),
        addresses: vec!["192.168.0.1/24".into(), "junk".into()],
        interfaces: ifaces,
        ttl_secs: ttl,
        datapath: String::new(),
    };
    let mac = |vlan: u32, m: &str, port: &str, delete: bool| pb::PublishMacRequest {
        session: 7,
        bridge_id: b.clone(),
        vlan,
        mac: m.into(),
        port_id: port.into(),
        delete,
    };
    let arp = |ip: &str, m: &str, delete: bool| pb::PublishArpRequest {
        session: 7,
        device_id: b.clone(),
        ip: ip.into(),
        mac: m.into(),
        delete,
    };
    let snat = |ip: &str, block: u32, release: bool| pb::ClaimSnatBlockRequest {
        session: 7,
        host_id: h.clone(),
        device_id: b.clone(),
        ip: ip.into(),
        block,
        release,
    };
    let active = |port: &str, on: bool| pb::SetPortActiveRequest {
        session: 7,
        host_id: h.clone(),
        port_id: port.into(),
        active: on,
    };
    let msgs: Vec<(&str, u8, Vec<u8>)> = vec![
        (
            "subscribe_snapshot",
            0,
            pb::SubscribeRequest { from_revision: 0, host_id: h.clone() }.encode_to_vec(),
        ),
        (
            "subscribe_resume",
            0,
            pb::SubscribeRequest { from_revision: 42, host_id: h.clone() }.encode_to_vec(),
        ),
        (
            "register",
            1,
            reg("host-1", vec![iface("eth0", 1500), iface("veth-vm1", 1450)], 10).encode_to_vec(),
        ),
        (
            "register_dup_names",
            1,
            reg("host-1", vec![iface("eth0", 1500), iface("eth0", 9000)], 0).encode_to_vec(),
        ),
        (
            "register_bad_names",
            1,
            reg("h", vec![iface("", 1), iface("a/b", 1), iface("much-too-long-name", 1)], 1000)
                .encode_to_vec(),
        ),
        (
            "register_datapath",
            1,
            pb::RegisterHostRequest {
                datapath: "userspace".into(),
                ..reg("host-1", vec![iface("eth0", 1500)], 10)
            }
            .encode_to_vec(),
        ),
        (
            "register_bad_datapath",
            1,
            pb::RegisterHostRequest { datapath: "ovs".into(), ..reg("host-1", vec![], 10) }
                .encode_to_vec(),
        ),
        (
            "register_bad_id",
            1,
            pb::RegisterHostRequest { host_id: "not-a-uuid".into(), ..Default::default() }
                .encode_to_vec(),
        ),
        ("keepalive", 2, pb::KeepAliveRequest { session: 7, host_id: h.clone() }.encode_to_vec()),
        (
            "report",
            3,
            pb::ReportInterfacesRequest {
                session: 7,
                host_id: h.clone(),
                interfaces: vec![iface("eth1", 1500)],
            }
            .encode_to_vec(),
        ),
        ("port_active", 4, active(&h, true).encode_to_vec()),
        ("port_inactive", 4, active(&h, false).encode_to_vec()),
        ("port_bad", 4, active("p", true).encode_to_vec()),
        ("mac", 5, mac(0, "02:00:00:00:00:09", &h, false).encode_to_vec()),
        ("mac_vlan_delete", 5, mac(100, "02:AA:00:00:00:09", "", true).encode_to_vec()),
        ("mac_bad_vlan", 5, mac(4096, "02:00:00:00:00:09", &h, false).encode_to_vec()),
        ("mac_bad_mac", 5, mac(1, "02:00:00:00:00", &h, false).encode_to_vec()),
        ("arp", 6, arp("10.0.0.9", "02:00:00:00:00:09", false).encode_to_vec()),
        ("arp_delete", 6, arp("10.0.0.9", "", true).encode_to_vec()),
        ("arp_v6", 6, arp("fe80::1", "02:00:00:00:00:09", false).encode_to_vec()),
        ("snat_claim", 7, snat("203.0.113.1", 17, false).encode_to_vec()),
        ("snat_release", 7, snat("203.0.113.1", 1023, true).encode_to_vec()),
        ("snat_bad_block", 7, snat("203.0.113.1", 1024, false).encode_to_vec()),
        ("snat_v6", 7, snat("2001:db8::1", 3, false).encode_to_vec()),
        (
            "lb_checker_claim",
            8,
            pb::ClaimHealthCheckRequest {
                session: 7,
                host_id: h.clone(),
                load_balancer_id: b.clone(),
                release: false,
            }
            .encode_to_vec(),
        ),
        (
            "lb_member_down",
            9,
            pb::ReportMemberStatusRequest {
                session: 7,
                host_id: h.clone(),
                load_balancer_id: b.clone(),
                member_id: b.clone(),
                status: "DOWN".into(),
            }
            .encode_to_vec(),
        ),
        (
            "lb_member_bad_status",
            9,
            pb::ReportMemberStatusRequest {
                session: 7,
                host_id: h.clone(),
                load_balancer_id: b.clone(),
                member_id: b.clone(),
                status: "MAYBE".into(),
            }
            .encode_to_vec(),
        ),
    ];
    msgs.into_iter().map(|(n, sel, m)| seed(n, &[sel], &m)).collect()
}
