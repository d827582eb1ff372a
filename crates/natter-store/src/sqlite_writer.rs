//! The SQLite store's writer: one connection on a thread of its own that group-commits the
//! per-message writes (appends and cursor moves) and answers the per-message reads (send plans,
//! room checks, the senders a receipt goes to).
//!
//! sqlx runs each SQLite connection on a worker thread and hands it every statement, and every
//! row back, through a channel: on a busy core each statement cost two thread switches
//! (docs/benchmarks.md). Here a batch of jobs costs one wake-up. The thread takes every job
//! waiting, answers the reads from its page cache (which stays warm: only other connections'
//! commits empty it), then writes in one transaction. Rarer writes (accounts, memberships) still
//! go through sqlx on a second connection; the two take turns ([`WriteTurn`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use rusqlite::{
    CachedStatement, Connection, OpenFlags, OptionalExtension, Params, Row, Transaction,
    TransactionBehavior, ffi,
};

use super::group_commit::{GroupCommit, Reply};
use super::sql_writes::{
    INSERT_MESSAGE, MOVE_CURSOR, NEXT_SEQ, QueuedCursor, QueuedMessage, Write, settle,
};
use super::{DbError, StoreError};

/// The most prepared statements the writer keeps.
const STATEMENTS_KEPT: usize = 32;

/// A job for the writer thread.
pub(super) enum Job {
    /// A write, committed with the rest of its batch.
    Write(Write),
    /// A read, answered before the batch's writes.
    Read(Read),
}

/// A read on the writer's connection, which sends its own answer. It must not write: it runs
/// outside the turn to write, in a transaction that is rolled back.
pub(super) type Read = Box<dyn FnOnce(&Connection) + Send>;

impl From<Write> for Job {
    /// A write, as a job for the writer thread.
    fn from(write: Write) -> Self {
        Self::Write(write)
    }
}

/// Whose turn it is to write to a SQLite file: its writer thread and its pool's writer wait for
/// it in order, instead of polling SQLite's lock (the busy handler sleeps 1, 2, 5… ms between
/// tries, and is not first come, first served).
pub(super) type WriteTurn = Arc<tokio::sync::Mutex<()>>;

/// The writer thread's queue.
pub(super) type SqliteWriter = GroupCommit<Job>;

/// Opens a writer connection to the (migrated) database at `path` and starts its thread.
///
/// # Errors
/// The database cannot be opened or the thread cannot start.
pub(super) fn start(path: &Path, turn: WriteTurn) -> anyhow::Result<SqliteWriter> {
    let opening = || format!("opening the SQLite writer on {}", path.display());
    let mut db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(opening)?;
    // The page cache is 16 MiB: at each commit SQLite walks the cache's whole hash table
    // (`pcache1TruncateUnsafe`), 8 % of natterd's time with 64 MiB; a smaller cache reads more
    // pages back from the OS instead, so 8 to 64 MiB measured the same within noise. The WAL
    // file (~4 MiB between checkpoints) is cut back to 64 MiB when it starts over after growing
    // past that (a long read held checkpoints back), rather than keeping its largest size.
    db.busy_timeout(Duration::from_secs(10))
        .and_then(|()| {
            db.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; \
                 PRAGMA journal_size_limit = 67108864;",
            )
        })
        .with_context(opening)?;
    db.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    GroupCommit::on_thread("natter-sqlite", move |jobs| run(&mut db, &turn, jobs))
        .with_context(opening)
}

impl SqliteWriter {
    /// Runs `read` on the writer thread, before the writes of its batch.
    pub(super) async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(|reply: Reply<R>| {
            Job::Read(Box::new(move |db| {
                // A caller that gave up has nobody to tell.
                let _ = reply.send(read(db).map_err(StoreError::from));
            }))
        })
        .await
    }
}

/// Answers a batch's reads, then writes its writes in the store's turn.
fn run(db: &mut Connection, turn: &WriteTurn, jobs: Vec<Job>) {
    let mut reads = Vec::new();
    let mut writes = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Read(read) => reads.push(read),
            Job::Write(write) => writes.push(write),
        }
    }
    if !reads.is_empty() {
        answer(db, reads);
    }
    if !writes.is_empty() {
        let _turn = turn.blocking_lock();
        write_batch(db, writes);
    }
}

/// Answers `reads` in one read transaction: one snapshot and one round of locking for them
/// all, rather than one per statement.
fn answer(db: &mut Connection, reads: Vec<Read>) {
    match db.transaction() {
        // Dropping it ends the read.
        Ok(tx) => reads.into_iter().for_each(|read| read(&tx)),
        // Dropping the reads tells their callers that they failed.
        Err(error) => tracing::error!(%error, "beginning a read on the SQLite writer"),
    }
}

/// Writes a batch (see [`settle`]). Nothing in it waits but the database, so it is done in
/// its first poll.
fn write_batch(db: &mut Connection, batch: Vec<Write>) {
    settle(batch, |writes| {
        Box::pin(std::future::ready(
            write_in_one(db, writes).map_err(StoreError::from),
        ))
    })
    .now_or_never()
    .expect("a SQLite batch never waits");
}

/// Writes in one transaction, recording each write's outcome in it.
fn write_in_one(db: &mut Connection, batch: &mut [Write]) -> Result<(), DbError> {
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
fn append_one(tx: &Transaction<'_>, message: &QueuedMessage) -> Result<Option<i64>, DbError> {
    let seq = prepare(tx, NEXT_SEQ)?
        .query_row(
            (
                &message.conversation_id,
                message.server_ts,
                &message.sender_device,
                &message.client_msg_id,
            ),
            |row| row.get::<_, i64>(0),
        )
        .optional()?;
    let Some(seq) = seq else { return Ok(None) };
    prepare(tx, INSERT_MESSAGE)?
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
fn move_one(tx: &Transaction<'_>, cursor: &QueuedCursor) -> Result<Option<(i64, i64)>, DbError> {
    prepare(tx, MOVE_CURSOR)?
        .query_row(
            (
                &cursor.device_id,
                &cursor.conversation_id,
                &cursor.user_id,
                cursor.delivered_seq,
                cursor.read_seq,
            ),
            |row| <(i64, i64)>::try_from(row),
        )
        .optional()
        // A device gone is no row (see MOVE_CURSOR); a missing reference is the conversation.
        .map_err(|e| classify(e, "cursor", "conversation"))
}

/// The rows of `sql` (see [`prepare`]) with `params`, each as a `T`.
pub(super) fn rows<T>(
    db: &Connection,
    sql: &'static str,
    params: impl Params,
) -> Result<Vec<T>, DbError>
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    let mut statement = prepare(db, sql)?;
    let rows = statement.query_map(params, |row| T::try_from(row))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `sql` (written for sqlx, with `$n` parameters) prepared on `db`, from its cache. The text is
/// rewritten by [`to_numbered`] once per statement (per copy of its text the compiler makes):
/// per message, each time cost ~2 % of the writer thread.
fn prepare<'c>(db: &'c Connection, sql: &'static str) -> rusqlite::Result<CachedStatement<'c>> {
    thread_local! {
        /// Each statement's text (by address and length) in SQLite's form.
        static NUMBERED: RefCell<HashMap<(usize, usize), String>> = RefCell::default();
    }
    NUMBERED.with_borrow_mut(|numbered| {
        let text = numbered
            .entry((sql.as_ptr() as usize, sql.len()))
            .or_insert_with(|| to_numbered(sql));
        db.prepare_cached(text)
    })
}

/// `sql` with its `$n` parameters (sqlx's, and PostgreSQL's) as `?n`, SQLite's numbered form:
/// to SQLite, `$n` names a parameter, numbered by where it first appears. (A `$` before a digit
/// inside a string literal would be changed too; no statement here has one.)
fn to_numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let parameter = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if parameter { '?' } else { c });
    }
    out
}

/// A constraint failure as what it means: a `unique` row that exists, or a `missing` row
/// referred to.
fn classify(error: rusqlite::Error, unique: &'static str, missing: &'static str) -> DbError {
    match error.sqlite_error() {
        Some(e)
            if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(unique).into()
        }
        Some(e) if e.extended_code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
            StoreError::Missing(missing).into()
        }
        _ => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use natter_proto::{ConversationId, DeviceId, UserId};
    use tokio::sync::oneshot;

    use super::*;
    use tempfile::TempDir;

    use crate::{
        AccountStore, ConversationStore, MessageLog, NewDevice, NewMessage, OnStored, SqliteStore,
        testing,
    };

    /// A store with a user per name, and a writer connection of the test's own.
    async fn store_with(names: &[&str]) -> (SqliteStore, Connection, Vec<UserId>, TempDir) {
        let (store, dir) = testing::sqlite().await;
        let users = testing::users(&store, names).await;
        let db = Connection::open(dir.path().join(testing::DB_FILE)).unwrap();
        db.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        (store, db, users, dir)
    }

    /// The direct conversation of the first two `users`.
    async fn chat(store: &SqliteStore, users: &[UserId]) -> ConversationId {
        store
            .direct_conversation(users[0], users[1], 0)
            .await
            .unwrap()
    }

    /// Logs `user` in on a new device.
    async fn device_of(store: &SqliteStore, user: UserId) -> DeviceId {
        let id = DeviceId::new();
        let login = NewDevice {
            id,
            user_id: user,
            name: "phone",
            token_hash: "hash",
            created_at: 0,
            expires_at: i64::MAX,
        };
        store.create_device(&login).await.unwrap();
        id
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

    #[test]
    fn numbered_parameters_become_sqlites_and_nothing_else_changes() {
        assert_eq!(
            to_numbered("UPDATE t SET a = $2 WHERE id = $1 AND b = $12 AND c = '$x' AND d = $"),
            "UPDATE t SET a = ?2 WHERE id = ?1 AND b = ?12 AND c = '$x' AND d = $"
        );
    }

    /// What a write is answered.
    type Answer<R> = Result<R, StoreError>;

    /// Counts the commits made on `db` from now on.
    fn count_commits(db: &Connection) -> Arc<AtomicUsize> {
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&commits);
        let hook = move || {
            counted.fetch_add(1, Ordering::Relaxed);
            // Go on with the commit.
            false
        };
        db.commit_hook(Some(hook)).unwrap();
        commits
    }

    /// What a batch's append and its cursor moves were answered.
    type Answers = (Answer<Option<i64>>, Vec<Answer<(i64, i64)>>);

    /// What a write was answered, once its batch is written.
    fn answer<R>(mut reply: oneshot::Receiver<Answer<R>>) -> Answer<R> {
        reply.try_recv().expect("every write is answered")
    }

    #[tokio::test]
    async fn a_batch_commits_in_conversation_order_and_stores_a_resend_once() {
        let (store, mut db, users, dir) = store_with(&["alice", "bob", "carol"]).await;
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
        let path = dir.path().join(testing::DB_FILE);
        // Each told message says whether another connection can read it yet.
        let tell = |name: &'static str, id: &'static str| -> OnStored {
            let (told, path) = (Arc::clone(&told), path.clone());
            Box::new(move |seq| {
                let visible: i64 = Connection::open(path)
                    .unwrap()
                    .query_row(
                        "SELECT count(*) FROM messages WHERE client_msg_id = ?1",
                        [id],
                        |row| row.get(0),
                    )
                    .unwrap();
                told.lock().unwrap().push((name, seq, visible == 1));
            })
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
                let write = Write::append(
                    &message(conversation, alice, device, id),
                    tell(name, id),
                    reply,
                );
                (write, answered)
            })
            .unzip();
        let commits = count_commits(&db);
        write_batch(&mut db, batch);
        assert_eq!(commits.load(Ordering::Relaxed), 1, "one transaction");
        let seqs: Vec<Option<i64>> = replies.into_iter().map(|r| answer(r).unwrap()).collect();
        // The resend finds the first copy, stored by the same batch.
        assert_eq!(seqs, [Some(1), Some(1), Some(2), None]);
        // Told after the commit (others can read it), in the batch's order: by conversation,
        // then arrival; the resend is not told at all.
        assert_eq!(
            *told.lock().unwrap(),
            [
                ("early-1", 1, true),
                ("late-1", 1, true),
                ("late-2", 2, true)
            ]
        );
    }

    /// Writes a batch of one append of `client_msg_id` and `moves` (device, conversation,
    /// delivered, read) by `user`; what each was answered.
    fn write_all(
        db: &mut Connection,
        appended: NewMessage<'_>,
        user: UserId,
        moves: &[(DeviceId, ConversationId, i64, i64)],
    ) -> Answers {
        let (reply, stored) = oneshot::channel();
        let mut batch = vec![Write::append(&appended, Box::new(|_| {}), reply)];
        let mut replies = Vec::new();
        for &(device, conversation, delivered, read) in moves {
            let (reply, answered) = oneshot::channel();
            batch.push(Write::move_cursor(
                (device, user, conversation),
                delivered,
                read,
                reply,
            ));
            replies.push(answered);
        }
        write_batch(db, batch);
        (answer(stored), replies.into_iter().map(answer).collect())
    }

    #[tokio::test]
    async fn cursor_moves_share_the_batch_and_a_bad_write_fails_alone() {
        let (store, mut db, users, _dir) = store_with(&["alice", "bob"]).await;
        let (alice, bob) = (users[0], users[1]);
        let chat = store.direct_conversation(alice, bob, 0).await.unwrap();
        let phone = device_of(&store, bob).await;
        let sender = DeviceId::new();
        let commits = count_commits(&db);
        // One transaction: cursors move forward only, and a device logged out meanwhile is
        // answered alone without failing the rest.
        let (stored, moved) = write_all(
            &mut db,
            message(chat, alice, sender, "hello"),
            bob,
            &[
                (phone, chat, 1, 0),
                (phone, chat, 1, 1),
                (phone, chat, 0, 0),
                (DeviceId::new(), chat, 1, 0),
            ],
        );
        assert_eq!(stored.unwrap(), Some(1));
        assert_eq!(commits.load(Ordering::Relaxed), 1, "one transaction");
        assert!(
            matches!(moved[3], Err(StoreError::Missing("device"))),
            "{:?}",
            moved[3]
        );
        let moved: Vec<(i64, i64)> = moved.into_iter().take(3).map(Result::unwrap).collect();
        assert_eq!(moved, [(1, 0), (1, 1), (1, 1)]);
        // A conversation that does not exist fails the batch's transaction: the others are
        // written one by one, and the failed attempt left nothing behind (seq 2, not 3).
        let (stored, moved) = write_all(
            &mut db,
            message(chat, alice, sender, "again"),
            bob,
            &[(phone, chat, 2, 1), (phone, ConversationId::new(), 1, 0)],
        );
        assert_eq!(stored.unwrap(), Some(2));
        // The append and the good move, one by one; the bad move's transaction rolled back.
        assert_eq!(commits.load(Ordering::Relaxed), 1 + 2);
        assert_eq!(moved[0].as_ref().unwrap(), &(2, 1));
        assert!(
            matches!(moved[1], Err(StoreError::Missing("conversation"))),
            "{:?}",
            moved[1]
        );
        let starts = store.cursor_starts(phone, bob).await.unwrap();
        let start = &starts[0];
        assert_eq!(
            (start.delivered_seq, start.read_seq, start.last_seq),
            (2, 1, 2)
        );
    }

    #[tokio::test]
    async fn the_writer_thread_reads_checks_and_answers_resends_with_the_first_copy() {
        let (store, _db, users, _dir) = store_with(&["alice", "bob"]).await;
        let (alice, bob) = (users[0], users[1]);
        let chat = store.direct_conversation(alice, bob, 0).await.unwrap();
        let hello = message(chat, alice, DeviceId::new(), "hello");
        let first = store.append(&hello, Box::new(|_| {})).await.unwrap();
        let again = store.append(&hello, Box::new(|_| {})).await.unwrap();
        assert_eq!((first.seq, first.duplicate), (1, false));
        assert_eq!((again.seq, again.duplicate), (1, true));
        // A read on the thread: the plan's rows, bound and decoded.
        let plan = store.send_plan(chat, alice).await.unwrap().unwrap();
        assert!(plan.is_member && !plan.sender_suspended);
        let mut recipients = plan.recipients.clone();
        recipients.sort();
        let mut members = vec![alice, bob];
        members.sort();
        assert_eq!(recipients, members);
        let senders = store
            .senders_between(chat, (0, 1), Some(bob))
            .await
            .unwrap();
        assert_eq!(senders, [alice]);
        // The thread's own connection enforces foreign keys: a real device's cursor in a
        // conversation that does not exist is refused.
        let phone = device_of(&store, bob).await;
        let nowhere = store
            .move_cursor(phone, bob, ConversationId::new(), 1, 0)
            .await;
        assert!(
            matches!(nowhere, Err(StoreError::Missing("conversation"))),
            "{nowhere:?}"
        );
    }

    #[tokio::test]
    async fn a_fan_out_that_panics_still_acks_the_stored_message() {
        let (store, _db, users, _dir) = store_with(&["alice", "bob"]).await;
        let chat = chat(&store, &users).await;
        let device = DeviceId::new();
        let first = message(chat, users[0], device, "first");
        let fanned_out = Arc::new(AtomicBool::new(false));
        let on_stored = {
            let fanned_out = Arc::clone(&fanned_out);
            Box::new(move |_| {
                fanned_out.store(true, Ordering::Relaxed);
                panic!("fan-out failed");
            })
        };
        let stored = store.append(&first, on_stored).await;
        assert!(fanned_out.load(Ordering::Relaxed), "the fan-out ran");
        assert_eq!(
            stored.unwrap().seq,
            1,
            "stored, so acked, whatever the fan-out did"
        );
        // The thread goes on.
        let second = message(chat, users[0], device, "second");
        let stored = store.append(&second, Box::new(|_| {})).await;
        assert_eq!(stored.unwrap().seq, 2);
    }

    #[tokio::test]
    async fn a_batch_that_panics_fails_its_callers_and_the_thread_goes_on() {
        let (store, _db, users, _dir) = store_with(&["alice", "bob"]).await;
        let chat = chat(&store, &users).await;
        let failed = store
            .writes
            .read(|_| -> Result<(), DbError> { panic!("a bug in a read") })
            .await;
        assert!(
            matches!(failed, Err(StoreError::Unavailable(_))),
            "told it failed: {failed:?}"
        );
        // Nothing of the failed batch is left open: the thread writes, in turn with the other
        // writer, and reads what both wrote.
        let hello = message(chat, users[0], DeviceId::new(), "hello");
        assert_eq!(store.append(&hello, Box::new(|_| {})).await.unwrap().seq, 1);
        testing::users(&store, ["carol"]).await;
        let counts = store
            .writes
            .read(|db| {
                rows::<(i64, i64)>(
                    db,
                    "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM messages)",
                    (),
                )
            })
            .await;
        assert_eq!(counts.unwrap(), [(3, 1)]);
    }

    #[tokio::test]
    async fn a_batch_answers_its_reads_before_its_writes_and_ends_the_read_first() {
        let (store, db, users, _dir) = store_with(&["alice", "bob"]).await;
        let chat = chat(&store, &users).await;
        let count = |reply: oneshot::Sender<i64>| -> Job {
            Job::Read(Box::new(move |db| {
                let counted = db.query_row("SELECT count(*) FROM messages", (), |row| row.get(0));
                let _ = reply.send(counted.unwrap());
            }))
        };
        let (before, counted_before) = oneshot::channel();
        let (reply, appended) = oneshot::channel();
        let hello = message(chat, users[0], DeviceId::new(), "hello");
        let jobs = vec![
            count(before),
            Job::Write(Write::append(&hello, Box::new(|_| {}), reply)),
        ];
        // `run` waits for the turn as a thread does, outside the runtime.
        let turn = WriteTurn::default();
        let db = tokio::task::spawn_blocking(move || {
            let mut db = db;
            run(&mut db, &turn, jobs);
            db
        })
        .await
        .unwrap();
        assert_eq!(counted_before.await.unwrap(), 0, "read before the write");
        assert_eq!(appended.await.unwrap().unwrap(), Some(1), "then written");
        let written: i64 = db
            .query_row("SELECT count(*) FROM messages", (), |row| row.get(0))
            .unwrap();
        assert_eq!(written, 1);
    }

    #[tokio::test]
    async fn the_writer_thread_writes_only_in_its_turn() {
        let (store, _db, users, _dir) = store_with(&["alice", "bob"]).await;
        let chat = chat(&store, &users).await;
        // The rare-write pool's turn, held.
        let turn = store.writer.lock().await;
        let appending = tokio::spawn({
            let (store, alice) = (store.clone(), users[0]);
            async move {
                let hello = message(chat, alice, DeviceId::new(), "hello");
                store.append(&hello, Box::new(|_| {})).await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!appending.is_finished(), "the append waits for the turn");
        drop(turn);
        assert_eq!(appending.await.unwrap().unwrap().seq, 1);
    }
}
