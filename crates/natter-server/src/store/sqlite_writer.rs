//! The SQLite store's writer: one connection on a thread of its own that group-commits the
//! per-message writes (appends and cursor moves) and answers the per-message reads (send plans,
//! room checks, the senders a receipt goes to).
//!
//! sqlx runs each SQLite connection on a worker thread and hands it every statement, and every
//! row back, through a channel: on a busy core each statement cost two thread switches
//! (docs/benchmarks.md). Here a batch of jobs costs one wake-up. The thread takes every job
//! waiting, answers the reads from its page cache (which stays warm: only other connections'
//! commits empty it), then writes in one transaction. Rarer writes (accounts, memberships) still
//! go through sqlx on a second connection; SQLite's lock and busy timeout keep the two apart.

use std::path::Path;
use std::time::Duration;

use futures_util::FutureExt;
use rusqlite::{Connection, OpenFlags, Params, Row, Transaction, TransactionBehavior, ffi};

use super::StoreError;
use super::group_commit::{GroupCommit, Reply};
use super::sql_writes::{
    INSERT_MESSAGE, MOVE_CURSOR, NEXT_SEQ, QueuedCursor, QueuedMessage, Write, settle,
};

// The writer's page cache is 16 MiB: at each commit SQLite walks the cache's whole hash
// table (`pcache1TruncateUnsafe`), 8 % of natterd's time with 64 MiB; a smaller cache reads more
// pages back from the OS instead, so 8 to 64 MiB measured the same within noise.

/// The most prepared statements the writer keeps.
const STATEMENTS_KEPT: usize = 32;

/// A job for the writer thread.
pub(super) enum Job {
    /// A write, committed with the rest of its batch.
    Write(Write),
    /// A read, answered before the batch's writes.
    Read(Box<dyn FnOnce(&Connection) + Send>),
}

impl From<Write> for Job {
    fn from(write: Write) -> Self {
        Self::Write(write)
    }
}

/// The writer thread's queue.
pub(super) type SqliteWriter = GroupCommit<Job>;

/// Opens a writer connection to the (migrated) database at `path` and starts its thread.
///
/// # Errors
/// The database cannot be opened or the thread cannot start.
pub(super) fn start(path: &Path) -> anyhow::Result<SqliteWriter> {
    let opening = || format!("opening the SQLite writer on {}", path.display());
    let mut db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", opening()))?;
    db.busy_timeout(Duration::from_secs(10))
        .and_then(|()| {
            db.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384;",
            )
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", opening()))?;
    db.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    GroupCommit::on_thread("natter-sqlite", move |jobs| run(&mut db, jobs))
        .map_err(|e| anyhow::anyhow!("{}: {e}", opening()))
}

impl SqliteWriter {
    /// Runs `read` on the writer thread, before the writes of its batch.
    pub(super) async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(|reply: Reply<R>| {
            Job::Read(Box::new(move |db| {
                // A caller that gave up has nobody to tell.
                let _ = reply.send(read(db));
            }))
        })
        .await
    }
}

/// Answers a batch's reads, then writes its writes.
fn run(db: &mut Connection, jobs: Vec<Job>) {
    let mut writes = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Read(read) => read(db),
            Job::Write(write) => writes.push(write),
        }
    }
    if !writes.is_empty() {
        write_batch(db, writes);
    }
}

/// Writes a batch (see [`settle`]). Nothing in it waits but the database, so it is done in
/// its first poll.
pub(super) fn write_batch(db: &mut Connection, batch: Vec<Write>) {
    settle(batch, |writes| {
        Box::pin(std::future::ready(write_in_one(db, writes)))
    })
    .now_or_never()
    .expect("a SQLite batch never waits");
}

/// Writes in one transaction, recording each write's outcome in it.
fn write_in_one(db: &mut Connection, batch: &mut [Write]) -> Result<(), StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for write in batch.iter_mut() {
        match write {
            Write::Append(message, _) => message.seq = append_one(&tx, message)?,
            Write::MoveCursor(cursor, _) => cursor.after = move_one(&tx, cursor)?,
        }
    }
    tx.commit()?;
    Ok(())
}

/// Appends a message: its seq, or `None` if this (device, client_msg_id) is already stored.
fn append_one(tx: &Transaction<'_>, message: &QueuedMessage) -> Result<Option<i64>, StoreError> {
    let seq = optional(tx.prepare_cached(&numbered(NEXT_SEQ))?.query_row(
        (
            &message.conversation_id,
            message.server_ts,
            &message.sender_device,
            &message.client_msg_id,
        ),
        |row| row.get::<_, i64>(0),
    ))?;
    let Some(seq) = seq else { return Ok(None) };
    tx.prepare_cached(&numbered(INSERT_MESSAGE))?
        .execute((
            &message.conversation_id,
            seq,
            &message.sender_id,
            &message.sender_device,
            &message.client_msg_id,
            message.client_ts,
            message.server_ts,
            &message.ciphertext,
        ))
        .map_err(|e| classify(e, "message", "conversation"))?;
    Ok(Some(seq))
}

/// Moves a device's cursors (see [`MOVE_CURSOR`]).
fn move_one(tx: &Transaction<'_>, cursor: &QueuedCursor) -> Result<Option<(i64, i64)>, StoreError> {
    let moved = tx.prepare_cached(&numbered(MOVE_CURSOR))?.query_row(
        (
            &cursor.device_id,
            &cursor.conversation_id,
            &cursor.user_id,
            cursor.delivered_seq,
            cursor.read_seq,
        ),
        |row| <(i64, i64)>::try_from(row),
    );
    optional(moved).map_err(|e| classify(e, "cursor", "device"))
}

/// The rows of `sql` (written for sqlx, with `$n` parameters) with `params`, each as a `T`.
pub(super) fn rows<T>(db: &Connection, sql: &str, params: impl Params) -> Result<Vec<T>, StoreError>
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    let mut statement = db.prepare_cached(&numbered(sql))?;
    let rows = statement.query_map(params, |row| T::try_from(row))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `sql` with its `$n` parameters (sqlx's, and PostgreSQL's) as `?n`, SQLite's numbered form:
/// to SQLite, `$n` names a parameter, numbered by where it first appears.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

/// `None` for no row.
fn optional<T>(row: rusqlite::Result<T>) -> rusqlite::Result<Option<T>> {
    match row {
        Ok(value) => Ok(Some(value)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A constraint failure as what it means: a `unique` row that exists, or a `missing` row
/// referred to.
fn classify(error: rusqlite::Error, unique: &'static str, missing: &'static str) -> StoreError {
    match error.sqlite_error() {
        Some(e)
            if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(unique)
        }
        Some(e) if e.extended_code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
            StoreError::Missing(missing)
        }
        _ => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use natter_proto::{ConversationId, DeviceId, UserId};
    use tokio::sync::oneshot;

    use super::*;
    use tempfile::TempDir;

    use crate::store::{
        MessageStore, NewDevice, NewMessage, OnStored, SqliteStore, Store, testing,
    };

    /// A store with a user per name, and a writer connection of the test's own.
    async fn store_with(names: &[&str]) -> (SqliteStore, Connection, Vec<UserId>, TempDir) {
        let (store, dir) = testing::sqlite().await;
        let users = testing::users(&store, names).await;
        let db = Connection::open(dir.path().join(testing::DB_FILE)).unwrap();
        db.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        (store, db, users, dir)
    }

    /// A message from `device` with the given id.
    fn message(
        conversation_id: ConversationId,
        sender_id: UserId,
        sender_device: DeviceId,
        client_msg_id: &str,
    ) -> NewMessage<'_> {
        NewMessage {
            conversation_id,
            sender_id,
            sender_device,
            client_msg_id,
            client_ts: None,
            ciphertext: "opaque",
            server_ts: 1,
        }
    }

    /// What a write was answered, once its batch is written.
    fn answer<R>(mut reply: oneshot::Receiver<Result<R, StoreError>>) -> Result<R, StoreError> {
        reply.try_recv().expect("every write is answered")
    }

    #[tokio::test]
    async fn a_batch_commits_in_conversation_order_and_stores_a_resend_once() {
        let (store, mut db, users, _dir) = store_with(&["alice", "bob", "carol"]).await;
        let (alice, bob, carol) = (users[0], users[1], users[2]);
        let (with_bob, with_carol) = (
            store.direct_conversation(alice, bob, 0).await.unwrap(),
            store.direct_conversation(alice, carol, 0).await.unwrap(),
        );
        // `late` sorts after `early`, and its messages arrive first.
        let (early, late) = if with_bob.to_string() < with_carol.to_string() {
            (with_bob, with_carol)
        } else {
            (with_carol, with_bob)
        };
        let device = DeviceId::new();
        let told = Arc::new(Mutex::new(Vec::new()));
        let tell = |name: &'static str| -> OnStored {
            let told = Arc::clone(&told);
            Box::new(move |seq| told.lock().unwrap().push((name, seq)))
        };
        let arrivals = [
            (late, "late-1", "late-1"),
            (early, "early-1", "early-1"),
            (late, "late-2", "late-2"),
            (late, "late-1", "resent"),
        ];
        let (batch, replies): (Vec<_>, Vec<_>) = arrivals
            .iter()
            .map(|&(conversation, id, name)| {
                let (reply, answered) = oneshot::channel();
                let write =
                    Write::append(&message(conversation, alice, device, id), tell(name), reply);
                (write, answered)
            })
            .unzip();
        write_batch(&mut db, batch);
        let seqs: Vec<Option<i64>> = replies.into_iter().map(|r| answer(r).unwrap()).collect();
        // The resend finds the first copy, stored by the same batch.
        assert_eq!(seqs, [Some(1), Some(1), Some(2), None]);
        // Told after the commit in the batch's order: by conversation, then arrival; the
        // resend is not told at all.
        assert_eq!(
            *told.lock().unwrap(),
            [("early-1", 1), ("late-1", 1), ("late-2", 2)]
        );
    }

    #[tokio::test]
    async fn cursor_moves_share_the_batch_and_a_bad_write_fails_alone() {
        let (store, mut db, users, _dir) = store_with(&["alice", "bob"]).await;
        let (alice, bob) = (users[0], users[1]);
        let chat = store.direct_conversation(alice, bob, 0).await.unwrap();
        let phone = DeviceId::new();
        let login = NewDevice {
            id: phone,
            user_id: bob,
            name: "phone",
            token_hash: "hash",
            created_at: 0,
            expires_at: i64::MAX,
        };
        store.create_device(&login).await.unwrap();
        let (appended, stored) = oneshot::channel();
        let mut batch = vec![Write::append(
            &message(chat, alice, DeviceId::new(), "hello"),
            Box::new(|_| {}),
            appended,
        )];
        let moves = [
            (phone, chat, 1, 0),
            (phone, chat, 1, 1),
            // Cursors never move back.
            (phone, chat, 0, 0),
            // A device that does not exist (logged out meanwhile).
            (DeviceId::new(), chat, 1, 0),
            // A conversation that does not exist: this write fails the batch's transaction.
            (phone, ConversationId::new(), 1, 0),
        ];
        let mut replies = Vec::new();
        for (device, conversation, delivered, read) in moves {
            let (reply, answered) = oneshot::channel();
            batch.push(Write::move_cursor(
                (device, bob, conversation),
                delivered,
                read,
                reply,
            ));
            replies.push(answered);
        }
        write_batch(&mut db, batch);
        // Written one by one after the batch failed: the failed attempt left nothing behind.
        assert_eq!(answer(stored).unwrap(), Some(1));
        let mut answers = replies.into_iter().map(answer);
        let mut next = || answers.next().unwrap();
        assert_eq!(
            [next().unwrap(), next().unwrap(), next().unwrap()],
            [(1, 0), (1, 1), (1, 1)]
        );
        let unknown_device = next();
        assert!(
            matches!(unknown_device, Err(StoreError::Missing("device"))),
            "{unknown_device:?}"
        );
        let unknown_conversation = next();
        assert!(
            matches!(unknown_conversation, Err(StoreError::Missing(_))),
            "{unknown_conversation:?}"
        );
        let starts = store.cursor_starts(phone, bob).await.unwrap();
        assert_eq!(
            (
                starts[0].delivered_seq,
                starts[0].read_seq,
                starts[0].last_seq
            ),
            (1, 1, 1)
        );
    }
}
