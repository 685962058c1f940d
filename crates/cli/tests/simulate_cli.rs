//! `resetline simulate` with the keypad piped on standard input: prompts are printed, the
//! handset shows the code, the recording state shows while paused, and the path is printed.

use std::io::Write;
use std::process::{Command, Stdio};

use resetline_testkit::root;

fn simulate(keys: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .args(["simulate", "flows/password-reset.yaml"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run resetline");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(keys.as_bytes())
        .expect("write keys");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_whole_sms_reset_typed_on_standard_input() {
    let (code, out) = simulate("1\n100001#\n1\n$code\n58204617#\n58204617#\n");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("say: We sent a code to the number ending in 0199."),
        "{out}"
    );
    assert!(
        out.contains("[handset] sms to +15555550199: Your service desk verification code is "),
        "the inbox is shown: {out}"
    );
    assert!(out.contains("[recording: paused] keys>"), "{out}");
    assert!(
        out.contains("say: Your PIN has been changed. Goodbye."),
        "{out}"
    );
    assert!(
        out.contains("call ended: completed; outcome: reset_done"),
        "{out}"
    );
    assert!(
        out.contains(
            "path: welcome -> identify -> choose_method -> enter_sms_code -> new_pin -> goodbye"
        ),
        "{out}"
    );
}

#[test]
fn silence_and_the_end_of_input_hang_up() {
    let (code, out) = simulate("\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("] silence"), "{out}");
    assert!(out.contains("caller hangs up"), "{out}");
    assert!(out.contains("call ended: caller_hung_up"), "{out}");
}
