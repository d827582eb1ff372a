//! PostgreSQL's writer: appends and cursor moves, group-committed in one transaction per
//! batch on the store's write pool (SQLite's is [`super::sqlite_writer`]).
//!
//! A batch is written in lock order; if it fails because of one write, `settle` retries each
//! write alone so a bad one fails by itself, and a database that is unreachable fails the whole
//! batch at once. An append takes the conversation's next seq (`NEXT_SEQ`) inside the batch's
//! transaction, so seqs have no gaps; a resend of a stored message writes nothing.

use super::dialect::postgres::BEGIN_WRITE;
use super::driver_errors::DbError;
use super::group_commit::GroupCommit;
use super::sql::{PgStore, classify};
use super::sql_writes::{
    INSERT_MESSAGE, MOVE_CURSOR, NEXT_SEQ, QueuedCursor, QueuedMessage, Write, Writes, settle,
};

impl PgStore {
    /// Starts the task that group-commits appends and cursor moves on `writer`.
    pub(crate) fn group_writes(writer: sqlx::Pool<sqlx::Postgres>) -> Writes {
        GroupCommit::spawn(move |batch| {
            let writer = writer.clone();
            async move { write_batch(&writer, batch).await }
        })
    }
}

/// Writes a batch (see [`settle`]).
async fn write_batch(writer: &sqlx::Pool<sqlx::Postgres>, batch: Vec<Write>) {
    settle(batch, |writes| {
        let writer = writer.clone();
        Box::pin(async move { Ok(write_in_one(&writer, writes).await?) })
    })
    .await;
}

/// Writes in one transaction, recording each write's outcome in it.
async fn write_in_one(
    writer: &sqlx::Pool<sqlx::Postgres>,
    batch: &mut [Write],
) -> Result<(), DbError> {
    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
    for write in batch.iter_mut() {
        match write {
            Write::Append(message, _) => message.seq = append_one(&mut tx, message).await?,
            Write::MoveCursor(cursor, _) => cursor.after = move_one(&mut tx, cursor).await?,
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Appends a message: its seq, or `None` if this (device, client_msg_id) is already stored.
async fn append_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    message: &QueuedMessage,
) -> Result<Option<i64>, DbError> {
    let seq: Option<i64> = sqlx::query_scalar(NEXT_SEQ)
        .bind(&message.conversation_id)
        .bind(message.server_ts)
        .bind(&message.sender_device)
        .bind(&message.client_msg_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(seq) = seq else { return Ok(None) };
    sqlx::query(INSERT_MESSAGE)
        .bind(&message.conversation_id)
        .bind(seq)
        .bind(&message.sender_id)
        .bind(&message.sender_device)
        .bind(&message.client_msg_id)
        .bind(message.client_ts)
        .bind(message.server_ts)
        .bind(&message.ciphertext)
        .execute(&mut **tx)
        .await
        .map_err(|e| classify(e, "message", "conversation"))?;
    Ok(Some(seq))
}

/// Moves a device's cursors (see [`MOVE_CURSOR`]).
async fn move_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    cursor: &QueuedCursor,
) -> Result<Option<(i64, i64)>, DbError> {
    sqlx::query_as::<_, (i64, i64)>(MOVE_CURSOR)
        .bind(&cursor.device_id)
        .bind(&cursor.conversation_id)
        .bind(&cursor.user_id)
        .bind(cursor.delivered_seq)
        .bind(cursor.read_seq)
        .fetch_optional(&mut **tx)
        .await
        // A device gone is no row (see MOVE_CURSOR); a missing reference is the conversation.
        .map_err(|e| classify(e, "cursor", "conversation"))
}
