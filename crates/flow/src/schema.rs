//! JSON Schema (draft 2020-12) for flow files, generated from the vocabulary in [`crate::spec`],
//! so editors complete and validate exactly what the loader accepts.

use serde_json::{Map, Value, json};

use crate::spec::{self, Field, KindSpec, Next, Ty};

/// The JSON Schema of a flow file.
pub fn schema() -> Value {
    let mut defs = Map::new();
    defs.insert("prompt".into(), prompt_schema());
    defs.insert("node".into(), json!({ "oneOf": spec::KINDS.iter().map(|k| json!({ "$ref": format!("#/$defs/node_{}", k.name.replace('.', "_")) })).collect::<Vec<_>>() }));
    for k in spec::KINDS {
        defs.insert(format!("node_{}", k.name.replace('.', "_")), node_schema(k));
    }
    let mut root = object(spec::FLOW);
    if let Some(obj) = root.as_object_mut() {
        obj.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        obj.insert(
            "$id".into(),
            json!("https://resetline.dev/schema/flow.schema.json"),
        );
        obj.insert("title".into(), json!("Resetline call flow"));
        obj.insert("$defs".into(), Value::Object(defs));
    }
    root
}

fn node_schema(k: &KindSpec) -> Value {
    let mut props = Map::new();
    props.insert(k.name.into(), with_doc(ty(&k.body), k.doc));
    for f in spec::NODE_FIELDS {
        if f.name == "next" && k.next == Next::Forbidden {
            continue;
        }
        if f.name == "on" {
            let mut on = Map::new();
            for o in k.outcomes {
                on.insert(
                    o.name.into(),
                    json!({ "type": "string", "description": o.doc }),
                );
            }
            let mut schema = json!({ "type": "object", "description": f.doc, "properties": on, "additionalProperties": false });
            if k.name == "http" {
                schema["patternProperties"] =
                    json!({ "^[1-5]([0-9]{2}|xx)$": { "type": "string" } });
            }
            props.insert("on".into(), schema);
            continue;
        }
        props.insert(f.name.into(), field(f));
    }
    let mut required = vec![json!(k.name)];
    if k.next == Next::Required {
        required.push(json!("next"));
    }
    json!({
        "type": "object",
        "description": k.doc,
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

fn prompt_schema() -> Value {
    let item = json!({
        "oneOf": [
            { "type": "string", "pattern": "^[a-z_][a-z0-9_]*$", "description": "A prompt key in voice-prompts/<locale>.yaml." },
            object(spec::PROMPT_FIELDS),
        ]
    });
    json!({ "oneOf": [item.clone(), { "type": "array", "items": item, "minItems": 1 }] })
}

fn field(f: &Field) -> Value {
    let mut v = with_doc(ty(&f.ty), f.doc);
    if let (Some(d), Some(obj)) = (f.default, v.as_object_mut()) {
        obj.insert("default".into(), default_value(d));
    }
    v
}

fn default_value(d: &str) -> Value {
    if let Ok(n) = d.parse::<u64>() {
        return json!(n);
    }
    match d {
        "true" => json!(true),
        "false" => json!(false),
        _ if d.starts_with('[') => Value::Array(
            d.trim_matches(['[', ']'])
                .split(',')
                .map(|s| json!(s.trim()))
                .collect(),
        ),
        _ => json!(d),
    }
}

fn with_doc(mut v: Value, doc: &str) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("description".into(), json!(doc));
    }
    v
}

fn object(fields: &[Field]) -> Value {
    let mut props = Map::new();
    for f in fields {
        props.insert(f.name.into(), field(f));
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false })
}

fn ty(t: &Ty) -> Value {
    match t {
        Ty::Str => json!({ "type": "string" }),
        Ty::Ident => json!({ "type": "string", "pattern": "^[a-z_][a-z0-9_]*$" }),
        Ty::FlowId => json!({ "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$" }),
        Ty::Path => {
            json!({ "type": "string", "pattern": "^[a-z_][a-z0-9_]*(\\.[a-z_][a-z0-9_]*)*$" })
        }
        Ty::Template => json!({ "type": "string" }),
        Ty::Int(min, max) => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Duration => {
            json!({ "oneOf": [{ "type": "integer", "minimum": 0 }, { "type": "string", "pattern": "^[0-9]+ ?(ms|s|m|min|h)?$" }] })
        }
        Ty::Digits => {
            json!({ "oneOf": [{ "type": "integer", "minimum": 1, "maximum": 64 }, { "type": "string", "pattern": "^[0-9]+(\\.\\.[0-9]+)?$" }] })
        }
        Ty::Key => json!({ "type": "string", "pattern": "^[0-9*#]$" }),
        Ty::Target => json!({ "type": "string", "pattern": "^[a-z_][a-z0-9_]*$" }),
        Ty::Locale => {
            json!({ "type": "string", "pattern": "^[a-z]{2,8}(-[A-Za-z0-9]{2,8}){0,2}$" })
        }
        Ty::Enum(values) => json!({ "enum": values }),
        Ty::Prompt => json!({ "$ref": "#/$defs/prompt" }),
        Ty::Object(fields) => object(fields),
        Ty::MapOf(Ty::Key, v) => {
            json!({ "type": "object", "propertyNames": { "pattern": "^[0-9*#]$" }, "additionalProperties": ty(v) })
        }
        Ty::MapOf(_, v) => json!({ "type": "object", "additionalProperties": ty(v) }),
        Ty::ListOf(item) => json!({ "type": "array", "items": ty(item) }),
        // `anyOf`, not `oneOf`: the shapes may overlap (`enter` is both a comfort-loop word and
        // a valid node id), and the loader accepts a value that fits any of them.
        Ty::OneOf(options) => json!({ "anyOf": options.iter().map(ty).collect::<Vec<_>>() }),
        Ty::Json => json!({}),
        Ty::Nodes => {
            json!({ "type": "object", "propertyNames": { "pattern": "^[a-z_][a-z0-9_]*$" }, "additionalProperties": { "$ref": "#/$defs/node" } })
        }
    }
}
