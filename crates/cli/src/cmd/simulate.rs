//! `resetline simulate FLOW`: an interactive simulated call in the terminal. The flow runs in
//! an in-process server with the simulator's carrier and fakes (`resetline_simulator::Lab`);
//! prompts are printed as text, keys are read from standard input one line per gather, the
//! handset's inbox and the recording state are shown as they change, and the path taken is
//! printed at the end.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use resetline_simulator::flowtest::parse_duration;
use resetline_simulator::lab::find_prompts_dir;
use resetline_simulator::{Lab, LabConfig};

const HELP: &str = "Type keys and Enter (e.g. 100001#). An empty line stays silent until the gather times out; \
$code types the newest code on the handset; :jump 11m moves the clock; :hangup (or end of input) hangs up.";

pub(crate) fn run(
    flow: &Path,
    users: &Path,
    prompts: Option<&Path>,
    from: &str,
) -> anyhow::Result<ExitCode> {
    let flows_dir = flow
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let prompts_dir = match prompts {
        Some(p) => p.to_path_buf(),
        None => find_prompts_dir(&flows_dir)
            .context("no voice-prompts/ directory above the flow (use --prompts DIR)")?,
    };
    let cfg = LabConfig {
        flows_dir,
        prompts_dir,
        users: users.to_path_buf(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(call(&cfg, flow, from))
}

async fn call(cfg: &LabConfig, flow: &Path, from: &str) -> anyhow::Result<ExitCode> {
    let lab = Lab::start(cfg).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = lab
        .flow_id_of(flow)
        .with_context(|| format!("{} did not load", flow.display()))?;
    println!("Calling flow `{id}` from {from}. {HELP}\n");
    let mut call = lab.call(lab.spec(&id, from)).await;
    // Lines can be inserted before prompts already shown (a message arriving while a prompt
    // plays), so remember what was printed rather than how much.
    let mut shown = std::collections::HashSet::new();
    let mut inbox_shown = 0usize;
    let mut path: Vec<String> = Vec::new();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        if let Some(node) = lab.current_node(call.sid()).await
            && path.last() != Some(&node)
        {
            path.push(node);
        }
        for e in call.transcript() {
            let text = e.to_string();
            if !shown.contains(&text) {
                println!("{text}");
                shown.insert(text);
            }
        }
        let inbox = lab.twilio.inbox();
        for m in &inbox[inbox_shown..] {
            println!("          [handset] {} to {}: {}", m.channel, m.to, m.body);
        }
        inbox_shown = inbox.len();
        if call.end().is_some() {
            break;
        }
        print!("[recording: {}] keys> ", lab.twilio.recording_state());
        std::io::stdout().flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            println!();
            call.hang_up().await;
            continue;
        }
        let line = line.trim();
        if line == ":hangup" {
            call.hang_up().await;
        } else if let Some(d) = line.strip_prefix(":jump ") {
            let d = parse_duration(d).with_context(|| format!("bad duration `{d}`"))?;
            call.jump(d).await;
            println!("          (clock moved {d:?})");
        } else if line.is_empty() {
            call.silence().await;
        } else if line == "$code" {
            call.finish_prompts().await;
            match lab.twilio.inbox().iter().rev().find_map(|m| m.code()) {
                Some(code) => call.press_as(&code, None, "$code").await,
                None => println!("          (no code on the handset yet)"),
            }
        } else if line
            .chars()
            .all(|c| c.is_ascii_digit() || c == '#' || c == '*')
        {
            call.press(line).await;
        } else {
            println!("          ({HELP})");
        }
    }
    let visited = lab.visited(call.sid()).await;
    let end = call.end().map_or("open", |e| e.name());
    println!(
        "\ncall ended: {end}; outcome: {}; {:.1} s simulated, {} keys",
        lab.outcome(call.sid()).await.as_deref().unwrap_or("-"),
        call.elapsed_ms() as f64 / 1000.0,
        call.keypresses()
    );
    println!("path: {}", path.join(" -> "));
    let passed: Vec<&String> = visited.iter().filter(|n| !path.contains(n)).collect();
    if !passed.is_empty() {
        println!(
            "also entered: {}",
            passed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
