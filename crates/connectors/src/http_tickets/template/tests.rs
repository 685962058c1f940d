use serde_json::json;

use super::*;

fn fields(name: &str) -> Option<String> {
    match name {
        "summary" => Some("PIN reset \"failed\"\n for {{ details }}".into()),
        "call_sid" => Some("CA01".into()),
        "ticket.id" => Some("../a b/é".into()),
        _ => None,
    }
}

#[test]
fn values_are_substituted_into_string_leaves_as_json() {
    let template = json!({
        "serviceDeskId": "10",
        "priority": 3,
        "requestFieldValues": {
            "summary": "{{ summary }}",
            "description": "Call {{call_sid}}: {{ details }}.",
            "labels": ["resetline", "{{ category }}", "{{ call_sid }}"],
        },
        "category": "{{ category }}",
    });
    assert!(check_body(&template, OPEN_FIELDS).is_empty());
    let body = render_body(&template, &fields);
    assert_eq!(
        body,
        json!({
            "serviceDeskId": "10",
            "priority": 3,
            "requestFieldValues": {
                "summary": "PIN reset \"failed\"\n for {{ details }}",
                "description": "Call CA01: .",
                "labels": ["resetline", "CA01"],
            },
        })
    );
    // Serialised, quotes and newlines are escaped and a value's braces stay text.
    let text = serde_json::to_string(&body).unwrap();
    assert!(
        text.contains(r#""summary":"PIN reset \"failed\"\n for {{ details }}""#),
        "{text}"
    );
}

#[test]
fn unknown_placeholders_keys_and_shapes_are_refused() {
    let template = json!({
        "a": "{{ pin }}",
        "b": ["ok", {"c": "x {{ code"}],
        "{{ summary }}": "y",
        "d/e": "{{ note }}",
    });
    let problems = check_body(&template, OPEN_FIELDS);
    assert_eq!(
        problems,
        [
            "at /a: unknown placeholder `{{ pin }}` (allowed: summary, details, category, call_sid)",
            "at /b/1/c: `{{` without `}}` in \"x {{ code\"",
            "at /d~1e: unknown placeholder `{{ note }}` (allowed: summary, details, category, call_sid)",
            "at /{{ summary }}: placeholders are not allowed in keys",
        ]
    );
    assert_eq!(
        check_body(&json!(["{{ summary }}"]), OPEN_FIELDS),
        ["must be a JSON object"]
    );
    assert!(check_body(&json!({"n": "{{ note }}"}), CLOSE_FIELDS).is_empty());
}

#[test]
fn url_values_are_percent_encoded_and_stay_out_of_the_host() {
    let url = "https://desk.example.com/rest/request/{{ ticket.id }}/transition?x={{ticket.id}}";
    assert!(check_url(url, CLOSE_FIELDS).is_empty());
    assert_eq!(
        render_url(url, &fields),
        "https://desk.example.com/rest/request/..%2Fa%20b%2F%C3%A9/transition?x=..%2Fa%20b%2F%C3%A9"
    );
    assert_eq!(
        check_url("https://{{ ticket.id }}.example.com/x", CLOSE_FIELDS),
        ["placeholders may only appear in the path or query"]
    );
    assert_eq!(
        check_url("https://x.example.com/{{ summary }}", CLOSE_FIELDS),
        ["unknown placeholder `{{ summary }}` (allowed: note, ticket.number, ticket.id)"]
    );
}

#[test]
fn pointers_follow_rfc_6901() {
    let answer = json!({
        "issueId": "107001",
        "issueKey": "HELP-12",
        "a/b": {"m~n": 42},
        "items": [{"id": "x"}],
        "empty": "",
        "obj": {},
        "float": 1.5,
    });
    let text = |p: &str| Pointer::parse(p).unwrap().text_in(&answer);
    assert_eq!(text("/issueKey").as_deref(), Some("HELP-12"));
    assert_eq!(text("/a~1b/m~0n").as_deref(), Some("42"));
    assert_eq!(text("/items/0/id").as_deref(), Some("x"));
    for missing in [
        "/issuekey",
        "/items/1/id",
        "/empty",
        "/obj",
        "/float",
        "/issueKey/x",
    ] {
        assert_eq!(text(missing), None, "{missing}");
    }
    for bad in ["issueKey", "", "/a~2b", "/a~"] {
        assert!(Pointer::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Pointer::parse("issueKey").unwrap_err(),
        "`issueKey` is not a JSON pointer (RFC 6901): it must start with `/`, e.g. `/issueKey`"
    );
}
