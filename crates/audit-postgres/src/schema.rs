//! The versioned schema. Each migration runs once, in order, inside one transaction that
//! holds a transaction-level advisory lock, so replicas starting together do not race; the
//! applied versions are listed in `resetline_audit_migrations`. Running `migrate` again is
//! a no-op. Never edit a shipped migration: add the next version.

use tokio_postgres::Client;

use crate::PgError;

/// Advisory lock key serialising migrations (any constant unlikely to collide).
const MIGRATION_LOCK: i64 = 0x7265_7365_746c_696e; // "resetlin"

/// The migrations, in order: (version, SQL).
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[(1, V1), (2, V2)];

/// Version 1: the append-only record table with the chain columns, the checkpoint table,
/// the triggers that refuse UPDATE, DELETE and TRUNCATE, and the one purge path.
const V1: &str = r#"
CREATE TABLE audit_records (
    chain    text        NOT NULL,
    seq      bigint      NOT NULL CHECK (seq >= 1),
    time     timestamptz NOT NULL,
    event    text        NOT NULL,
    call_id  text        NOT NULL,
    account  text        NOT NULL,
    outcome  text        NOT NULL,
    prev     text        NOT NULL,
    mac      text        NOT NULL,
    line     text        NOT NULL,
    record   jsonb       GENERATED ALWAYS AS (line::jsonb) STORED,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_records_chain_time ON audit_records (chain, time);
CREATE INDEX audit_records_call ON audit_records (call_id);

CREATE TABLE audit_checkpoints (
    id     bigserial   PRIMARY KEY,
    chain  text        NOT NULL,
    count  bigint      NOT NULL,
    time   timestamptz NOT NULL,
    line   text        NOT NULL
);
CREATE INDEX audit_checkpoints_chain ON audit_checkpoints (chain, count);

CREATE FUNCTION resetline_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_records'
       AND current_setting('resetline.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'resetline audit: % is append-only; % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION resetline_audit_refuse_change();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION resetline_audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION resetline_audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION resetline_audit_refuse_change();

-- The retention purge path: deletes the oldest records of one chain, through one seq.
-- The flag is local to the calling transaction, which also appends the purge record.
CREATE FUNCTION resetline_audit_purge(p_chain text, p_through bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    PERFORM set_config('resetline.audit_purge', 'on', true);
    DELETE FROM audit_records WHERE chain = p_chain AND seq <= p_through;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('resetline.audit_purge', 'off', true);
    RETURN removed;
END
$$;
"#;

/// Version 2: record ids. `record_id` is the line's `id` (NULL for records written before
/// ids existed), computed by the database from the sealed line, so it can never disagree
/// with it; a unique index makes a second insert of one id impossible, whichever chain it
/// comes through.
const V2: &str = r#"
ALTER TABLE audit_records
    ADD COLUMN record_id text GENERATED ALWAYS AS (line::jsonb ->> 'id') STORED;
CREATE UNIQUE INDEX audit_records_record_id ON audit_records (record_id);
"#;

/// Applies every migration not applied yet. Returns the schema version now in force.
///
/// # Errors
/// [`PgError::Db`] when a statement fails (the migration's transaction is rolled back).
pub async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS resetline_audit_migrations (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .or_else(|e| {
            // Two replicas creating the table at once: one loses the race, harmlessly.
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    let mut current = 0;
    for (version, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM resetline_audit_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO resetline_audit_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
            tracing::info!(version, "audit schema migrated");
        }
        tx.commit().await?;
        current = *version;
    }
    Ok(current)
}
