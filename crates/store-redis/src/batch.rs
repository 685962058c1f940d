//! Automatic pipelining: the commands that concurrent webhooks issue within one scheduler tick
//! reach Redis as one pipeline (one write and, usually, one read on the socket) instead of one
//! write and one read each.
//!
//! Without it every command costs the process a `writev` to Redis and a wake-up of the
//! connection's driver task (tokio runs a task woken by the running one next, so the driver
//! drains its queue one command at a time). [`Batched`] queues each caller's commands; its
//! driver yields once per batch, so the other tasks that are ready in this tick queue theirs
//! first, then sends them all as one non-transactional pipeline through the
//! [`ConnectionManager`] (which keeps reconnecting, timing out and parsing as before).
//!
//! Invariants: each caller gets exactly the replies to its own commands, in order; one
//! caller's commands are contiguous in the pipeline and in its order (so a two-command
//! "acquire then read" keeps its meaning); commands of different callers are independent
//! (every command or script is atomic on its own, none relies on another caller's being next);
//! a failed pipeline fails each caller in it with that error; a server error answers only the
//! command that caused it (it is a reply, `Value::ServerError`, as on a plain connection);
//! transactions (`MULTI`/`EXEC`) bypass the queue.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most commands in one pipeline (a burst larger than this goes out as several).
const MAX_COMMANDS: usize = 512;

/// One caller's commands and where their replies go.
struct Job {
    commands: Vec<Cmd>,
    reply: oneshot::Sender<RedisResult<Vec<Value>>>,
    /// When the caller asked: its commands are not sent after it has given up.
    asked: Instant,
}

/// A [`ConnectionLike`] that coalesces concurrent callers' commands into pipelines.
#[derive(Clone)]
pub(crate) struct Batched {
    queue: mpsc::UnboundedSender<Job>,
    direct: ConnectionManager,
}

impl Batched {
    /// Starts the driver on the current tokio runtime; it ends when the last clone is dropped.
    /// `patience` is how long callers wait (the store's timeout): a pipeline still unsent
    /// (Redis reconnecting) when its oldest caller's patience runs out is dropped, not sent
    /// later, so a caller told "timeout" never has its command run behind its back.
    pub(crate) fn start(conn: ConnectionManager, patience: Duration) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(drive(conn.clone(), jobs, patience));
        Batched {
            queue,
            direct: conn,
        }
    }

    async fn submit(&self, commands: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            failure(
                std::io::ErrorKind::BrokenPipe,
                "the pipeline driver stopped",
            )
        };
        self.queue
            .send(Job {
                commands,
                reply,
                asked: Instant::now(),
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl ConnectionLike for Batched {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut replies = self.submit(vec![cmd.clone()]).await?;
            replies.pop().ok_or_else(|| missing_replies(1, 0))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if pipeline.is_transaction() || offset != 0 || count != pipeline.len() {
            return self.direct.req_packed_commands(pipeline, offset, count);
        }
        Box::pin(self.submit(pipeline.cmd_iter().cloned().collect()))
    }

    fn get_db(&self) -> i64 {
        self.direct.get_db()
    }
}

/// An error of the batcher itself, as an I/O error (what the store's callers already handle:
/// a timeout kind reads as a timeout).
fn failure(kind: std::io::ErrorKind, what: impl Into<String>) -> RedisError {
    RedisError::from(std::io::Error::new(kind, what.into()))
}

fn missing_replies(expected: usize, got: usize) -> RedisError {
    failure(
        std::io::ErrorKind::InvalidData,
        format!("redis answered a pipeline of {expected} commands with {got} replies"),
    )
}

/// Collects the jobs queued in one scheduler tick and sends each batch on its own task (so a
/// batch in flight never holds up the next).
async fn drive(
    conn: ConnectionManager,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    patience: Duration,
) {
    while let Some(first) = jobs.recv().await {
        // Let every task that is ready now run (and queue its commands) before sending.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        let mut commands = batch[0].commands.len();
        while commands < MAX_COMMANDS {
            match jobs.try_recv() {
                Ok(job) => {
                    commands += job.commands.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        tokio::spawn(send(conn.clone(), batch, patience));
    }
}

/// Sends one batch as one pipeline, within its oldest caller's patience, and hands each job
/// its replies.
async fn send(mut conn: ConnectionManager, batch: Vec<Job>, patience: Duration) {
    let mut pipeline = Pipeline::with_capacity(batch.len());
    let mut waiting = Vec::with_capacity(batch.len());
    let Some(oldest) = batch.iter().map(|job| job.asked).min() else {
        return;
    };
    for job in batch {
        if job.reply.is_closed() {
            continue; // the caller gave up (timeout): its commands are not sent
        }
        waiting.push((job.commands.len(), job.reply));
        for command in job.commands {
            pipeline.add_command(command);
        }
    }
    if waiting.is_empty() {
        return;
    }
    let total = pipeline.len();
    let result = tokio::time::timeout_at(
        oldest + patience,
        conn.req_packed_commands(&pipeline, 0, total),
    )
    .await
    .unwrap_or_else(|_| {
        Err(failure(
            std::io::ErrorKind::TimedOut,
            "redis did not answer in time",
        ))
    })
    .and_then(|replies| {
        if replies.len() == total {
            Ok(replies)
        } else {
            Err(missing_replies(total, replies.len()))
        }
    });
    match result {
        Ok(replies) => {
            let mut replies = replies.into_iter();
            for (count, reply) in waiting {
                let _ = reply.send(Ok(replies.by_ref().take(count).collect()));
            }
        }
        Err(e) => {
            for (_, reply) in waiting {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    async fn manager(server: &RedisServer) -> ConnectionManager {
        let client = redis::Client::open(server.url()).expect("client");
        ConnectionManager::new(client).await.expect("connect")
    }

    /// Socket reads Redis has processed so far (one per batch of commands it read at once).
    async fn reads(conn: &mut ConnectionManager) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(conn)
            .await
            .expect("info");
        info.lines()
            .find_map(|l| l.strip_prefix("total_reads_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("total_reads_processed")
    }

    /// As the server runs: one worker thread, where a woken task runs next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn concurrent_callers_share_pipelines_and_each_gets_its_own_replies() {
        let dir = tempfile::tempdir().expect("dir");
        let server = RedisServer::start(dir.path(), false).expect("redis");
        let mut probe = manager(&server).await;
        let batched = Batched::start(manager(&server).await, Duration::from_secs(5));
        redis::cmd("SET")
            .arg("text")
            .arg("not a number")
            .exec_async(&mut probe)
            .await
            .expect("set");
        let before = reads(&mut probe).await;
        const CALLERS: usize = 200;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CALLERS {
            let mut conn = batched.clone();
            tasks.spawn(async move {
                // A two-command pipeline (its replies stay together and in order), then, for
                // some callers, a command the server refuses.
                let (set, got): (String, String) = redis::pipe()
                    .cmd("SET")
                    .arg(format!("k{i}"))
                    .arg(format!("v{i}"))
                    .cmd("GET")
                    .arg(format!("k{i}"))
                    .query_async(&mut conn)
                    .await
                    .expect("pipeline");
                assert_eq!((set.as_str(), got), ("OK", format!("v{i}")));
                if i % 10 == 0 {
                    let refused: RedisResult<i64> =
                        redis::cmd("INCR").arg("text").query_async(&mut conn).await;
                    assert!(refused.is_err(), "INCR of a string is refused");
                }
                let n: i64 = redis::cmd("INCR")
                    .arg("counter")
                    .query_async(&mut conn)
                    .await
                    .expect("incr");
                assert!(n >= 1);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("caller");
        }
        let after = reads(&mut probe).await;
        let counter: i64 = redis::cmd("GET")
            .arg("counter")
            .query_async(&mut probe)
            .await
            .expect("get");
        assert_eq!(counter, CALLERS as i64, "every caller's command ran once");
        // 200 callers sent 420 commands in three rounds; one write per command would be
        // 420 reads on the server side (the INFO calls add two).
        assert!(
            after - before <= 40,
            "{} socket reads for {CALLERS} concurrent callers: commands were not pipelined",
            after - before
        );
    }
}
