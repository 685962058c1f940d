//! `docs/flow-language.md` stays true: it documents every node kind, field, outcome and
//! problem code the language has.

use std::path::Path;

use resetline_flow::Code;
use resetline_flow::spec::{self, Field, Ty};

fn doc() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/flow-language.md"),
    )
    .expect("docs/flow-language.md")
}

fn fields(fields: &'static [Field], out: &mut Vec<&'static str>) {
    for f in fields {
        out.push(f.name);
        nested(&f.ty, out);
    }
}

fn nested(ty: &'static Ty, out: &mut Vec<&'static str>) {
    match ty {
        Ty::Object(f) => fields(f, out),
        Ty::MapOf(_, v) | Ty::ListOf(v) => nested(v, out),
        Ty::OneOf(options) => options.iter().for_each(|o| nested(o, out)),
        _ => {}
    }
}

#[test]
fn every_kind_field_outcome_and_code_is_documented() {
    let doc = doc();
    let mut missing = Vec::new();
    for k in spec::KINDS {
        if !doc.contains(&format!("### `{}`", k.name)) {
            missing.push(format!("section `### `{}``", k.name));
        }
        let mut names = Vec::new();
        nested(&k.body, &mut names);
        for name in names.iter().chain(k.outcomes.iter().map(|o| &o.name)) {
            if !doc.contains(&format!("`{name}`")) {
                missing.push(format!("`{name}` of `{}`", k.name));
            }
        }
    }
    let mut top = Vec::new();
    fields(spec::FLOW, &mut top);
    fields(spec::NODE_FIELDS, &mut top);
    for fields in resetline_flow::prompts::FIELDS {
        for f in *fields {
            top.push(f.name);
        }
    }
    for name in top {
        if !doc.contains(&format!("`{name}`")) {
            missing.push(format!("`{name}`"));
        }
    }
    for code in Code::ALL {
        if !doc.contains(&format!("| {} |", code.as_str())) {
            missing.push(format!("code {} in the problem table", code.as_str()));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/flow-language.md lacks: {}",
        missing.join(", ")
    );
}
