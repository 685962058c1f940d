//! The PostgreSQL audit sink against a real PostgreSQL 15 on 127.0.0.1 (see `support`):
//! calls through `resetline_server::app` write exactly the records the engine makes, one per
//! event, in a chain that verifies; the database refuses changes; tampering is named; a
//! second writer is locked out; the sink survives the database going away (retry buffer);
//! retention purges and verification still catches tampering afterwards; a record id is
//! inserted once (a retry is skipped, a copy slipped in behind the index is named by verify)
//! and intents without an outcome are found.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use resetline_audit::{AuditKey, ChainId, EventType, Outcome, Record, VerifyError};
use resetline_audit_postgres::{PgAudit, PgConfig, PgError, connect, parse_url, verify};
use resetline_audit_writer::{BufferPolicy, Buffered};
use resetline_engine::testing::{CallLog, MemoryAudit, MemoryDirectory};
use resetline_engine::{AuditSink, FakeClock, Secret};
use resetline_server::{AppState, Registry, app};
use resetline_store::MemoryStore;
use support::Postgres;
use time::macros::datetime;
use tower::ServiceExt;

const PUBLIC: &str = "https://ivr.example.com";
const TOKEN: &str = "12345";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

use resetline_testkit::root;

fn key() -> AuditKey {
    AuditKey::new(&[42u8; 32]).expect("key")
}

fn chain(id: &str) -> ChainId {
    ChainId::new(id).expect("chain")
}

fn pg_config(pg: &Postgres, id: &str) -> PgConfig {
    PgConfig {
        db: parse_url(&pg.url()).expect("url"),
        chain: chain(id),
        checkpoint_every: 4,
    }
}

fn state_with(audit: Arc<dyn AuditSink>) -> AppState {
    let log = Arc::new(CallLog::default());
    let clock = Arc::new(FakeClock::at(1_700_000_000_000));
    let engine = resetline_engine::testing::engine(
        vec![MemoryDirectory::dana()],
        &log,
        clock.clone(),
        Arc::new(resetline_store::MemoryLockouts::new()),
    );
    let registry = Arc::new(Registry::default());
    registry.load_dir(&root().join("flows"), &root().join("voice-prompts"));
    AppState::new(
        PUBLIC,
        Secret::new(TOKEN),
        engine,
        registry,
        Arc::new(MemoryStore::new(clock, 1000)),
        audit,
        root().join("voice-prompts"),
    )
}

fn signed(path: &str, params: &[(&str, &str)]) -> Request<Body> {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig =
        resetline_twiml::signature::compute(TOKEN.as_bytes(), &format!("{PUBLIC}{path}"), &owned);
    let body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect();
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(Body::from(body.join("&")))
        .expect("request")
}

async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, String) {
    let resp = app(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A whole PIN reset call plus one refused (unsigned) webhook.
async fn run_call(state: &AppState) {
    let (status, body) = send(
        state,
        signed(
            "/voice/pin-reset",
            &[
                ("CallSid", SID),
                ("From", "+15555550100"),
                ("To", "+15555550000"),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut answer = body;
    for digits in ["1004217", "27182818", "48319273", "48319273"] {
        let path = resetline_engine::testing::next_action(&answer).expect("a Gather");
        let (status, body) = send(
            state,
            signed(&path, &[("CallSid", SID), ("Digits", digits)]),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        answer = body;
    }
    let unsigned = Request::post("/voice/pin-reset")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("CallSid={SID}")))
        .expect("request");
    assert_eq!(send(state, unsigned).await.0, StatusCode::FORBIDDEN);
}

fn describe(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {} {}", r.event, r.outcome, r.reason, r.call_id))
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_write_one_verified_record_per_event_and_the_database_refuses_changes() {
    let pg = Postgres::start();

    // The records the engine makes for this call, from an in-memory sink.
    let memory = Arc::new(MemoryAudit::default());
    run_call(&state_with(memory.clone())).await;
    wait_for("the refused webhook's record", || {
        memory
            .records()
            .iter()
            .any(|r| r.event == EventType::InputValidationFail)
    })
    .await;
    let expected = describe(&memory.records());
    assert!(
        expected
            .iter()
            .any(|e| e.starts_with("authn_password_change ")),
        "{expected:?}"
    );

    let (sink, resumed) = PgAudit::open(pg_config(&pg, "node-1"), key())
        .await
        .expect("open");
    assert_eq!(resumed, 0);
    let sink = Arc::new(sink);
    let buffered = Arc::new(
        Buffered::new(
            sink.clone(),
            BufferPolicy::default(),
            &resetline_engine::OsRandom,
        )
        .expect("ids"),
    );
    let state = state_with(buffered.clone());
    run_call(&state).await;

    let client = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    let n = expected.len() as u64;
    for _ in 0..500 {
        let count: i64 = client
            .query_one(
                "SELECT count(*) FROM audit_records WHERE chain = 'node-1'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        if count as u64 >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored = resetline_audit_postgres::records(&client, &chain("node-1"))
        .await
        .expect("rows");
    let got: Vec<Record> = stored.iter().map(|s| s.record.clone()).collect();
    assert_eq!(
        describe(&got),
        expected,
        "exactly one record per event, in order"
    );
    let seqs: Vec<u64> = stored.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    let report = verify(&client, &chain("node-1"), &key())
        .await
        .expect("verify");
    assert_eq!((report.first_seq, report.records), (1, n));
    assert!(report.checkpoints >= 1, "checkpoints every 4 records");
    let jsonb: String = client
        .query_one(
            "SELECT record->>'event' FROM audit_records WHERE chain = 'node-1' AND seq = 1",
            &[],
        )
        .await
        .expect("jsonb")
        .get(0);
    assert_eq!(jsonb, "session_created");

    // One writer per chain.
    match PgAudit::open(pg_config(&pg, "node-1"), key()).await {
        Err(PgError::Locked { chain }) => assert_eq!(chain, "node-1"),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Migrations are idempotent.
    let mut again = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    assert_eq!(
        resetline_audit_postgres::migrate(&mut again)
            .await
            .expect("migrate"),
        2
    );

    // Append-only: UPDATE, DELETE and TRUNCATE are refused, on both tables.
    for sql in [
        "UPDATE audit_records SET outcome = 'success' WHERE seq = 2",
        "DELETE FROM audit_records WHERE seq = 2",
        "TRUNCATE audit_records",
        "UPDATE audit_checkpoints SET count = 1",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        let message = err
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }

    // A superuser who disables the triggers and edits a row is named by verify.
    client
        .batch_execute(
            "ALTER TABLE audit_records DISABLE TRIGGER USER; \
             UPDATE audit_records SET line = replace(line, '\"node\":\"', '\"node\":\"x') \
               WHERE chain = 'node-1' AND seq = 3; \
             UPDATE audit_records SET account = 'someone-else' WHERE chain = 'node-1' AND seq = 5;",
        )
        .await
        .expect("tamper");
    match verify(&client, &chain("node-1"), &key()).await {
        Err(PgError::Verify(VerifyError::Record(fault))) => {
            assert_eq!(fault.seq, Some(3));
            assert_eq!(fault.file, PathBuf::from("audit_records.node-1"));
        }
        Err(PgError::ColumnMismatch { seq: 5, .. }) => {
            panic!("seq 3 comes first; if its line was unchanged, the flow's records moved")
        }
        other => panic!("expected a record fault, got {other:?}"),
    }
    sink.close_at(time::OffsetDateTime::now_utc())
        .await
        .expect("close");
}

fn old_record(i: u32, at: time::OffsetDateTime) -> Record {
    Record::new(
        at,
        EventType::Identify,
        Outcome::Success,
        format!("CA{i}"),
        "pin-reset",
        "1",
    )
    .with_reason("found")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_through_a_checkpoint_records_it_and_tampering_is_still_named() {
    let pg = Postgres::start();
    let config = PgConfig {
        checkpoint_every: 0,
        ..pg_config(&pg, "purge-1")
    };
    let (sink, _) = PgAudit::open(config, key()).await.expect("open");
    // Three days of records, two per day; a checkpoint is written at each day change.
    let mut i = 0;
    for day in 0..3 {
        for minute in 0..2 {
            i += 1;
            let at = datetime!(2025-01-01 10:00 UTC)
                + time::Duration::days(day)
                + time::Duration::minutes(minute);
            sink.append_records(&[old_record(i, at)])
                .await
                .expect("append");
        }
    }
    // Nanoseconds: the `time` column keeps microseconds, verify must not call that an edit.
    let now = datetime!(2026-06-01 00:00:00.123_456_789 UTC);
    // Day 1 and day 2 are older than the cut-off; day 3 is not.
    let purge = sink
        .purge_before(datetime!(2025-01-03 00:00 UTC), now)
        .await
        .expect("purge");
    assert_eq!(
        (purge.removed, purge.first_seq, purge.record_seq),
        (4, 5, Some(7))
    );
    let nothing = sink
        .purge_before(datetime!(2025-01-03 00:00 UTC), now)
        .await
        .expect("purge again");
    assert_eq!((nothing.removed, nothing.record_seq), (0, None));
    sink.append_records(&[old_record(99, now)])
        .await
        .expect("append after purge");
    sink.close_at(now).await.expect("close");

    let client = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    let report = verify(&client, &chain("purge-1"), &key())
        .await
        .expect("verify after purge");
    assert_eq!((report.first_seq, report.records), (5, 4));
    let purge_row: String = client
        .query_one(
            "SELECT line FROM audit_records WHERE chain = 'purge-1' AND event = 'retention_purge'",
            &[],
        )
        .await
        .expect("purge record")
        .get(0);
    assert!(
        purge_row.contains(r#""before":"2025-01-03T00:00:00Z""#)
            && purge_row.contains(r#""removed":"4""#)
            && purge_row.contains(r#""first_seq":"5""#),
        "{purge_row}"
    );

    // The sink resumes the purged chain after a restart.
    let (sink, resumed) = PgAudit::open(
        PgConfig {
            checkpoint_every: 0,
            ..pg_config(&pg, "purge-1")
        },
        key(),
    )
    .await
    .expect("reopen");
    assert_eq!(resumed, 8);
    sink.close_at(now).await.expect("close");

    // Deleting the oldest remaining record outside the purge path is named.
    client
        .batch_execute(
            "ALTER TABLE audit_records DISABLE TRIGGER USER; \
             DELETE FROM audit_records WHERE chain = 'purge-1' AND seq = 5;",
        )
        .await
        .expect("tamper");
    match verify(&client, &chain("purge-1"), &key()).await {
        Err(PgError::Verify(VerifyError::Record(fault))) => {
            assert_eq!(fault.problem, resetline_audit::RecordProblem::Unanchored);
            assert_eq!(fault.seq, Some(6));
        }
        other => panic!("expected an unanchored start, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_while_the_database_is_down_are_retried_in_order() {
    let pg = Postgres::start();
    let (sink, _) = PgAudit::open(pg_config(&pg, "node-2"), key())
        .await
        .expect("open");
    let buffered = Arc::new(
        Buffered::new(
            Arc::new(sink),
            BufferPolicy::default(),
            &resetline_engine::OsRandom,
        )
        .expect("ids"),
    );
    let at = datetime!(2026-01-01 10:00 UTC);
    buffered
        .append(vec![old_record(1, at)])
        .await
        .expect("written");

    pg.down();
    assert!(
        buffered
            .append(vec![old_record(2, at), old_record(3, at)])
            .await
            .is_err()
    );
    assert!(!buffered.healthy());
    assert_eq!(buffered.stats().pending, 2);

    pg.up();
    let retry = buffered.spawn_retry(Duration::from_millis(50));
    wait_for("the retry after the database came back", || {
        buffered.healthy()
    })
    .await;
    buffered
        .append(vec![old_record(4, at)])
        .await
        .expect("written");
    retry.abort();
    buffered.close().await.expect("close");

    let client = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    let stored = resetline_audit_postgres::records(&client, &chain("node-2"))
        .await
        .expect("rows");
    let calls: Vec<&str> = stored.iter().map(|s| s.record.call_id.as_str()).collect();
    assert_eq!(calls, ["CA1", "CA2", "CA3", "CA4"]);
    verify(&client, &chain("node-2"), &key())
        .await
        .expect("verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_committed_together_in_order_and_the_chain_verifies() {
    let pg = Postgres::start();
    let (sink, _) = PgAudit::open(pg_config(&pg, "group-1"), key())
        .await
        .expect("open");
    let sink = Arc::new(sink);
    let at = datetime!(2026-01-01 10:00 UTC);
    const APPENDS: u32 = 48;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..APPENDS {
        let sink = sink.clone();
        tasks.spawn(async move {
            sink.append_records(&[old_record(2 * i, at), old_record(2 * i + 1, at)])
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("every append is committed");
    }
    let client = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    let rows = client
        .query(
            "SELECT call_id, xmin::text FROM audit_records WHERE chain = 'group-1' ORDER BY seq",
            &[],
        )
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2 * APPENDS as usize, "nothing lost");
    for pair in rows.chunks(2) {
        let (a, b): (String, String) = (pair[0].get(0), pair[1].get(0));
        let (a, b): (u32, u32) = (
            a.trim_start_matches("CA").parse().expect("n"),
            b.trim_start_matches("CA").parse().expect("n"),
        );
        assert_eq!(
            (
                a % 2,
                b,
                pair[0].get::<_, String>(1) == pair[1].get::<_, String>(1)
            ),
            (0, a + 1, true),
            "an append's records stay together, in order, in one transaction"
        );
    }
    let transactions: std::collections::BTreeSet<String> =
        rows.iter().map(|r| r.get::<_, String>(1)).collect();
    assert!(
        transactions.len() < APPENDS as usize / 2,
        "appends waiting for a commit share the next one: {} transactions for {APPENDS} appends",
        transactions.len()
    );
    let report = verify(&client, &chain("group-1"), &key())
        .await
        .expect("the chain verifies");
    assert_eq!(report.records, u64::from(2 * APPENDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_cancelled_mid_transaction_writes_nothing_and_the_next_one_goes_on() {
    let pg = Postgres::start();
    let (sink, _) = PgAudit::open(pg_config(&pg, "cancel-1"), key())
        .await
        .expect("open");
    let at = datetime!(2026-01-01 10:00 UTC);
    sink.append_records(&[old_record(1, at)])
        .await
        .expect("seq 1");
    // Another session holds seq 2 in an open transaction: the sink's INSERT of seq 2 waits
    // for it, and the append waiting there is cancelled (as by the retry buffer's timeout).
    let mut blocker = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    let tx = blocker.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO audit_records (chain, seq, time, event, call_id, account, outcome, prev, mac, line) \
         VALUES ('cancel-1', 2, now(), 'identify', 'CAX', 'unknown', 'success', '', '', '{}')",
        &[],
    )
    .await
    .expect("held row");
    let cancelled = tokio::time::timeout(
        Duration::from_millis(500),
        sink.append_records(&[old_record(2, at)]),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the append was still waiting: cancelled"
    );
    tx.rollback().await.expect("rollback");

    sink.append_records(&[old_record(3, at)])
        .await
        .expect("the next append reconnects, re-reads the head and writes seq 2");
    let client = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    let calls: Vec<String> = client
        .query(
            "SELECT call_id FROM audit_records WHERE chain = 'cancel-1' ORDER BY seq",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        calls,
        ["CA1", "CA3"],
        "the cancelled append's record was rolled back, not committed by the next batch"
    );
    let report = verify(&client, &chain("cancel-1"), &key())
        .await
        .expect("the chain verifies");
    assert_eq!(report.records, 2);
}

fn with_id(i: u32, at: time::OffsetDateTime) -> Record {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&i.to_be_bytes());
    old_record(i, at).with_id(resetline_audit::RecordId::from_bytes(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_record_is_inserted_once_and_a_copy_behind_the_index_is_named() {
    let pg = Postgres::start();
    let at = datetime!(2026-01-01 10:00 UTC);
    let (sink, _) = PgAudit::open(pg_config(&pg, "dup-1"), key())
        .await
        .expect("open");
    sink.append_records(&[with_id(1, at), with_id(2, at)])
        .await
        .expect("written");
    // A retry of a write whose commit went through unacknowledged: sealed again at the next
    // seq, and skipped.
    sink.append_records(&[with_id(2, at), with_id(3, at)])
        .await
        .expect("retry");
    // The same id through another chain (a renamed replica replaying its spill): skipped.
    let (other, _) = PgAudit::open(pg_config(&pg, "dup-2"), key())
        .await
        .expect("open");
    other
        .append_records(&[with_id(1, at)])
        .await
        .expect("retry elsewhere");
    // Records without ids (older writers) are always inserted.
    sink.append_records(&[old_record(4, at), old_record(4, at)])
        .await
        .expect("written");

    let client = connect(&parse_url(&pg.url()).expect("url"))
        .await
        .expect("connect");
    let stored = resetline_audit_postgres::records(&client, &chain("dup-1"))
        .await
        .expect("rows");
    let calls: Vec<&str> = stored.iter().map(|s| s.record.call_id.as_str()).collect();
    assert_eq!(calls, ["CA1", "CA2", "CA3", "CA4", "CA4"]);
    let elsewhere: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_records WHERE chain = 'dup-2'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(elsewhere, 0);
    verify(&client, &chain("dup-1"), &key())
        .await
        .expect("verify");

    // Someone drops the index and slips in a correctly sealed second copy: verify names it.
    sink.close_at(at).await.expect("close");
    let last = stored.last().expect("last");
    let last_line: String = client
        .query_one(
            "SELECT line FROM audit_records WHERE chain = 'dup-1' AND seq = $1",
            &[&(last.seq as i64)],
        )
        .await
        .expect("line")
        .get(0);
    let head = resetline_audit::ChainHead::resume(key(), chain("dup-1"), last_line.as_bytes())
        .expect("head");
    let copy = head.seal(&with_id(2, at)).expect("seal");
    client
        .batch_execute("DROP INDEX audit_records_record_id")
        .await
        .expect("drop index");
    client
        .execute(
            "INSERT INTO audit_records (chain, seq, time, event, call_id, account, outcome, prev, mac, line) \
             VALUES ('dup-1', $1, $2, 'identify', 'CA2', 'unknown', 'success', $3, $4, $5)",
            &[
                &(copy.seq as i64),
                &at,
                &copy.prev,
                &copy.mac,
                &String::from_utf8_lossy(&copy.line).into_owned(),
            ],
        )
        .await
        .expect("insert copy");
    match verify(&client, &chain("dup-1"), &key()).await {
        Err(PgError::Verify(VerifyError::Record(fault))) => {
            assert_eq!(
                (fault.seq, fault.problem),
                (
                    Some(copy.seq),
                    resetline_audit::RecordProblem::DuplicateId { first_seq: 2 }
                )
            );
        }
        other => panic!("expected the copy to be named, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_without_an_outcome_are_found_in_the_table() {
    let pg = Postgres::start();
    let at = datetime!(2026-01-01 10:00 UTC);
    let (sink, _) = PgAudit::open(pg_config(&pg, "intents"), key())
        .await
        .expect("open");
    let intent = |i: u32| {
        let mut r = with_id(i, at);
        r.event = EventType::AuthnPasswordChange;
        r.outcome = Outcome::Intent;
        r
    };
    let done = |i: u32| {
        with_id(100 + i, at).with_detail(
            resetline_audit::INTENT_DETAIL,
            intent(i).id.expect("id").to_string(),
        )
    };
    sink.append_records(&[intent(1), intent(2), done(1)])
        .await
        .expect("written");
    assert_eq!(sink.open_intents().await.expect("read"), vec![intent(2)]);
    sink.append_records(&[done(2)]).await.expect("written");
    assert!(sink.open_intents().await.expect("read").is_empty());
}
