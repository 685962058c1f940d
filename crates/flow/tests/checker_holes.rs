//! The checker holes of issue 22, case by case beside the golden fixtures (E037-E039): each
//! test is a flow that used to check clean and leaked, or a near miss that must stay clean.

use resetline_flow::{Code, compile};

/// The golden `clean` fixture, the base every case changes in one place.
const CLEAN: &str = include_str!("../../../tests/check/clean.yaml");

fn codes(text: &str) -> Vec<Code> {
    compile("case.yaml", text, None)
        .diagnostics
        .iter()
        .map(|d| d.code)
        .collect()
}

/// `CLEAN` with `old` replaced by `new` (which must occur once).
fn variant(old: &str, new: &str) -> String {
    assert_eq!(CLEAN.matches(old).count(), 1, "{old}");
    CLEAN.replace(old, new)
}

/// `CLEAN` with the prompt of node `send` reading `with` through a `set` node `remember`
/// whose values are `set`.
fn through_set(set: &str, with: &str) -> String {
    variant(
        "    next: send\n    on: { not_found",
        "    next: remember\n    on: { not_found",
    )
    .replace(
        "  send:\n",
        &format!("  remember:\n    set: {set}\n    next: send\n  send:\n"),
    )
    .replace("{{ user.mobile | last4 | digits }}", with)
}

#[test]
fn the_base_fixture_checks_clean() {
    assert_eq!(codes(CLEAN), vec![]);
}

#[test]
fn a_mobile_number_copied_by_set_is_never_spoken_in_full() {
    let flow = through_set(r#"{ num: "{{ user.mobile }}" }"#, "{{ num | digits }}");
    assert_eq!(codes(&flow), vec![Code::ContactLeak]);
}

#[test]
fn a_contact_value_keeps_its_type_through_a_chain_of_sets() {
    let flow = through_set(
        r#"{ b: "{{ a | upper }}", a: "x {{ caller.number }}" }"#,
        "{{ b }}",
    );
    assert_eq!(codes(&flow), vec![Code::ContactLeak]);
}

#[test]
fn a_contact_value_masked_where_it_is_set_may_be_spoken() {
    let masked = through_set(
        r#"{ num: "{{ user.mobile | last4 }}" }"#,
        "{{ num | digits }}",
    );
    assert_eq!(codes(&masked), vec![]);
    let masked_late = through_set(r#"{ num: "{{ user.email }}" }"#, "{{ num | mask }}");
    assert_eq!(codes(&masked_late), vec![]);
}

#[test]
fn a_menu_key_that_copies_a_number_makes_a_contact_value() {
    let flow = variant(
        "    next: send\n    on: { not_found",
        "    next: pick\n    on: { not_found",
    )
    .replace(
        "  send:\n",
        "  pick:\n    menu:\n      say: choose_method\n      keys: { \"1\": { next: send, set: { num: \"{{ user.mobile }}\" } } }\n    on: { exhausted: agent }\n  send:\n",
    )
    .replace("{{ user.mobile | last4 | digits }}", "{{ num }}");
    assert_eq!(codes(&flow), vec![Code::ContactLeak]);
}

#[test]
fn an_http_answer_named_like_a_phone_number_needs_a_mask_in_a_ticket() {
    let crm = "  crm:\n    http: { url: \"https://crm.example.com/u/{{ user.id }}\", map: { cell: /contact/mobilePhone } }\n    next: send\n  send:\n";
    let flow = variant(
        "    next: send\n    on: { not_found",
        "    next: crm\n    on: { not_found",
    )
    .replace("  send:\n", crm)
    .replace(
        "          next: bye\n",
        "          next: record\n",
    )
    .replace(
        "  bye:\n",
        "  record:\n    ticket: { summary: \"reset, reach at {{ cell }}\" }\n    next: bye\n  bye:\n",
    );
    assert_eq!(codes(&flow), vec![Code::ContactLeak]);
    let masked = flow.replace("{{ cell }}", "{{ cell | mask }}");
    assert_eq!(codes(&masked), vec![]);
}

#[test]
fn an_http_answer_to_a_request_without_contact_data_is_plain_text() {
    let flow = variant(
        "    next: send\n    on: { not_found",
        "    next: crm\n    on: { not_found",
    )
    .replace(
        "  send:\n",
        "  crm:\n    http: { url: \"https://crm.example.com/u/{{ user.id }}\", body: { who: \"{{ user.mobile | last4 }}\" }, map: { answer: /status } }\n    next: send\n  send:\n",
    )
    .replace("{{ user.mobile | last4 | digits }}", "{{ answer }}");
    assert_eq!(codes(&flow), vec![]);
}

#[test]
fn a_branch_on_a_contact_value_is_allowed_but_does_not_mask_it() {
    let flow = through_set(r#"{ num: "{{ user.mobile }}" }"#, "{{ num }}").replace(
        "    next: send\n  send:\n",
        "    next: check\n  check:\n    branch:\n      - when: { var: num, exists: true }\n        next: send\n    next: send\n  send:\n",
    );
    assert_eq!(codes(&flow), vec![Code::ContactLeak]);
}

/// A flow with a secret gather in section `badge` and the `http` node that sends it placed by
/// `inside`: in the section, or after it.
fn badge_flow(inside: bool) -> String {
    let http = "http: { url: \"https://b.example.com/check\", body: { code: \"{{ badge_code }}\" }, secrets: [/code] }";
    let gather =
        "gather: { say: enter_current_pin, digits: 4..12, into: badge_code, secret: true }";
    let section = if inside {
        format!(
            "  badge:\n    secure:\n      start: enter_badge\n      nodes:\n        enter_badge:\n          {gather}\n          next: check_badge\n          on: {{ exhausted: agent }}\n        check_badge:\n          {http}\n          next: reset\n    on: {{ pause_failed: agent }}\n"
        )
    } else {
        format!(
            "  badge:\n    secure:\n      start: enter_badge\n      nodes:\n        enter_badge:\n          {gather}\n          next: check_badge\n          on: {{ exhausted: agent }}\n    on: {{ pause_failed: agent }}\n  check_badge:\n    {http}\n    next: reset\n"
        )
    };
    variant(
        "    next: reset\n    on: { failed: agent",
        "    next: badge\n    on: { failed: agent",
    )
    .replace("  reset:\n", &format!("{section}  reset:\n"))
}

#[test]
fn a_secret_leaves_only_from_the_section_that_gathered_it() {
    assert_eq!(codes(&badge_flow(true)), vec![]);
    assert_eq!(codes(&badge_flow(false)), vec![Code::SecretLeavesSection]);
}

/// `CLEAN` with `failed:` of node `verify` going to `target`, and `extra` nodes added.
fn after_failed(target: &str, extra: &str) -> String {
    variant(
        "on: { failed: agent, expired: agent, delivery_failed: agent }",
        &format!("on: {{ failed: {target}, expired: agent, delivery_failed: agent }}"),
    )
    .replace(
        "    next: verify\n",
        "    limit: { visits: 3, then: agent }\n    next: verify\n",
    )
    .replace("  reset:\n", &format!("{extra}  reset:\n"))
}

#[test]
fn a_dead_code_is_never_replaced_without_the_caller_asking() {
    assert_eq!(
        codes(&after_failed("send", "")),
        vec![Code::CodeResentAfterFailure]
    );
    let through_say = after_failed("sorry", "  sorry:\n    say: code_wrong\n    next: send\n");
    assert_eq!(codes(&through_say), vec![Code::CodeResentAfterFailure]);
    let to_other_channel = after_failed(
        "by_email",
        "  by_email:\n    code.send: { channel: email, to: user.email }\n    next: agent\n    on: { undeliverable: agent, rate_limited: agent }\n",
    );
    assert_eq!(codes(&to_other_channel), vec![Code::CodeResentAfterFailure]);
}

#[test]
fn a_new_code_the_caller_chooses_in_a_menu_is_allowed() {
    let menu = "  again:\n    menu:\n      say: choose_method\n      keys: { \"1\": send, \"2\": agent }\n    on: { exhausted: agent }\n";
    assert_eq!(codes(&after_failed("again", menu)), vec![]);
}

#[test]
fn a_pin_check_of_another_record_does_not_count_for_the_account_set() {
    let flow = variant(
        "    next: send\n    on: { not_found",
        "    next: boss\n    on: { not_found",
    )
    .replace(
        "  send:\n",
        "  boss:\n    directory.find: { by: employee_id, value: \"1004217\", into: manager }\n    next: send\n    on: { not_found: agent, locked: agent, disabled: agent, not_allowed: agent }\n  send:\n",
    )
    .replace(
        "    code.verify: { from: send, say: enter_code }\n    next: reset\n",
        "    code.verify: { from: send, say: enter_code }\n    next: boss_pin\n",
    )
    .replace(
        "        new_pin:\n",
        "        boss_pin:\n          pin.verify: { say: enter_current_pin, account: manager, digits: 4..12 }\n          next: new_pin\n          on: { failed: agent, locked_out: agent }\n        new_pin:\n",
    )
    .replace("      start: new_pin\n", "      start: boss_pin\n")
    .replace("    next: boss_pin\n    on: { failed: agent", "    next: reset\n    on: { failed: agent");
    // The code to `user.mobile` counts for `user`; the manager's PIN does not add a second.
    assert_eq!(codes(&flow), vec![]);
    let two = flow.replace(
        "settings: { max_call_seconds: 300,",
        "settings: { min_factors: 2, max_call_seconds: 300,",
    );
    assert_eq!(codes(&two), vec![Code::TooFewFactors]);
}

#[test]
fn a_code_check_before_a_new_identification_does_not_count() {
    let flow = variant(
        "    next: reset\n    on: { failed: agent, expired",
        "    next: again\n    on: { failed: agent, expired",
    )
    .replace(
        "  reset:\n",
        "  again:\n    directory.find: { by: employee_id, value: \"{{ employee_id }}\" }\n    next: reset\n    on: { not_found: agent, locked: agent, disabled: agent, not_allowed: agent }\n  reset:\n",
    );
    assert_eq!(codes(&flow), vec![Code::TooFewFactors]);
}
