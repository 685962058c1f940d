//! The files in `deploy/` as operators use them: the container layout that
//! `deploy/container/stage.sh` makes (the Containerfile runs the same script), its entrypoint
//! (secret files become variables) and its healthcheck, run against a real Redis and
//! PostgreSQL with the compose config; and every shipped config (compose, Kubernetes
//! ConfigMap, systemd) passes `resetline.yaml` validation with exactly the variables its deploy
//! files provide. Paths under /etc/resetline, /usr/share/resetline and /var/lib/resetline are
//! re-rooted into a scratch directory; nothing else in the configs is changed except the
//! listening ports of the one that runs.

use crate::pg;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use resetline_store_redis::testing::RedisServer;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("yaml")
}

/// `stage.sh` into `root`, plus what the deploy files mount beside the config: the flows and
/// the demo users file.
fn stage(root: &Path) {
    let out = Command::new("sh")
        .arg(repo().join("deploy/container/stage.sh"))
        .arg(env!("CARGO_BIN_EXE_resetline"))
        .arg(root)
        .output()
        .expect("run stage.sh");
    assert!(
        out.status.success(),
        "stage.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for tool in ["resetline", "resetline-entrypoint", "resetline-healthcheck"] {
        assert!(root.join("usr/local/bin").join(tool).is_file(), "{tool}");
    }
    let etc = root.join("etc/resetline");
    let out = Command::new("cp")
        .arg("-R")
        .arg(repo().join("flows"))
        .arg(etc.join("flows"))
        .output()
        .expect("cp flows");
    assert!(out.status.success());
    std::fs::copy(
        repo().join("examples/demo/users.yaml"),
        etc.join("users.yaml"),
    )
    .expect("users");
}

/// The config with its absolute paths moved under `root`, written where the deploy files mount it.
fn install_config(root: &Path, text: &str) -> PathBuf {
    let mut text = text.to_string();
    for dir in [
        "/etc/resetline",
        "/usr/share/resetline",
        "/var/lib/resetline",
    ] {
        text = text.replace(dir, &format!("{}{dir}", root.display()));
    }
    let path = root.join("etc/resetline/resetline.yaml");
    std::fs::write(&path, text).expect("config");
    path
}

/// A plausible value for a variable the deploy files set.
fn value_for(name: &str) -> String {
    if name.contains("DATABASE_URL") {
        "postgres://resetline:pw@postgres:5432/resetline?sslmode=disable".into()
    } else if name.contains("REDIS_URL") {
        "redis://redis:6379/0".into()
    } else {
        "v".repeat(40)
    }
}

fn names_in(list: &Value, field: Option<&str>) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| match field {
                    Some(f) => v.get(f).and_then(Value::as_str),
                    None => v.as_str(),
                })
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Each shipped config with the variable names its deploy files set.
fn shipped() -> Vec<(&'static str, String, Vec<String>)> {
    let compose = yaml(&read("deploy/compose.yaml"));
    let engine = &compose["services"]["resetline"];
    let mut compose_names = names_in(&engine["secrets"], None);
    compose_names.extend(
        engine["environment"]
            .as_object()
            .expect("environment map")
            .keys()
            .cloned(),
    );
    let configmap = yaml(&read("deploy/kubernetes/configmap.yaml"));
    let deployment = yaml(&read("deploy/kubernetes/deployment.yaml"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let systemd_names = read("deploy/systemd/resetline.env.example")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    vec![
        (
            "deploy/compose/resetline.yaml",
            read("deploy/compose/resetline.yaml"),
            compose_names,
        ),
        (
            "deploy/kubernetes/configmap.yaml",
            configmap["data"]["resetline.yaml"]
                .as_str()
                .expect("data.resetline.yaml")
                .to_string(),
            names_in(&container["env"], Some("name")),
        ),
        (
            "deploy/systemd/resetline.yaml",
            read("deploy/systemd/resetline.yaml"),
            systemd_names,
        ),
    ]
}

#[test]
fn every_shipped_config_is_valid_with_exactly_the_variables_its_deploy_files_set() {
    for (file, text, names) in shipped() {
        assert!(!names.is_empty(), "{file}: no variables found");
        let dir = tempfile::tempdir().expect("tempdir");
        stage(dir.path());
        let path = install_config(dir.path(), &text);
        let env = |n: &str| names.iter().any(|x| x == n).then(|| value_for(n));
        if let Err(e) = resetline_config::load(&path, &env) {
            panic!("{file} with {names:?}:\n{e}");
        }
        // and the check can fail: each variable is needed
        for missing in &names {
            let without = |n: &str| (n != missing).then(|| env(n)).flatten();
            let unused = resetline_config::load(&path, &without).is_ok()
                && !["RUST_LOG"].contains(&missing.as_str());
            assert!(
                !unused,
                "{file}: {missing} is set but the config never reads it"
            );
        }
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).ok();
    out
}

use resetline_testkit::free_port;

#[test]
fn the_container_layout_serves_the_compose_config_with_real_redis_and_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    stage(&root);
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir(&redis_dir).expect("redis dir");
    let redis = RedisServer::start(&redis_dir, false).expect("redis-server");
    let postgres = pg::Postgres::start();
    let (port, admin) = (free_port(), free_port());
    let text = read("deploy/compose/resetline.yaml")
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin}"));
    let config = install_config(&root, &text);
    // compose's secrets: files named after the variables, with the newline an editor adds
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("secrets dir");
    for (name, value) in [
        ("TWILIO_AUTH_TOKEN", "twilio-auth-token".to_string()),
        ("RESETLINE_HASH_KEY", "h".repeat(64)),
        ("RESETLINE_AUDIT_KEY", "a".repeat(64)),
        ("RESETLINE_AUDIT_DATABASE_URL", postgres.url()),
    ] {
        std::fs::write(secrets.join(name), format!("{value}\n")).expect("secret");
    }
    let bin = root.join("usr/local/bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = dir.path().join("serve.log");
    let mut child = Command::new(bin.join("resetline-entrypoint"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("PATH", &path)
        .env("CREDENTIALS_DIRECTORY", &secrets)
        .env("RESETLINE_REDIS_URL", redis.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("entrypoint");
    let healthcheck = |probe: &str| {
        Command::new(bin.join("resetline-healthcheck"))
            .arg(probe)
            .env("RESETLINE_ADMIN_PORT", admin.to_string())
            .output()
            .expect("healthcheck")
            .status
            .success()
    };
    let start = Instant::now();
    while !healthcheck("/readyz") {
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited ({status}):\n{}", logged());
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("never ready:\n{}", logged());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthcheck("/healthz"), "the image's HEALTHCHECK passes");
    assert!(!healthcheck("/no-such-route"), "and it can fail");
    let ready = http_get(admin, "/readyz");
    assert!(ready.contains("password-reset"), "{ready}");
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    // the Kubernetes CronJob's command, on the chain `serve` does not hold
    let cronjob = yaml(&read("deploy/kubernetes/audit-purge-cronjob.yaml"));
    let args: Vec<String> = names_in(
        &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"],
        None,
    );
    let purge = Command::new(bin.join("resetline"))
        .args(&args)
        .env("RESETLINE_AUDIT_DATABASE_URL", postgres.url())
        .env("RESETLINE_AUDIT_KEY", "a".repeat(64))
        .output()
        .expect("purge");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        purge.status.success(),
        "resetline {args:?}: {}{}",
        String::from_utf8_lossy(&purge.stdout),
        String::from_utf8_lossy(&purge.stderr)
    );
}
