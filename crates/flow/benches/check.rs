//! Loading and checking a generated 1,000-node flow (target: under 50 ms).
//! Run: `cargo bench -p resetline-flow --bench check`

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use resetline_flow::{Catalogs, SourceMap, compile};

/// A flow of `n` nodes: rounds of gather -> lookup -> say -> menu, each bounded, ending in a
/// secure reset after a code check, so every pass (templates, prompts, graph) has work to do.
fn generated_flow(n: usize) -> String {
    let rounds = n / 4;
    let mut s = String::from(
        "flow: generated\nstart: g0\nsettings: { max_call_seconds: 600, locales: [en-US], on_error: agent }\npolicies:\n  pin: { min_length: 8 }\nnodes:\n",
    );
    for i in 0..rounds {
        let next = if i + 1 == rounds {
            "send".to_string()
        } else {
            format!("g{}", i + 1)
        };
        let _ = write!(
            s,
            "  g{i}:\n    gather: {{ say: enter_employee_id, digits: 6..8, into: id{i} }}\n    next: l{i}\n    on: {{ exhausted: agent }}\n    limit: {{ visits: 3, then: agent }}\n\
             \x20 l{i}:\n    directory.find: {{ by: employee_id, value: \"{{{{ id{i} }}}}\", into: user }}\n    next: s{i}\n    on: {{ not_found: g{i}, locked: agent, disabled: agent, not_allowed: agent }}\n\
             \x20 s{i}:\n    say: {{ prompt: code_sent_sms, with: {{ last4: \"{{{{ user.mobile | last4 | digits }}}}\" }} }}\n    next: m{i}\n\
             \x20 m{i}:\n    menu: {{ say: choose_method, keys: {{ \"1\": {next}, \"2\": g{i} }} }}\n    on: {{ exhausted: agent }}\n"
        );
    }
    s.push_str(
        "  send:\n    code.send: { channel: sms, to: user.mobile }\n    next: verify\n    on: { undeliverable: agent, rate_limited: agent }\n\
         \x20 verify:\n    code.verify: { from: send, say: enter_code }\n    next: reset\n    on: { failed: agent, expired: agent, delivery_failed: agent }\n\
         \x20 reset:\n    secure:\n      start: new_pin\n      nodes:\n        new_pin:\n          set_secret: { policy: pin, say: enter_new_pin, confirm: confirm_new_pin }\n          next: bye\n          on: { failed: agent, rejected: agent, locked: agent }\n    on: { pause_failed: agent }\n\
         \x20 bye:\n    hangup: { say: reset_success }\n  agent:\n    transfer: { say: transferring, queue: service-desk }\n",
    );
    s
}

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../voice-prompts");
    let (catalogs, _) = Catalogs::load_dir(&dir, &mut SourceMap::new());
    let text = generated_flow(1000);
    let compiled = compile("generated.yaml", &text, Some(&catalogs));
    assert!(compiled.is_ok(), "{:#?}", compiled.diagnostics);
    assert!(compiled.flow.as_ref().map_or(0, |f| f.nodes.len()) >= 1000);
    c.bench_function("check_1000_node_flow", |b| {
        b.iter(|| compile("generated.yaml", black_box(&text), Some(&catalogs)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
