//! Scale-out acceptance: a real `redis-server` (Debian package) on 127.0.0.1 and two real
//! `resetline serve` processes sharing it, with the real connectors against the local fakes of
//! the Twilio REST API and ServiceNow (`support`). Calls alternate their webhooks between the
//! replicas; a replica is SIGKILLed mid-call; Redis is restarted mid-call; the same webhook is
//! posted to both replicas at once. Afterwards every Redis key and value is scanned for the
//! new PIN and the one-time code.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use resetline_store_redis::testing::{RedisOptions, RedisServer, free_port};
use support::{
    ACCOUNT, Call, Delay, Log, TOKEN, form_value, get, post_webhook, start_slow_providers,
};

const PUBLIC: &str = "https://ivr.example.com";
const BASE: &str = "/voice/password-reset";
const NEW_PIN: &str = "58204617";
const PREFIX: &str = "rl-test:";

use resetline_testkit::root;

/// One `resetline serve` process, killed on drop (its log is printed if the test failed).
struct Replica {
    child: Option<Child>,
    addr: SocketAddr,
    /// The admin port (`/readyz`, `/metrics`).
    admin: SocketAddr,
    audit_dir: PathBuf,
    log: PathBuf,
}

impl Replica {
    /// `store_extra`: more `store:` fields; `env`: more environment variables.
    fn start_with(
        scratch: &Path,
        name: &str,
        redis: &RedisServer,
        fake_url: &str,
        store_extra: &str,
        env: &[(&str, &str)],
    ) -> Replica {
        let redis_url = redis.url();
        let root = root();
        let port = free_port().expect("port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
        let audit_dir = scratch.join(format!("audit-{name}"));
        let config = scratch.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "listen: {addr}\nadmin_listen: {admin}\npublic_url: {PUBLIC}\nflows_dir: {flows}\nprompts_dir: {prompts}\n\
                 carrier: {{ account_sid: {ACCOUNT}, auth_token_env: RL_TWILIO_TOKEN, api_base: \"{fake_url}\" }}\n\
                 directory: {{ kind: embedded, path: {users} }}\n\
                 audit: {{ dir: {audit}, key_env: RL_AUDIT_KEY }}\n\
                 messages: {{ sms: {{ from: \"+15555550000\" }} }}\n\
                 tickets: {{ kind: servicenow, base_url: \"{fake_url}\", username: resetline, password_env: RL_SN_PASSWORD }}\n\
                 hash_key_env: RL_HASH_KEY\nreload: {{ enabled: false }}\n\
                 store: {{ kind: redis, url: \"{redis_url}\", key_prefix: \"{PREFIX}\", timeout_ms: 300{store_extra} }}\n",
                flows = root.join("flows").display(),
                prompts = root.join("voice-prompts").display(),
                users = scratch.join("users.yaml").display(),
                audit = audit_dir.display(),
            ),
        )
        .expect("config");
        let log = scratch.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_resetline"))
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RL_TWILIO_TOKEN", TOKEN)
            .env("RL_AUDIT_KEY", "a".repeat(32))
            .env("RL_HASH_KEY", "h".repeat(32))
            .env("RL_SN_PASSWORD", "sn-password")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn resetline serve");
        Replica {
            child: Some(child),
            addr,
            admin,
            audit_dir,
            log,
        }
    }

    async fn readyz(&self) -> String {
        get(self.admin, "/readyz").await
    }

    /// Waits until `/readyz` answers with `status` (e.g. "200", "503").
    async fn wait_ready(&self, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.readyz().await;
            if r.starts_with(&format!("HTTP/1.1 {status}")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica at {} never answered /readyz {status}; last answer: {r:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    async fn post(&self, path: &str, params: &[(&str, &str)]) -> String {
        post_webhook(self.addr, PUBLIC, path, params).await
    }

    /// Every audit line this replica wrote.
    fn audit(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(&self.audit_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                all.push_str(&text);
            }
        }
        all
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- log of replica {} ---\n{}",
                self.addr,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Redis, the provider fakes and two replicas sharing them.
struct Cluster {
    redis: RedisServer,
    a: Replica,
    b: Replica,
    log: Log,
    /// Slows the fake Messages API down (ms).
    sms_delay: Delay,
    _scratch: tempfile::TempDir,
}

async fn cluster(persistent: bool) -> Cluster {
    cluster_with(
        RedisOptions {
            persistent,
            ..RedisOptions::default()
        },
        "",
        &[],
    )
    .await
}

async fn cluster_with(options: RedisOptions, store_extra: &str, env: &[(&str, &str)]) -> Cluster {
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        root().join("examples/demo/users.yaml"),
        scratch.path().join("users.yaml"),
    )
    .expect("copy users");
    let redis_dir = scratch.path().join("redis");
    std::fs::create_dir_all(&redis_dir).expect("redis dir");
    let redis = RedisServer::start_with(&redis_dir, options).expect("redis-server");
    let (fake_url, log, sms_delay) = start_slow_providers().await;
    let ca = redis.ca_file().display().to_string();
    let mut env = env.to_vec();
    env.push(("SSL_CERT_FILE", &ca));
    let a = Replica::start_with(scratch.path(), "a", &redis, &fake_url, store_extra, &env);
    let b = Replica::start_with(scratch.path(), "b", &redis, &fake_url, store_extra, &env);
    a.wait_ready("200").await;
    b.wait_ready("200").await;
    Cluster {
        redis,
        a,
        b,
        log,
        sms_delay,
        _scratch: scratch,
    }
}

impl Cluster {
    /// The two replicas, `i`-th webhook first: every webhook alternates.
    fn nth(&self, i: usize) -> &Replica {
        if i.is_multiple_of(2) {
            &self.a
        } else {
            &self.b
        }
    }

    fn sms_bodies(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|r| r.path.ends_with("/Messages.json"))
                    .map(|r| r.body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The code in the call's latest code SMS, and its message sid (the fake numbers messages
    /// by log position).
    fn code_sms(&self, sid: &str) -> (String, String) {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        let (i, sms) = log
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, r)| r.path.ends_with("/Messages.json"))
            .find(|(_, r)| {
                form_value(&r.body, "StatusCallback")
                    .is_some_and(|c| c.ends_with(&format!("call={sid}")))
            })
            .expect("a code SMS for the call");
        let text = form_value(&sms.body, "Body").expect("body");
        let code = text
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .expect("6-digit code")
            .to_string();
        (code, format!("SM{i:032}"))
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// The stored session of `sid` (`<revision>:<encoded session>`), decoded, as JSON text.
    async fn session_json(&self, sid: &str) -> String {
        let mut c = self.redis().await;
        let data: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{PREFIX}{{{sid}}}:session"))
            .query_async(&mut c)
            .await
            .expect("GET");
        let data = data.unwrap_or_default();
        let colon = data.iter().position(|&b| b == b':').expect("revision");
        let session = resetline_store::decode(&data[colon + 1..]).expect("a readable session");
        serde_json::to_string(&session).expect("json")
    }

    /// Every key and value in Redis, as text.
    async fn dump(&self) -> String {
        support::redis_dump(&self.redis.url()).await
    }
}

/// Runs the reference call (SMS method) from the first webhook through the employee ID; the
/// `i`-th webhook goes to `c.nth(i)`, starting at `first`. Returns the call and the replica
/// index used next.
async fn start_call(c: &Cluster, sid: &str, first: usize) -> (Call, usize) {
    let mut i = first;
    let (mut call, resp) = Call::start(c.nth(i).addr, PUBLIC, BASE, sid).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    i += 1;
    for digits in ["1", "100001"] {
        let r = call.on(c.nth(i).addr).press(digits).await;
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        i += 1;
    }
    (call, i)
}

/// Choose SMS on `replica`: the code goes out.
async fn choose_sms(call: &mut Call, replica: &Replica) {
    let resp = call.on(replica.addr).press("1").await;
    assert!(
        resp.contains("We sent a code to the number ending in"),
        "{resp}"
    );
}

/// The code, the new PIN twice, on `replicas` in turn.
async fn finish_call(c: &Cluster, call: &mut Call, replicas: [&Replica; 3]) {
    let (code, _) = c.code_sms(&call.sid);
    let r = call.on(replicas[0].addr).press(&code).await;
    assert!(r.contains("Please enter your new PIN"), "{r}");
    call.on(replicas[1].addr).press(NEW_PIN).await;
    let r = call.on(replicas[2].addr).press(NEW_PIN).await;
    assert!(
        r.contains("Your PIN has been changed. Goodbye.</Say><Hangup />"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_alternating_between_two_replicas_completes_and_redis_holds_no_secret() {
    let c = cluster(false).await;
    let sid = "CA0123456789abcdef0123456789abc001";
    let (mut call, i) = start_call(&c, sid, 0).await;
    choose_sms(&mut call, c.nth(i)).await;
    // The delivery report lands on the other replica than the one that sent the code.
    let (code, message) = c.code_sms(sid);
    let report = c
        .nth(i + 1)
        .post(
            &format!("/sms/status?call={sid}"),
            &[
                ("MessageSid", &message),
                ("MessageStatus", "delivered"),
                ("AccountSid", ACCOUNT),
            ],
        )
        .await;
    assert!(report.starts_with("HTTP/1.1 204"), "{report}");
    assert!(
        c.session_json(sid)
            .await
            .contains("\"delivery\":\"delivered\""),
        "the report was recorded in the shared session"
    );
    finish_call(&c, &mut call, [c.nth(i + 2), c.nth(i + 3), c.nth(i + 4)]).await;
    let hangup = c
        .nth(i + 5)
        .post(
            &format!("{BASE}/status"),
            &[("CallSid", sid), ("CallStatus", "completed")],
        )
        .await;
    assert!(hangup.starts_with("HTTP/1.1 204"), "{hangup}");

    let order: Vec<String> = c
        .log
        .lock()
        .map(|l| {
            l.iter()
                .map(|r| format!("{} {}", r.method, r.path.rsplit('/').next().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        order,
        vec![
            "POST Messages.json",
            "POST Twilio.CURRENT.json",
            "POST Twilio.CURRENT.json",
            "POST Messages.json",
            "POST incident",
            "PATCH 9d385017c611228701d22104cc95c371"
        ],
        "each effect exactly once although every webhook changed replica"
    );
    let audit = format!("{}{}", c.a.audit(), c.b.audit());
    for event in [
        "session_created",
        "authn_token_created",
        "authn_password_change",
        "call_ended",
    ] {
        assert!(
            audit.contains(&format!("\"{event}\"")),
            "{event} missing:\n{audit}"
        );
    }

    let dump = c.dump().await;
    assert!(
        dump.contains(&format!("{PREFIX}{{{sid}}}:session")),
        "{dump}"
    );
    for marker in [NEW_PIN, code.as_str()] {
        assert!(
            !dump.contains(marker),
            "a secret is stored in Redis:\n{dump}"
        );
    }
    assert!(
        !dump.contains(&format!("{PREFIX}{{{sid}}}:lease")),
        "leases are released after each webhook:\n{dump}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_call_loses_nothing() {
    let mut c = cluster(false).await;
    let sid = "CA0123456789abcdef0123456789abc002";
    let (mut call, i) = start_call(&c, sid, 0).await;
    choose_sms(&mut call, c.nth(i)).await;
    c.a.kill();
    assert_eq!(c.a.readyz().await, "", "replica a is gone");
    finish_call(&c, &mut call, [&c.b, &c.b, &c.b]).await;
    assert_eq!(
        c.sms_bodies().len(),
        2,
        "one code and one notice, nothing resent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_in_the_middle_of_a_step_frees_the_call_for_the_other() {
    let mut c = cluster(false).await;
    let sid = "CA0123456789abcdef0123456789abc006";
    let (mut call, _) = start_call(&c, sid, 0).await;
    // Replica a takes the call's lease and hangs in the SMS provider call; it is killed there.
    c.sms_delay
        .store(5_000, std::sync::atomic::Ordering::Relaxed);
    let (addr, path) = (c.a.addr, call.next().to_string());
    let stuck = tokio::spawn(async move {
        post_webhook(
            addr,
            PUBLIC,
            &path,
            &[
                ("CallSid", "CA0123456789abcdef0123456789abc006"),
                ("Digits", "1"),
            ],
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.sms_bodies().is_empty() {
        assert!(
            Instant::now() < deadline,
            "replica a never called the SMS provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.a.kill();
    let _ = stuck.await;
    c.sms_delay.store(0, std::sync::atomic::Ordering::Relaxed);
    // The carrier retries on b (fallback URL): b waits until the dead holder's lease lapses
    // (it is no longer renewed), then runs the step from the last saved session.
    let started = Instant::now();
    choose_sms(&mut call, &c.b).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "freed within the lease ttl, not the step budget: {:?}",
        started.elapsed()
    );
    finish_call(&c, &mut call, [&c.b, &c.b, &c.b]).await;
    assert_eq!(
        c.sms_bodies().len(),
        3,
        "the dead replica's attempt, b's code and the notice: a crashed step runs again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_on_both_replicas_at_once_has_one_effect() {
    let c = cluster(false).await;
    for n in 0..3 {
        let sid = format!("CA0123456789abcdef0123456789abc1{n:02}");
        let (call, _) = start_call(&c, &sid, n).await;
        let before = c.sms_bodies().len();
        let path = call.next();
        let params = [("CallSid", sid.as_str()), ("Digits", "1")];
        let (x, y) = tokio::join!(c.a.post(path, &params), c.b.post(path, &params));
        assert_eq!(
            c.sms_bodies().len(),
            before + 1,
            "exactly one SMS for call {n}"
        );
        let body = |r: &str| r.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        assert!(x.contains("We sent a code"), "{x}");
        assert_eq!(body(&x), body(&y), "the loser replays the identical answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_call_is_survived_and_audited() {
    let mut c = cluster(true).await;
    let sid = "CA0123456789abcdef0123456789abc003";
    let (mut call, i) = start_call(&c, sid, 0).await;
    choose_sms(&mut call, c.nth(i)).await;

    c.redis.stop();
    c.a.wait_ready("503").await;
    c.b.wait_ready("503").await;
    // A call arriving while Redis is down hears an apology and a next step.
    let other = "CA0123456789abcdef0123456789abc004";
    let resp =
        c.b.post(BASE, &[("CallSid", other), ("From", "+15555550100")])
            .await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(
        resp.contains("Please call again in a few minutes.") && resp.contains("<Hangup />"),
        "{resp}"
    );
    let metrics = get(c.b.admin, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("resetline_store_failures_total ") && !l.ends_with(" 0")),
        "store failures are counted:\n{metrics}"
    );
    assert!(
        c.b.audit().contains("\"store_unavailable\""),
        "the failed call is audited:\n{}",
        c.b.audit()
    );

    c.redis.restart().expect("redis back");
    c.a.wait_ready("200").await;
    c.b.wait_ready("200").await;
    // The call in progress survived the restart (append-only file, fsync always).
    finish_call(&c, &mut call, [&c.b, &c.a, &c.b]).await;
    let audit = format!("{}{}", c.a.audit(), c.b.audit());
    assert!(audit.contains("\"authn_password_change\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_password_from_the_environment() {
    let password = "redis-password-from-env";
    let c = cluster_with(
        RedisOptions {
            tls: true,
            password: Some(password.into()),
            ..RedisOptions::default()
        },
        ", password_env: RL_REDIS_PASSWORD",
        &[("RL_REDIS_PASSWORD", password)],
    )
    .await;
    assert!(c.redis.url().starts_with("rediss://"));
    let sid = "CA0123456789abcdef0123456789abc005";
    let (mut call, i) = start_call(&c, sid, 0).await;
    choose_sms(&mut call, c.nth(i)).await;
    finish_call(&c, &mut call, [c.nth(i + 1), c.nth(i + 2), c.nth(i + 3)]).await;

    // A replica with the wrong password stays unready, and says why without the password.
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        root().join("examples/demo/users.yaml"),
        scratch.path().join("users.yaml"),
    )
    .expect("users");
    let ca = c.redis.ca_file().display().to_string();
    let wrong = Replica::start_with(
        scratch.path(),
        "wrong",
        &c.redis,
        "http://127.0.0.1:9",
        ", password_env: RL_REDIS_PASSWORD",
        &[
            ("RL_REDIS_PASSWORD", "not-the-password"),
            ("SSL_CERT_FILE", &ca),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = String::new();
    while ready.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = wrong.readyz().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ready = wrong.readyz().await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("session store unreachable"), "{ready}");
    let log = std::fs::read_to_string(&wrong.log).unwrap_or_default();
    assert!(
        !log.contains("not-the-password") && !log.contains("panicked"),
        "{log}"
    );
}
