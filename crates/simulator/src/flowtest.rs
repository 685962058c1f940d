//! Flow tests: `<flow>.test.yaml` files beside a flow, and `tests:` blocks inside flow files,
//! with scripted callers, run against a [`Lab`]. The format is documented in
//! `docs/flow-language.md` ("Flow tests"); its vocabulary is `resetline_flow::spec::TEST_CASE`,
//! which the flow loader checks with positions (a unit test below ties the two).
//!
//! Invariant: a test passes only when every step and every expectation held; a failure always
//! says which step or expectation failed and shows the expected script against the actual
//! transcript as a diff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::carrier::{Call, Entry, Line};
use crate::lab::{Lab, LabConfig, find_prompts_dir};
use crate::rest::{Delivery, SmsBehaviour};

/// A `*.test.yaml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The flow file, relative to the test file (default: the sibling without `.test`).
    #[serde(default)]
    pub flow: Option<String>,
    /// The users file for the embedded directory, relative to the test file.
    pub users: String,
    /// Prompt catalogs directory, relative to the test file (default: the nearest
    /// `voice-prompts/` above it).
    #[serde(default)]
    pub prompts: Option<String>,
    /// Default caller id.
    #[serde(default)]
    pub from: Option<String>,
    /// The tests.
    pub tests: Vec<TestCase>,
}

/// One scripted call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the progress line and the summary.
    pub name: String,
    /// Users file for this call, relative to the file holding the case (required in a flow's
    /// `tests:`; in a `*.test.yaml` it overrides the file's `users`).
    #[serde(default)]
    pub users: Option<String>,
    /// Caller id for this call.
    #[serde(default)]
    pub from: Option<String>,
    /// How the carrier treats the n-th SMS (the last entry repeats).
    #[serde(default)]
    pub sms: Vec<SmsSpec>,
    /// Numbers the carrier refuses to text (error 21614).
    #[serde(default)]
    pub refuse_sms_to: Vec<String>,
    /// The call has no recording (pausing answers 404).
    #[serde(default)]
    pub no_recording: bool,
    /// The Messages API answers HTTP 500 to every send.
    #[serde(default)]
    pub sms_provider_down: bool,
    /// The ticket system fails every call (HTTP 503).
    #[serde(default)]
    pub tickets_down: bool,
    /// Post every webhook twice, as a carrier retry would; the test fails when a retry gets a
    /// different answer.
    #[serde(default)]
    pub retry_webhooks: bool,
    /// How transfers end: `bridged` (default: an agent took the call), or `queue-full`,
    /// `error`, `hangup` (the queue's `QueueResult`; for `<Dial>`: `busy`, `no-answer`,
    /// `failed`).
    #[serde(default)]
    pub transfer_result: Option<String>,
    /// What the caller hears and does, in order.
    pub steps: Vec<Step>,
    /// What must hold when the call is over.
    #[serde(default)]
    pub expect: Expect,
}

/// How one SMS is delivered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSpec {
    /// Simulated time until it arrives or fails (`2s` by default).
    #[serde(default)]
    pub delay: Option<String>,
    /// `delivered` (default), `failed`, `undelivered` or `lost`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Error code in the failure report (default 30003).
    #[serde(default)]
    pub error_code: Option<u32>,
}

/// One step: exactly one of the fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Expect a prompt containing this text (since the caller's last action).
    #[serde(default)]
    pub hear: Option<String>,
    /// Press these keys at the waiting gather. `$code` is the code in the newest message,
    /// `$first_code` the one in the first.
    #[serde(default)]
    pub press: Option<String>,
    /// With `press`: start pressing this long after the gather began (a barge-in when it
    /// is before the prompts end).
    #[serde(default)]
    pub after: Option<String>,
    /// Stay silent at this many gathers in a row.
    #[serde(default)]
    pub silence: Option<u32>,
    /// Stay silent at each gather until a new message reaches the handset (at most 60).
    #[serde(default)]
    pub wait_for_message: Option<bool>,
    /// Expect a message on the handset (not yet matched) containing this text.
    #[serde(default)]
    pub message: Option<String>,
    /// Jump the shared clock forward (`11m`), e.g. past a code's expiry.
    #[serde(default)]
    pub jump: Option<String>,
    /// Hang up at the waiting gather.
    #[serde(default)]
    pub hangup: Option<bool>,
}

/// Expectations checked after the call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How the call ended: `completed`, `caller_hung_up`, `transferred`, `failed`.
    #[serde(default)]
    pub end: Option<String>,
    /// The flow outcome recorded for the call (`reset_done`, `ticket_opened`, ...).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Nodes the call must have entered.
    #[serde(default)]
    pub visits: Vec<String>,
    /// Nodes the call must not have entered.
    #[serde(default)]
    pub not_visits: Vec<String>,
    /// The recording's state changes, in order (`[paused, in-progress]`).
    #[serde(default)]
    pub recording: Option<Vec<String>>,
    /// Messages the carrier accepted.
    #[serde(default)]
    pub messages: Option<usize>,
    /// Audit events that must appear, in this order (others may come between).
    #[serde(default)]
    pub audit: Vec<String>,
    /// The call takes at most this long in simulated time (`90s`).
    #[serde(default)]
    pub max_duration: Option<String>,
}

/// Parses `500ms`, `5s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// The result of one test case.
#[derive(Debug)]
pub struct CaseResult {
    /// The test's name.
    pub name: String,
    /// Problems; empty when it passed.
    pub failures: Vec<String>,
    /// Expected script against the actual transcript, when a step failed.
    pub diff: Option<String>,
    /// The whole transcript with times.
    pub transcript: Vec<Entry>,
    /// How the call ended.
    pub end: String,
    /// The flow outcome.
    pub outcome: Option<String>,
    /// Simulated call time, ms.
    pub elapsed_ms: u64,
    /// Keys pressed.
    pub keypresses: usize,
    /// Where the time went.
    pub spent: crate::carrier::Spent,
    /// Prompts heard (Say and Play).
    pub prompts: usize,
    /// Nodes entered.
    pub visited: Vec<String>,
    /// The line of the case in its file, when known (a flow's `tests:` block).
    pub line: Option<usize>,
}

impl CaseResult {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Results of one test file.
#[derive(Debug)]
pub struct FileResult {
    /// The test file.
    pub file: PathBuf,
    /// The flow id.
    pub flow: String,
    /// Every node of the flow.
    pub nodes: Vec<String>,
    /// One per test case.
    pub cases: Vec<CaseResult>,
}

/// A test file that could not be run at all.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// A flow file's `tests:` block (the rest of the flow is the loader's).
#[derive(Debug, Deserialize)]
struct InFlow {
    #[serde(default)]
    tests: Option<Vec<TestCase>>,
}

fn is_test_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml"))
}

/// Whether `p` is a flow file with a top-level `tests:` key (read as plain YAML lines, so a
/// flow with problems is still found and its problems reported when it is run).
fn has_tests(p: &Path) -> bool {
    let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
    yaml && !is_test_file(p)
        && std::fs::read_to_string(p).is_ok_and(|t| {
            t.lines()
                .any(|l| l.trim_end() == "tests:" || l.starts_with("tests: "))
        })
}

/// The files with flow tests under `paths`: `*.test.yaml` files and flow files with a `tests:`
/// block (files as given, directories searched, sorted).
pub fn find_test_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| is_test_file(f) || has_tests(f))
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    out
}

struct Loaded {
    cases: Vec<TestCase>,
    /// Each case's line in the file, when known (a flow's `tests:` block).
    lines: Vec<usize>,
    /// The directory that case `users:` paths are relative to.
    dir: PathBuf,
    /// The file's `users` (a `*.test.yaml`), used by cases without their own.
    users: Option<PathBuf>,
    from: Option<String>,
    flow_path: PathBuf,
    flows_dir: PathBuf,
    prompts_dir: PathBuf,
}

fn load(path: &Path) -> Result<Loaded, LoadError> {
    let fail = |e: &dyn std::fmt::Display| LoadError(format!("{}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (file, lines, flow_path) = if is_test_file(path) {
        let file: TestFile = serde_saphyr::from_str(&text).map_err(|e| fail(&e))?;
        let flow_path = match &file.flow {
            Some(f) => dir.join(f),
            None => {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .replace(".test.yaml", ".yaml");
                dir.join(name)
            }
        };
        (file, Vec::new(), flow_path)
    } else {
        let (file, lines) = in_flow(path, &text)?;
        (file, lines, path.to_path_buf())
    };
    let flows_dir = flow_path.parent().unwrap_or(&dir).to_path_buf();
    let prompts_dir = match &file.prompts {
        Some(p) => dir.join(p),
        None => find_prompts_dir(&flows_dir)
            .ok_or_else(|| fail(&"no voice-prompts/ directory found above it (set `prompts:`)"))?,
    };
    Ok(Loaded {
        users: (!file.users.is_empty()).then(|| dir.join(&file.users)),
        cases: file.tests,
        lines,
        dir,
        from: file.from,
        flow_path,
        flows_dir,
        prompts_dir,
    })
}

/// The `tests:` of the flow file `path` (contents `text`) as a test file, with each case's
/// line: the flow must check clean first, so a mistake in a test is reported with its line and
/// column.
fn in_flow(path: &Path, text: &str) -> Result<(TestFile, Vec<usize>), LoadError> {
    let name = path.display().to_string();
    let compiled = resetline_flow::compile(&name, text, None);
    if compiled.errors() > 0 {
        let mut sources = resetline_flow::SourceMap::new();
        sources.add(&name, text);
        let shown: Vec<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity() == resetline_flow::Severity::Error)
            .map(|d| d.render(&sources))
            .collect();
        return Err(LoadError(format!(
            "{name}: the flow does not load, so its tests cannot run:\n{}",
            shown.join("\n")
        )));
    }
    let lines = compiled
        .flow
        .map(|f| f.test_cases.iter().map(|c| c.span.start.line).collect())
        .unwrap_or_default();
    let flow: InFlow =
        serde_saphyr::from_str(text).map_err(|e| LoadError(format!("{name}: {e}")))?;
    let tests = flow
        .tests
        .ok_or_else(|| LoadError(format!("{name}: no flow tests in it (no `tests:` block)")))?;
    let file = TestFile {
        flow: None,
        users: String::new(),
        prompts: None,
        from: None,
        tests,
    };
    Ok((file, lines))
}

/// Runs every test case of the file at `path`; `progress` is told of each finished case.
///
/// # Errors
/// The file cannot be read or parsed, the flow or its prompts do not load.
pub async fn run_file(
    path: &Path,
    progress: &mut dyn FnMut(&CaseResult),
) -> Result<FileResult, LoadError> {
    run_file_with(path, None, progress).await
}

/// Runs the test file at `path` against the flow file `flow` instead of the one it names
/// (`resetline diff` runs a flow's tests against two versions). Every `*.yaml` beside `flow`
/// is loaded, so it should be alone in its directory; prompts and users resolve as for
/// [`run_file`].
///
/// # Errors
/// As [`run_file`].
pub async fn run_file_against(
    path: &Path,
    flow: &Path,
    progress: &mut dyn FnMut(&CaseResult),
) -> Result<FileResult, LoadError> {
    run_file_with(path, Some(flow), progress).await
}

async fn run_file_with(
    path: &Path,
    flow_override: Option<&Path>,
    progress: &mut dyn FnMut(&CaseResult),
) -> Result<FileResult, LoadError> {
    let mut loaded = load(path)?;
    if let Some(f) = flow_override {
        loaded.flow_path = f.to_path_buf();
        loaded.flows_dir = f.parent().unwrap_or(Path::new(".")).to_path_buf();
    }
    let mut cases = Vec::new();
    let mut flow = String::new();
    let mut nodes = Vec::new();
    for (i, case) in loaded.cases.iter().enumerate() {
        let users = match (&case.users, &loaded.users) {
            (Some(u), _) => loaded.dir.join(u),
            (None, Some(u)) => u.clone(),
            (None, None) => {
                return Err(LoadError(format!(
                    "{}: test `{}` has no `users:` file for the embedded directory",
                    path.display(),
                    case.name
                )));
            }
        };
        let cfg = LabConfig {
            flows_dir: loaded.flows_dir.clone(),
            prompts_dir: loaded.prompts_dir.clone(),
            users,
        };
        let lab = Lab::start(&cfg)
            .await
            .map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
        flow = lab.flow_id_of(&loaded.flow_path).ok_or_else(|| {
            LoadError(format!(
                "{}: flow {} did not load",
                path.display(),
                loaded.flow_path.display()
            ))
        })?;
        nodes = lab.nodes(&flow);
        let from = case
            .from
            .clone()
            .or(loaded.from.clone())
            .unwrap_or_else(|| "+15555550100".to_string());
        let mut result = run_case(&lab, &flow, &from, case).await;
        result.line = loaded.lines.get(i).copied();
        progress(&result);
        cases.push(result);
    }
    Ok(FileResult {
        file: path.to_path_buf(),
        flow,
        nodes,
        cases,
    })
}

fn behaviours(specs: &[SmsSpec]) -> Result<Vec<SmsBehaviour>, String> {
    specs
        .iter()
        .map(|s| {
            let delay = match &s.delay {
                Some(d) => parse_duration(d).ok_or_else(|| format!("sms delay `{d}`"))?,
                None => SmsBehaviour::default().delay,
            };
            let code = s.error_code.unwrap_or(30003);
            let outcome = match s.outcome.as_deref().unwrap_or("delivered") {
                "delivered" => Delivery::Delivered,
                "failed" => Delivery::Failed(code),
                "undelivered" => Delivery::Undelivered(code),
                "lost" => Delivery::Lost,
                other => return Err(format!("sms outcome `{other}`")),
            };
            Ok(SmsBehaviour { delay, outcome })
        })
        .collect()
}

/// What a step expects to see in the transcript, as a diff line.
fn step_lines(step: &Step) -> Vec<String> {
    if let Some(h) = &step.hear {
        return vec![format!("say: …{h}…")];
    }
    if let Some(k) = &step.press {
        return vec![format!("press: {k}")];
    }
    if let Some(n) = step.silence {
        return vec!["silence".to_string(); usize::try_from(n).unwrap_or(0)];
    }
    if step.hangup == Some(true) {
        return vec!["caller hangs up".to_string()];
    }
    Vec::new()
}

fn heard(line: &Line) -> Option<String> {
    match line {
        Line::Say { .. } | Line::Play(_) | Line::Keys(_) | Line::Silence | Line::CallerHangup => {
            Some(line.to_string())
        }
        _ => None,
    }
}

fn matches(expected: &str, actual: &str) -> bool {
    if let Some(h) = expected
        .strip_prefix("say: …")
        .and_then(|h| h.strip_suffix('…'))
    {
        return (actual.starts_with("say: ") || actual.starts_with("play: ")) && actual.contains(h);
    }
    if expected.starts_with("press: $") {
        return actual.starts_with("press: ");
    }
    expected == actual
}

/// A line diff of the expected script against what was heard and done: `  ` both, `- `
/// expected but missing, `+ ` happened but not in the script.
pub fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if matches(&expected[i], &actual[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < n || j < m {
        if i < n && j < m && matches(&expected[i], &actual[j]) {
            out.push_str(&format!("    {}\n", actual[j]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("  + {}\n", actual[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}\n", expected[i]));
            i += 1;
        }
    }
    out
}

fn caller_index(t: &[Entry]) -> usize {
    t.iter()
        .rposition(|e| matches!(e.line, Line::Keys(_) | Line::Silence | Line::CallerHangup))
        .map_or(0, |i| i + 1)
}

/// Runs one scripted call against `lab`.
pub async fn run_case(lab: &Lab, flow: &str, from: &str, case: &TestCase) -> CaseResult {
    let mut failures = Vec::new();
    match behaviours(&case.sms) {
        Ok(b) => lab.twilio.set_sms(b),
        Err(e) => failures.push(format!("bad test: {e}")),
    }
    for n in &case.refuse_sms_to {
        lab.twilio.refuse(n);
    }
    lab.twilio.set_recording_absent(case.no_recording);
    lab.twilio.set_down(case.sms_provider_down);
    lab.ticket_system.set_down(case.tickets_down);
    let mut spec = lab.spec(flow, from);
    spec.retry_each = case.retry_webhooks;
    if let Some(r) = &case.transfer_result {
        spec.transfer_result = r.clone();
    }
    let mut call = lab.call(spec).await;
    let mut cursor = 0usize;
    let mut inbox_seen = 0usize;
    let mut failed_step = None;
    for (i, step) in case.steps.iter().enumerate() {
        if !failures.is_empty() {
            break;
        }
        if let Err(e) = do_step(lab, &mut call, step, &mut cursor, &mut inbox_seen).await {
            failures.push(format!("step {} ({}): {e}", i + 1, describe(step)));
            failed_step = Some(i);
        }
    }
    if call.end().is_none() {
        call.hang_up().await;
    }
    let actual: Vec<String> = call
        .transcript()
        .iter()
        .filter_map(|e| heard(&e.line))
        .collect();
    let diff_text = failed_step.map(|_| {
        let expected: Vec<String> = case.steps.iter().flat_map(step_lines).collect();
        diff(&expected, &actual)
    });
    let end = call.end().map_or("open", |e| e.name()).to_string();
    let outcome = lab.outcome(call.sid()).await;
    let visited: Vec<String> = lab.visited(call.sid()).await.into_iter().collect();
    if call.retry_mismatches() > 0 {
        failures.push(format!(
            "{} retried webhook(s) got a different answer",
            call.retry_mismatches()
        ));
    }
    if failed_step.is_none() {
        check_expect(
            lab,
            &call,
            &case.expect,
            &end,
            outcome.as_deref(),
            &visited,
            &mut failures,
        );
    }
    CaseResult {
        name: case.name.clone(),
        failures,
        diff: diff_text,
        transcript: call.transcript().to_vec(),
        end,
        outcome,
        elapsed_ms: call.elapsed_ms(),
        keypresses: call.keypresses(),
        spent: call.spent(),
        prompts: call
            .transcript()
            .iter()
            .filter(|e| matches!(e.line, Line::Say { .. } | Line::Play(_)))
            .count(),
        visited,
        line: None,
    }
}

fn describe(step: &Step) -> String {
    step_lines(step).first().cloned().unwrap_or_else(|| {
        if let Some(m) = &step.message {
            format!("message: {m}")
        } else if let Some(j) = &step.jump {
            format!("jump: {j}")
        } else if step.wait_for_message == Some(true) {
            "wait_for_message".to_string()
        } else {
            "empty step".to_string()
        }
    })
}

fn code_from(lab: &Lab, first: bool) -> Option<String> {
    let inbox = lab.twilio.inbox();
    let mut with_code = inbox.iter().filter_map(|m| m.code());
    if first {
        with_code.next()
    } else {
        with_code.next_back()
    }
}

async fn do_step(
    lab: &Lab,
    call: &mut Call,
    step: &Step,
    cursor: &mut usize,
    inbox_seen: &mut usize,
) -> Result<(), String> {
    let actions = [
        step.hear.is_some(),
        step.press.is_some(),
        step.silence.is_some(),
        step.wait_for_message.is_some(),
        step.message.is_some(),
        step.jump.is_some(),
        step.hangup.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if actions != 1 || (step.after.is_some() && step.press.is_none()) {
        return Err("a step has exactly one of hear, press (with after), silence, wait_for_message, message, jump, hangup".into());
    }
    if let Some(text) = &step.hear {
        let t = call.transcript();
        let found = t
            .iter()
            .enumerate()
            .skip(*cursor)
            .find(|(_, e)| match &e.line {
                Line::Say { text: said, .. } => said.contains(text.as_str()),
                Line::Play(f) => f.contains(text.as_str()),
                _ => false,
            });
        return match found {
            Some((i, _)) => {
                *cursor = i + 1;
                Ok(())
            }
            None => Err(format!("did not hear \"{text}\"")),
        };
    }
    if let Some(text) = &step.message {
        let has = |seen: usize| {
            lab.twilio
                .inbox()
                .iter()
                .skip(seen)
                .any(|m| m.body.contains(text.as_str()))
        };
        if !has(*inbox_seen) {
            // The caller looks at the phone once the prompts finished.
            call.finish_prompts().await;
        }
        let inbox = lab.twilio.inbox();
        let found = inbox
            .iter()
            .enumerate()
            .skip(*inbox_seen)
            .find(|(_, m)| m.body.contains(text.as_str()));
        return match found {
            Some((i, _)) => {
                *inbox_seen = i + 1;
                Ok(())
            }
            None => Err(format!(
                "no new message containing \"{text}\" ({} on the handset)",
                inbox.len()
            )),
        };
    }
    if let Some(j) = &step.jump {
        let d = parse_duration(j).ok_or_else(|| format!("bad duration `{j}`"))?;
        call.jump(d).await;
        return Ok(());
    }
    if call.end().is_some() {
        return Err(format!(
            "the call had already ended ({})",
            call.end().map_or("", |e| e.name())
        ));
    }
    if call.listening().is_none() {
        return Err("nothing was listening for the caller".into());
    }
    if let Some(shown) = &step.press {
        if shown.starts_with('$') && step.after.is_none() {
            call.finish_prompts().await;
        }
        let keys = match shown.as_str() {
            k if k.starts_with("$first_code") => {
                code_from(lab, true).ok_or("no code on the handset")? + &k["$first_code".len()..]
            }
            k if k.starts_with("$code") => {
                code_from(lab, false).ok_or("no code on the handset")? + &k["$code".len()..]
            }
            k => k.to_string(),
        };
        let at = match &step.after {
            Some(a) => Some(parse_duration(a).ok_or_else(|| format!("bad duration `{a}`"))?),
            None => None,
        };
        call.press_as(&keys, at, shown).await;
    } else if let Some(n) = step.silence {
        for i in 0..n {
            if call.listening().is_none() {
                return Err(format!("only {i} of {n} silences: nothing was listening"));
            }
            call.silence().await;
        }
    } else if step.wait_for_message == Some(true) {
        let before = lab.twilio.inbox().len();
        let mut rounds = 0;
        while lab.twilio.inbox().len() == before {
            rounds += 1;
            if rounds > 60 || call.listening().is_none() {
                return Err("no message arrived while the caller waited".into());
            }
            call.silence().await;
        }
    } else if step.hangup == Some(true) {
        call.hang_up().await;
    }
    *cursor = caller_index(call.transcript());
    Ok(())
}

fn check_expect(
    lab: &Lab,
    call: &Call,
    expect: &Expect,
    end: &str,
    outcome: Option<&str>,
    visited: &[String],
    failures: &mut Vec<String>,
) {
    if let Some(want) = &expect.end
        && want != end
    {
        failures.push(format!(
            "expected the call to end `{want}`, it ended `{end}`"
        ));
    }
    if let Some(want) = &expect.outcome
        && Some(want.as_str()) != outcome
    {
        failures.push(format!(
            "expected outcome `{want}`, got `{}`",
            outcome.unwrap_or("none")
        ));
    }
    for n in &expect.visits {
        if !visited.contains(n) {
            failures.push(format!(
                "expected a visit to `{n}`; visited: {}",
                visited.join(", ")
            ));
        }
    }
    for n in &expect.not_visits {
        if visited.contains(n) {
            failures.push(format!("expected no visit to `{n}`"));
        }
    }
    if let Some(want) = &expect.recording {
        let got: Vec<String> = lab
            .twilio
            .recording_changes()
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        if &got != want {
            failures.push(format!(
                "expected recording changes [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        }
    }
    if let Some(want) = expect.messages {
        let got = lab.twilio.accepted();
        if got != want {
            failures.push(format!("expected {want} message(s) sent, got {got}"));
        }
    }
    if !expect.audit.is_empty() {
        let got = lab.audit_events(call.sid());
        let mut it = got.iter();
        for want in &expect.audit {
            if !it.any(|g| g == want) {
                failures.push(format!(
                    "expected audit events in order [{}]; got [{}]",
                    expect.audit.join(", "),
                    got.join(", ")
                ));
                break;
            }
        }
    }
    if let Some(max) = &expect.max_duration {
        match parse_duration(max) {
            Some(d) if u128::from(call.elapsed_ms()) > d.as_millis() => failures.push(format!(
                "the call took {:.1} s, more than {max}",
                call.elapsed_ms() as f64 / 1000.0
            )),
            Some(_) => {}
            None => failures.push(format!("bad duration `{max}`")),
        }
    }
}

/// The caller-experience table: one row per test case: simulated call time and where it
/// went (speech, audio and pauses, gather timeouts, typing), keys pressed, prompts heard.
pub fn report(files: &[FileResult]) -> String {
    let secs = |ms: u64| ms as f64 / 1000.0;
    let mut out = format!(
        "{:<48} {:>7} {:>7} {:>7} {:>7} {:>7} {:>5} {:>7}  {}\n",
        "path", "total s", "speech", "audio", "waits", "typing", "keys", "prompts", "outcome"
    );
    for f in files {
        for c in &f.cases {
            let name: String = format!("{}: {}", f.flow, c.name).chars().take(48).collect();
            out.push_str(&format!(
                "{:<48} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>5} {:>7}  {}\n",
                name,
                secs(c.elapsed_ms),
                secs(c.spent.speech_ms),
                secs(c.spent.audio_ms),
                secs(c.spent.waiting_ms),
                secs(c.spent.keying_ms),
                c.keypresses,
                c.prompts,
                c.outcome.as_deref().unwrap_or(&c.end)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields serde reads for `T`, from its unknown-field error.
    fn serde_fields<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let err = serde_saphyr::from_str::<T>("zz_not_a_field: 1\n")
            .expect_err("an unknown field is refused")
            .to_string();
        // the first line: `unknown field `zz_not_a_field`, expected one of name, users, ...`
        let first = err.lines().next().unwrap_or_default();
        let list = first
            .split("expected one of")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"));
        let mut names: Vec<String> = list
            .split(',')
            .map(|n| n.trim().trim_matches('`').to_string())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names
    }

    fn spec_fields(fields: &[resetline_flow::spec::Field]) -> Vec<String> {
        let mut names: Vec<String> = fields.iter().map(|f| f.name.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_case_format_and_the_flow_vocabulary_name_the_same_fields() {
        use resetline_flow::spec;
        assert_eq!(serde_fields::<TestCase>(), spec_fields(spec::TEST_CASE));
        assert_eq!(serde_fields::<Step>(), spec_fields(spec::TEST_STEP));
        assert_eq!(serde_fields::<Expect>(), spec_fields(spec::TEST_EXPECT));
        assert_eq!(serde_fields::<SmsSpec>(), spec_fields(spec::TEST_SMS));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("11m"), Some(Duration::from_secs(660)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn the_diff_marks_missing_and_extra_lines() {
        let expected = vec![
            "say: …Welcome…".to_string(),
            "press: 1".into(),
            "say: …new PIN…".into(),
        ];
        let actual = vec![
            "say: Welcome to the line.".to_string(),
            "press: 1".into(),
            "say: Your ticket number is 1.".into(),
        ];
        assert_eq!(
            diff(&expected, &actual),
            "    say: Welcome to the line.\n    press: 1\n  + say: Your ticket number is 1.\n  - say: …new PIN…\n"
        );
    }
}
