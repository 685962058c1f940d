//! security.md check 3: no node kind offers security questions or hints (NIST SP 800-63B
//! 5.1.1.2, ASVS 6.4.2). A vocabulary test over `spec.rs`: no kind, field, enum value,
//! outcome, engine prompt, variable or record field is named after knowledge-based questions,
//! their answers or password hints, and a record carries no personal fact a flow could ask.

use resetline_flow::spec::{self, Field, Ty};

/// Words that name knowledge-based verification or hints.
const FORBIDDEN: &[&str] = &[
    "question",
    "answer",
    "hint",
    "reminder",
    "kba",
    "knowledge",
    "maiden",
    "mother",
    "pet",
    "birthplace",
    "favorite",
    "favourite",
    "memorable",
    "birth",
    "ssn",
    "security",
];

/// The words of a vocabulary name (`security_question`, `code.verify`, `kba-answer`).
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
}

fn forbidden(name: &str) -> bool {
    words(name).any(|w| FORBIDDEN.contains(&w.as_str()))
}

fn names_of_ty(ty: &'static Ty, out: &mut Vec<&'static str>) {
    match ty {
        Ty::Object(fields) => names_of_fields(fields, out),
        Ty::MapOf(k, v) => {
            names_of_ty(k, out);
            names_of_ty(v, out);
        }
        Ty::ListOf(v) => names_of_ty(v, out),
        Ty::OneOf(options) => options.iter().for_each(|o| names_of_ty(o, out)),
        Ty::Enum(values) => out.extend(values.iter().copied()),
        _ => {}
    }
}

fn names_of_fields(fields: &'static [Field], out: &mut Vec<&'static str>) {
    for f in fields {
        out.push(f.name);
        names_of_ty(&f.ty, out);
    }
}

/// Every name the language has.
fn vocabulary() -> Vec<&'static str> {
    let mut out = Vec::new();
    for k in spec::KINDS {
        out.push(k.name);
        names_of_ty(&k.body, &mut out);
        out.extend(k.outcomes.iter().map(|o| o.name));
    }
    names_of_fields(spec::FLOW, &mut out);
    names_of_fields(spec::NODE_FIELDS, &mut out);
    names_of_fields(spec::SETTINGS, &mut out);
    names_of_fields(spec::POLICY_FIELDS, &mut out);
    names_of_fields(spec::PROMPT_FIELDS, &mut out);
    for (kind, prompts) in spec::KIND_PROMPTS {
        out.push(kind);
        out.extend(prompts.iter().copied());
    }
    out.extend(spec::ENGINE_PROMPTS.iter().copied());
    for (var, fields) in spec::BUILTINS {
        out.push(var);
        out.extend(fields.iter().copied());
    }
    out.extend(spec::RECORD_FIELDS.iter().copied());
    out
}

#[test]
fn no_node_kind_offers_security_questions_or_hints() {
    let all = vocabulary();
    assert!(
        all.len() > 100,
        "the vocabulary walk found only {} names",
        all.len()
    );
    for kind in [
        "gather",
        "code.verify",
        "pin.verify",
        "set_secret",
        "secure",
    ] {
        assert!(all.contains(&kind), "the walk misses `{kind}`");
    }
    let offending: Vec<&str> = all.into_iter().filter(|n| forbidden(n)).collect();
    assert!(
        offending.is_empty(),
        "security questions and hints are not a verification (NIST SP 800-63B 5.1.1.2): {offending:?}"
    );
}

#[test]
fn the_vocabulary_test_names_what_it_forbids() {
    for bad in [
        "security_question",
        "answer",
        "kba.verify",
        "pin_hint",
        "mothers-maiden-name",
        "birth_date",
    ] {
        assert!(forbidden(bad), "{bad}");
    }
    for fine in [
        "pin.verify",
        "code.verify",
        "no_match",
        "min_factors",
        "pause_behavior",
    ] {
        assert!(!forbidden(fine), "{fine}");
    }
}
