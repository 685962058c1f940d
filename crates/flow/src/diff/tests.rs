//! Unit tests of the flow diff on small inline flows.

use super::*;

const BASE: &str = "flow: tiny
version: \"1\"
start: welcome
settings: { max_call_seconds: 120, on_error: agent }
policies:
  pin: { kind: pin, min_length: 8, max_length: 12 }
nodes:
  welcome:
    say: welcome
    next: identify
  identify:
    gather: { say: enter_employee_id, digits: 6, into: employee_id, attempts: 3 }
    next: lookup
    on: { exhausted: agent }
  lookup:
    directory.find: { by: employee_id, value: \"{{ employee_id }}\" }
    next: change
    on: { not_found: agent, disabled: agent, locked: agent, not_allowed: agent }
  change:
    secure:
      start: current
      nodes:
        current:
          pin.verify: { say: enter_current_pin, attempts: 3 }
          next: new_pin
          on: { failed: agent, locked_out: agent }
        new_pin:
          set_secret: { policy: pin, say: enter_new_pin, confirm: confirm_new_pin }
          next: bye
          on: { failed: agent, rejected: agent, locked: agent }
    on: { pause_failed: agent }
  bye:
    hangup: { say: reset_success, outcome: reset_done }
  agent:
    transfer: { say: transferring, queue: service-desk }
";

fn flow(text: &str) -> Flow {
    let compiled = crate::compile("f.yaml", text, None);
    assert!(compiled.is_ok(), "{:#?}", compiled.diagnostics);
    compiled.flow.expect("flow")
}

fn between(new: &str) -> FlowDiff {
    diff(&flow(BASE), &flow(new), DiffCatalogs::default())
}

#[test]
fn a_flow_compared_with_itself_has_no_differences() {
    let d = between(BASE);
    assert!(d.is_empty(), "{d:#?}");
    assert!(render(&d, DiffFormat::Text).ends_with("\nno differences\n"));
}

#[test]
fn reformatting_and_reordering_nodes_is_no_change() {
    let moved = BASE.replace(
        "  bye:\n    hangup: { say: reset_success, outcome: reset_done }\n",
        "",
    ) + "  bye:\n    hangup:\n      say: reset_success\n      outcome: reset_done\n";
    assert!(between(&moved).is_empty());
}

#[test]
fn a_rewired_edge_names_node_outcome_and_both_targets() {
    let d = between(&BASE.replace("not_found: agent,", "not_found: bye,"));
    assert_eq!(
        d.edges,
        vec![EdgeChange {
            node: "lookup".into(),
            edge: "not_found".into(),
            old: Some("agent".into()),
            new: Some("bye".into()),
        }]
    );
    assert!(d.changed.is_empty() && d.added.is_empty());
}

#[test]
fn a_changed_field_shows_old_and_new_value() {
    let d = between(&BASE.replace(
        "into: employee_id, attempts: 3",
        "into: employee_id, attempts: 5",
    ));
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].id, "identify");
    assert_eq!(
        d.changed[0].fields,
        vec![FieldChange {
            field: "attempts".into(),
            old: Some("3".into()),
            new: Some("5".into()),
        }]
    );
}

#[test]
fn added_and_removed_nodes_are_listed_sorted_by_id() {
    let new = BASE
        .replace("    next: identify\n", "    next: notice\n")
        .replace(
            "  identify:\n",
            "  notice:\n    say: welcome_pin_only\n    next: identify\n  identify:\n",
        );
    let d = between(&new);
    assert_eq!(d.added.len(), 1);
    assert_eq!(d.added[0].id, "notice");
    assert_eq!(d.edges[0].node, "welcome");
    let back = diff(&flow(&new), &flow(BASE), DiffCatalogs::default());
    assert_eq!(back.removed[0].id, "notice");
}

#[test]
fn nodes_entering_and_leaving_a_secure_section_are_reported() {
    let new = BASE.replace("    next: identify\n", "    next: ask\n").replace(
        "  identify:\n    gather: { say: enter_employee_id, digits: 6, into: employee_id, attempts: 3 }\n    next: lookup\n    on: { exhausted: agent }\n",
        "  ask:\n    secure:\n      start: identify\n      nodes:\n        identify:\n          gather: { say: enter_employee_id, digits: 6, into: employee_id, attempts: 3 }\n          next: lookup\n          on: { exhausted: agent }\n    on: { pause_failed: agent }\n",
    );
    let change = |change, node: Option<&str>| SectionChange {
        section: "ask".into(),
        change,
        node: node.map(str::to_string),
    };
    let d = between(&new);
    assert_eq!(
        d.sections,
        [
            change(SectionChangeKind::Added, None),
            change(SectionChangeKind::Entered, Some("identify")),
        ]
    );
    let back = diff(&flow(&new), &flow(BASE), DiffCatalogs::default());
    assert_eq!(
        back.sections,
        [
            change(SectionChangeKind::Removed, None),
            change(SectionChangeKind::Left, Some("identify")),
        ]
    );
}

#[test]
fn a_node_added_inside_a_section_is_listed_with_it_not_as_entering() {
    let new = BASE.replace("          next: new_pin\n", "          next: notice\n").replace(
        "        new_pin:\n",
        "        notice:\n          say: welcome_pin_only\n          next: new_pin\n        new_pin:\n",
    );
    let d = between(&new);
    assert_eq!(d.added[0].section.as_deref(), Some("change"));
    assert!(d.sections.is_empty(), "{:?}", d.sections);
}

#[test]
fn settings_and_policies_changes_are_reported() {
    let d = between(
        &BASE
            .replace("max_call_seconds: 120", "max_call_seconds: 300")
            .replace("min_length: 8", "min_length: 10"),
    );
    let fields: Vec<&str> = d.settings.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        ["settings.max_call_seconds", "policies.pin.min_length"]
    );
}

#[test]
fn a_prompt_key_swapped_on_a_node_is_a_prompt_change_not_a_field_change() {
    let d = between(&BASE.replace("say: welcome\n", "say: welcome_pin_only\n"));
    assert!(d.changed.is_empty());
    assert_eq!(d.prompts[0].added, ["welcome_pin_only"]);
    assert_eq!(d.prompts[0].removed, ["welcome"]);
}

#[test]
fn text_output_has_one_line_per_change_in_groups() {
    let d = between(&BASE.replace("not_found: agent,", "not_found: bye,"));
    let text = render(&d, DiffFormat::Text);
    assert!(
        text.contains("\nedges\n  ~ lookup --not_found--> bye (was agent)\n"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render(&d, DiffFormat::Json)).expect("json");
    assert_eq!(json["differences"], 1);
    assert_eq!(json["edges"][0]["old"], "agent");
}

#[test]
fn changes_keep_the_order_fields_are_written_in_even_when_added_or_removed() {
    let d = between(
        &BASE
            .replace("on_error: agent }", "on_error: bye, voice: Polly.Joanna }")
            .replace("version: \"1\"\n", "description: One PIN reset.\n"),
    );
    let names = |list: &[FieldChange]| -> Vec<(String, Option<String>)> {
        list.iter()
            .map(|c| (c.field.clone(), c.new.clone()))
            .collect()
    };
    let pair = |f: &str, v: Option<&str>| (f.to_string(), v.map(str::to_string));
    assert_eq!(
        names(&d.settings),
        [
            pair("settings.voice", Some("Polly.Joanna")),
            pair("settings.on_error", Some("bye")),
        ]
    );
    assert_eq!(
        names(&d.flow),
        [
            pair("version", None),
            pair("description", Some("One PIN reset."))
        ]
    );
}

#[test]
fn the_drawing_marks_a_new_start_and_ghosts_the_old_one() {
    let new = BASE
        .replace("start: welcome", "start: identify")
        .replace("  welcome:\n    say: welcome\n    next: identify\n", "");
    let (a, b) = (flow(BASE), flow(&new));
    let d = diff(&a, &b, DiffCatalogs::default());
    let marks = overlay(&a, &b, &d);
    let dot = graph::render_with(&b, graph::Format::Dot, &marks);
    assert!(
        dot.contains("\"__start\" -> \"identify\" [label=\"start (added)\""),
        "{dot}"
    );
    assert!(
        dot.contains("\"__start\" -> \"welcome\" [label=\"start (removed)\""),
        "{dot}"
    );
    let mermaid = graph::render_with(&b, graph::Format::Mermaid, &marks);
    assert!(mermaid.contains("  __start([start])\n"), "{mermaid}");
    assert!(
        mermaid.contains("  welcome -.->|\"next (removed)\"| identify\n"),
        "{mermaid}"
    );
    assert!(mermaid.contains("  class welcome removed\n"), "{mermaid}");
    assert_eq!(
        graph::render(&b, graph::Format::Dot),
        graph::render_with(&b, graph::Format::Dot, &graph::Overlay::default()),
    );
}

#[test]
fn the_same_keys_in_another_order_are_a_prompt_order_change() {
    let old = BASE.replace(
        "hangup: { say: reset_success, outcome: reset_done }",
        "hangup: { say: [reset_success, goodbye], outcome: reset_done }",
    );
    let new = BASE.replace(
        "hangup: { say: reset_success, outcome: reset_done }",
        "hangup: { say: [goodbye, reset_success], outcome: reset_done }",
    );
    let d = diff(&flow(&old), &flow(&new), DiffCatalogs::default());
    assert_eq!(d.prompts.len(), 1, "{d:#?}");
    let order = d.prompts[0].order.as_ref().expect("an order change");
    assert_eq!(order.old.as_deref(), Some("reset_success, goodbye"));
    assert_eq!(order.new.as_deref(), Some("goodbye, reset_success"));
    assert!(
        render(&d, DiffFormat::Text)
            .contains("  ~ bye prompt order: reset_success, goodbye -> goodbye, reset_success\n")
    );
    let added = diff(&flow(BASE), &flow(&new), DiffCatalogs::default());
    assert_eq!(added.prompts[0].added, ["goodbye"]);
    assert!(added.prompts[0].order.is_none());
}

#[test]
fn catalog_text_changes_are_listed_for_keys_the_flows_say() {
    let catalogs = |welcome: &str| {
        let text = format!(
            "locale: en-US\nprompts:\n  welcome: \"{welcome}\"\n  unused: \"Not said by the flow.\"\n"
        );
        let (catalog, problems) = crate::prompts::parse("en-US.yaml", &text);
        assert!(problems.is_empty(), "{problems:?}");
        let mut c = Catalogs::default();
        c.by_locale
            .insert("en-US".into(), catalog.expect("a catalog"));
        c
    };
    let (old, new) = (catalogs("Hello."), catalogs("Hello there."));
    let d = diff(
        &flow(BASE),
        &flow(BASE),
        DiffCatalogs {
            old: Some(&old),
            new: Some(&new),
        },
    );
    assert_eq!(
        d.prompt_texts,
        [PromptTextChange {
            key: "welcome".into(),
            locale: "en-US".into(),
            old: Some("Hello.".into()),
            new: Some("Hello there.".into()),
        }]
    );
    let one_side = diff(
        &flow(BASE),
        &flow(BASE),
        DiffCatalogs {
            old: Some(&old),
            new: None,
        },
    );
    assert!(one_side.is_empty());
}
