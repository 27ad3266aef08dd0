//! The OpenAPI 3 document, generated from the registered routes
//! ([`super::RouteDoc`]) and from a sample of each object kind.
//!
//! Schemas are derived from a serialized sample value (property names and
//! JSON types), not from a schema library: the model's serde attributes
//! (lenient numbers, aliases) are richer than any derive would express, and
//! the field names are what clients need most.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::RouteDoc;

fn schema_of(v: &Value) -> Value {
    match v {
        Value::Null => json!({}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => json!({"type": "integer"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(a) => {
            json!({"type": "array", "items": a.first().map_or(json!({}), schema_of)})
        }
        Value::Object(m) => {
            let props: Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect();
            json!({"type": "object", "properties": props})
        }
    }
}

fn component_name(media: &str) -> String {
    media.replace(['-', '.'], "_")
}

/// Samples of the sub-objects that are not generic kinds.
fn extra_samples() -> Vec<(&'static str, Value)> {
    vec![
        (
            "DhcpSubnet-v2",
            json!({"subnetPrefix": "10.0.0.0", "subnetLength": 24, "defaultGateway": "10.0.0.1", "serverAddr": "10.0.0.2", "dnsServerAddrs": ["8.8.8.8"], "interfaceMTU": 1450, "opt121Routes": [], "enabled": true, "uri": "", "hosts": ""}),
        ),
        (
            "DhcpHost-v2",
            json!({"macAddr": "02:00:00:00:00:01", "ipAddr": "10.0.0.5", "name": "vm1", "extraDhcpOpts": [], "uri": ""}),
        ),
        (
            "MacPort-v2",
            json!({"macAddr": "02:00:00:00:00:01", "portId": "00000000-0000-0000-0000-000000000000", "vlanId": 0, "uri": ""}),
        ),
        ("IP4Mac-v1", json!({"ip": "10.0.0.5", "mac": "02:00:00:00:00:01", "uri": ""})),
        (
            "IpAddrGroupAddr-v1",
            json!({"addr": "10.0.0.5", "version": 4, "ipAddrGroupId": "00000000-0000-0000-0000-000000000000", "uri": ""}),
        ),
        (
            "TunnelZoneHost-v1",
            json!({"tunnelZoneId": "00000000-0000-0000-0000-000000000000", "hostId": "00000000-0000-0000-0000-000000000000", "ipAddress": "192.168.1.10", "uri": ""}),
        ),
        (
            "Interface-v1",
            json!({"hostId": "00000000-0000-0000-0000-000000000000", "name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1500, "status": 3, "type": "Physical", "endpoint": "DATAPATH", "addresses": ["10.0.0.5"], "uri": ""}),
        ),
        (
            "HostInterfacePort-v1",
            json!({"hostId": "00000000-0000-0000-0000-000000000000", "portId": "00000000-0000-0000-0000-000000000000", "interfaceName": "veth0", "uri": ""}),
        ),
        (
            "PortGroupPort-v1",
            json!({"portGroupId": "00000000-0000-0000-0000-000000000000", "portId": "00000000-0000-0000-0000-000000000000", "uri": ""}),
        ),
        ("PortLink-v1", json!({"peerId": "00000000-0000-0000-0000-000000000000"})),
    ]
}

/// Fields the API accepts and stores but nothing acts on yet (no agent and
/// no simulation reads them), as (media type, field, description). The
/// schema says so, so that a client does not take a 2xx for an effect.
const STORED_ONLY: &[(&str, &str, &str)] = &[
    ("Router-v3", "asNumber", "Stored, not acted on yet: routers do not speak BGP."),
    (
        "TunnelZone-v1",
        "type",
        "Only `vxlan` is built: agents tunnel with VXLAN to the members of a zone of any \
         type; `gre` and `vtep` are stored, not acted on.",
    ),
];

/// Adds the [`STORED_ONLY`] descriptions to the component schemas.
fn describe_stored_only(schemas: &mut Map<String, Value>) {
    for (media, field, text) in STORED_ONLY {
        let prop = schemas
            .get_mut(&component_name(media))
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
            .and_then(Value::as_object_mut);
        if let Some(prop) = prop {
            prop.insert("description".into(), json!(text));
        }
    }
}

/// Builds the document.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut schemas = Map::new();
    for k in super::kinds::registry() {
        let mut sample = (k.sample)();
        if let Value::Object(m) = &mut sample {
            m.insert("uri".into(), json!(""));
        }
        schemas.insert(component_name(k.desc.media), schema_of(&sample));
    }
    describe_stored_only(&mut schemas);
    for (name, sample) in extra_samples() {
        schemas.insert(component_name(name), schema_of(&sample));
    }
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "properties": {
            "message": {"type": "string"}, "code": {"type": "integer"}, "field": {"type": "string"},
            "violations": {"type": "array", "items": {"type": "object", "properties": {
                "property": {"type": "string"}, "message": {"type": "string"}}}}}}),
    );
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for r in routes {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert("operationId".into(), json!(format!("{} {}", r.method, r.path)));
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        let schema_ref = r
            .schema
            .map(|s| json!({"$ref": format!("#/components/schemas/{}", component_name(s))}));
        if r.body {
            let s = schema_ref.clone().unwrap_or(json!({"type": "object"}));
            op.insert(
                "requestBody".into(),
                json!({"content": {"application/json": {"schema": s}}}),
            );
        }
        let ok = match (&schema_ref, r.status) {
            (_, 204) => json!({"description": "done"}),
            (Some(s), _) if r.list => {
                json!({"description": "ok", "content": {"application/json": {"schema": {"type": "array", "items": s}}}})
            }
            (Some(s), _) => {
                json!({"description": "ok", "content": {"application/json": {"schema": s}}})
            }
            (None, _) => {
                json!({"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}})
            }
        };
        let err = json!({"description": "error", "content": {"application/vnd.org.midonet.Error-v1+json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let mut responses = Map::new();
        responses.insert(r.status.to_string(), ok);
        responses.insert("default".into(), err);
        op.insert("responses".into(), Value::Object(responses));
        if !r.path.ends_with("/login") && !r.path.ends_with("/openapi.json") {
            op.insert("security".into(), json!([{"token": []}]));
        }
        paths.entry(r.path.clone()).or_default().insert(r.method.to_string(), Value::Object(op));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "midonet-rs REST API",
            "version": "5.0",
            "description": "MidoNet 5.x compatible REST API. Log in at /login with HTTP Basic, then send X-Auth-Token.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the API stores but ignores carries its description: a
    /// renamed field or media type would otherwise lose it silently.
    #[test]
    fn stored_only_fields_say_so() {
        let doc = document(&[]);
        for (media, field, text) in STORED_ONLY {
            let prop = &doc["components"]["schemas"][component_name(media)]["properties"][field];
            assert_eq!(prop["description"], json!(text), "{media}.{field}: {prop}");
        }
        let router = &doc["components"]["schemas"]["Router_v3"]["properties"];
        assert!(router["name"].get("description").is_none(), "only those fields: {router}");
    }
}
