//! Output: human tables, or the server's JSON unchanged.
//!
//! Lists print one row per object with the resource's columns; a single
//! object prints as a two-column FIELD/VALUE table of every field the server
//! sent, except hypermedia links (absolute URIs), which are noise to a person
//! and still available with `-o json`.

use std::io::Write;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;

use crate::resources::Col;
use crate::Output;

/// Text for one JSON value in a cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(_) => {
            if let (Some(s), Some(e)) = (v.get("start"), v.get("end")) {
                range_text(s, e)
            } else {
                v.to_string()
            }
        }
    }
}

fn range_text(s: &Value, e: &Value) -> String {
    if s == e {
        cell(s)
    } else {
        format!("{}-{}", cell(s), cell(e))
    }
}

fn column_text(obj: &Value, col: &Col) -> String {
    match col {
        Col::Key(k) => cell(&obj[*k]),
        Col::Cidr(a, l) => {
            if obj[*a].is_null() {
                String::new()
            } else {
                format!("{}/{}", cell(&obj[*a]), cell(&obj[*l]))
            }
        }
        Col::Range(k) => cell(&obj[*k]),
        Col::Conditions => crate::rule::conditions(obj),
    }
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled);
    t
}

/// A list as a table with the given columns.
pub fn list_table(columns: &[(&str, Col)], items: &[Value]) -> String {
    let mut t = new_table();
    t.set_header(columns.iter().map(|(h, _)| *h));
    for obj in items {
        t.add_row(columns.iter().map(|(_, c)| column_text(obj, c)));
    }
    t.to_string()
}

fn is_link(key: &str, v: &Value) -> bool {
    key == "uri"
        || v.as_str().is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
}

fn is_unset(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(|a| a.is_empty())
}

/// One object as a FIELD/VALUE table: `id` first, then the fields that are
/// set; links and unset fields are left out (`-o json` shows everything).
pub fn object_table(obj: &Value) -> String {
    let mut t = new_table();
    t.set_header(["FIELD", "VALUE"]);
    if let Some(map) = obj.as_object() {
        let mut keys: Vec<&String> =
            map.iter().filter(|(k, v)| !is_link(k, v) && !is_unset(v)).map(|(k, _)| k).collect();
        keys.sort_by_key(|k| (k.as_str() != "id", k.as_str()));
        for k in keys {
            t.add_row([k.clone(), cell(&map[k.as_str()])]);
        }
    } else {
        t.add_row(["value".to_owned(), cell(obj)]);
    }
    t.to_string()
}

/// Prints a list in the chosen format.
pub fn print_list(
    out: &mut dyn Write,
    output: Output,
    columns: &[(&str, Col)],
    items: &[Value],
) -> anyhow::Result<()> {
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(items)?)?,
        Output::Table => writeln!(out, "{}", list_table(columns, items))?,
        Output::Id => {
            for obj in items {
                writeln!(out, "{}", ident(obj))?;
            }
        }
    }
    Ok(())
}

/// Prints one object in the chosen format.
pub fn print_object(out: &mut dyn Write, output: Output, obj: &Value) -> anyhow::Result<()> {
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(obj)?)?,
        Output::Table => writeln!(out, "{}", object_table(obj))?,
        Output::Id => writeln!(out, "{}", ident(obj))?,
    }
    Ok(())
}

/// What `-o id` prints: the id, or the uri for objects without one.
fn ident(obj: &Value) -> String {
    for k in ["id", "uri"] {
        if let Some(s) = obj.get(k).and_then(Value::as_str) {
            return s.to_owned();
        }
    }
    cell(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_table_hides_links_and_unset_fields() {
        let obj = json!({"name": "br0", "id": "x", "uri": "http://h/b/x", "ports": "http://h/b/x/ports",
                         "peerId": null, "mirrorIds": []});
        let t = object_table(&obj);
        assert!(t.contains("br0") && t.contains("name"), "{t}");
        assert!(!t.contains("http://") && !t.contains("peerId") && !t.contains("mirrorIds"), "{t}");
        assert!(t.find("id").expect("id row") < t.find("name").expect("name row"), "{t}");
    }

    #[test]
    fn list_table_formats_composite_columns() {
        let cols = [
            ("DST", Col::Cidr("dstNetworkAddr", "dstNetworkLength")),
            ("PORTS", Col::Key("tpDst")),
        ];
        let t = list_table(
            &cols,
            &[
                json!({"dstNetworkAddr": "10.1.0.0", "dstNetworkLength": 16, "tpDst": {"start": 80, "end": 81}}),
            ],
        );
        assert!(t.contains("10.1.0.0/16") && t.contains("80-81"), "{t}");
    }

    #[test]
    fn id_output_prefers_id_then_uri() {
        assert_eq!(ident(&json!({"id": "a", "uri": "u"})), "a");
        assert_eq!(ident(&json!({"portId": "p", "uri": "u"})), "u");
    }
}
