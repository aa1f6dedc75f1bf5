//! `api.d.ts` holds the TypeScript types of every message of the contract (proto3 JSON mapping),
//! the gRPC status names (from core's codes) and one method per RPC; it is generated from the
//! contract's descriptors and this test fails when it is out of date. Set WSD_BLESS=1 to rewrite
//! it.

use std::collections::BTreeSet;
use std::fmt::Write;

use prost_reflect::{Cardinality, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

/// `wsdaemon.SnapshotStatusResponse.Phase` -> `SnapshotStatusResponsePhase`.
fn ts_name(full_name: &str, package: &str) -> String {
    full_name
        .strip_prefix(package)
        .map(|s| s.trim_start_matches('.'))
        .unwrap_or(full_name)
        .split('.')
        .collect()
}

fn message_name(m: &MessageDescriptor) -> String {
    ts_name(m.full_name(), m.package_name())
}

fn enum_name(e: &EnumDescriptor) -> String {
    ts_name(e.full_name(), e.package_name())
}

fn scalar(kind: &Kind) -> String {
    match kind {
        Kind::Double
        | Kind::Float
        | Kind::Int32
        | Kind::Uint32
        | Kind::Sint32
        | Kind::Fixed32
        | Kind::Sfixed32 => "number".into(),
        // proto3 JSON writes 64-bit integers as strings and reads numbers or strings.
        Kind::Int64 | Kind::Uint64 | Kind::Sint64 | Kind::Fixed64 | Kind::Sfixed64 => {
            "string | number".into()
        }
        Kind::Bool => "boolean".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "string /* base64 */".into(),
        Kind::Message(m) => message_name(m),
        Kind::Enum(e) => enum_name(e),
    }
}

fn field_type(f: &FieldDescriptor) -> String {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            unreachable!("map fields are messages")
        };
        let value = entry.map_entry_value_field();
        return format!("{{ [key: string]: {} }}", scalar(&value.kind()));
    }
    let t = scalar(&f.kind());
    match f.cardinality() {
        Cardinality::Repeated if t.contains(' ') => format!("Array<{t}>"),
        Cardinality::Repeated => format!("{t}[]"),
        _ => t,
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn generate() -> String {
    let pool = wsd_core::json::descriptor_pool().expect("descriptors");
    let mut out = String::from(
        "/* Generated from proto/protos by bindings-node/tests/typescript_types.rs; do not edit.\n   Regenerate: WSD_BLESS=1 cargo test -p wsd-node --test typescript_types */\n\n",
    );
    let mut names = BTreeSet::new();
    let mut enums: Vec<EnumDescriptor> = pool.all_enums().collect();
    enums.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    for e in enums {
        let name = enum_name(&e);
        assert!(names.insert(name.clone()), "two types are named {name}");
        let values: Vec<String> = e.values().map(|v| format!("'{}'", v.name())).collect();
        writeln!(
            out,
            "/** {} */\nexport type {name} = {};\n",
            e.full_name(),
            values.join(" | ")
        )
        .ok();
    }
    let mut messages: Vec<MessageDescriptor> =
        pool.all_messages().filter(|m| !m.is_map_entry()).collect();
    messages.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    for m in messages {
        let name = message_name(&m);
        assert!(names.insert(name.clone()), "two types are named {name}");
        writeln!(out, "/** {} */\nexport interface {name} {{", m.full_name()).ok();
        for f in m.fields() {
            writeln!(out, "  {}?: {}", f.json_name(), field_type(&f)).ok();
        }
        out.push_str("}\n\n");
    }

    let names: Vec<String> = wsd_core::Code::ALL
        .iter()
        .map(|c| format!("'{}'", c.name()))
        .collect();
    writeln!(
        out,
        "/** gRPC status names (`WsdError.code`), in wire-number order. */\nexport type StatusName = {};\n",
        names.join(" | ")
    )
    .ok();
    out.push_str("/** Options of one call. */\nexport interface CallOptions {\n  /** The caller's deadline in milliseconds: waits (e.g. WaitForInit) end with DEADLINE_EXCEEDED; started work goes on. */\n  timeoutMs?: number\n}\n\n");
    out.push_str("/** One async method per RPC of the contract; RPCs this daemon does not serve reject with UNIMPLEMENTED. */\nexport interface DaemonMethods {\n");
    let mut seen = BTreeSet::new();
    for m in wsd_core::json::api_methods().expect("methods") {
        let js = lower_first(&m.name);
        if !seen.insert(js.clone()) {
            continue;
        }
        let input = pool.get_message_by_name(&m.input).expect("input type");
        let output = pool.get_message_by_name(&m.output).expect("output type");
        // A server-streaming RPC is an async iterable of its responses (see `openStream`).
        let answer = if m.server_streaming {
            "AsyncIterableIterator"
        } else {
            "Promise"
        };
        writeln!(
            out,
            "  /** {}{} */\n  {js}(request?: {}, options?: CallOptions): {answer}<{}>",
            m.path,
            if !m.served {
                " (not served yet: rejects with UNIMPLEMENTED)"
            } else if m.socket_only {
                " (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION)"
            } else {
                ""
            },
            message_name(&input),
            message_name(&output)
        )
        .ok();
    }
    out.push_str("}\n");
    out
}

#[test]
fn committed_typescript_types_match_the_contract() {
    let generated = generate();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/api.d.ts");
    if std::env::var_os("WSD_BLESS").is_some() {
        std::fs::write(path, &generated).expect("write api.d.ts");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "bindings-node/api.d.ts is out of date: WSD_BLESS=1 cargo test -p wsd-node --test typescript_types"
    );
}

/// Every key of the configuration (camelCase, as JavaScript callers write it) appears in the
/// hand-written `DaemonOptions` of wsd.d.ts, so the types do not fall behind the config. The
/// server's own table does not apply to embeddings.
#[test]
fn daemon_options_name_every_configuration_key() {
    fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (k, v) in map {
                if k == "server" {
                    continue;
                }
                let camel: String = k
                    .split('_')
                    .enumerate()
                    .map(|(i, w)| {
                        if i == 0 {
                            w.to_string()
                        } else {
                            w[..1].to_uppercase() + &w[1..]
                        }
                    })
                    .collect();
                out.push(camel);
                keys(v, out);
            }
        }
    }
    let config = serde_json::to_value(wsd_core::Config::default()).expect("config as JSON");
    let mut all = Vec::new();
    keys(&config, &mut all);
    let dts = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wsd.d.ts"))
        .expect("wsd.d.ts");
    let options = &dts[dts
        .find("export interface DaemonOptions")
        .expect("DaemonOptions")..];
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !options.contains(&format!("{k}?:")))
        .collect();
    assert!(
        missing.is_empty(),
        "wsd.d.ts DaemonOptions lacks: {missing:?}"
    );
}
