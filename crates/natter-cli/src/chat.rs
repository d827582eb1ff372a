//! `natter chat`: the full-screen chat. A list of conversations with unread counts and their
//! last message; the open one with scrollback, days, times, coloured names, ticks (in rooms,
//! how many read), typing, notices and pending messages inline; the members of a room; and an
//! input line with history and multi-line paste. Messages arrive live.
//!
//! - `state`: what the screen shows, changed by pure functions; `keys`: what keys do.
//! - `view`: drawing it; `log`: the open conversation laid out in lines (widths and wrapping
//!   in terminal cells are `crate::text`); `clock`: local times.
//! - `input`: the input line.
//!
//! The device's connection runs in a task beside the screen ([`Device::run`]) and feeds it
//! events over a channel; without a terminal the chat refuses to start.

mod clock;
mod input;
mod keys;
mod log;
mod state;
mod view;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use natter_client::{Device, Queued};
use natter_proto::ConversationId;
use ratatui::crossterm::event::{self, Event as Input, KeyEventKind, MouseEventKind};
use ratatui::crossterm::{event as term, execute};
use tokio::sync::{mpsc, oneshot};

use crate::text::body;
use clock::{Clock, now_ms};
use keys::Action;
use state::{Chat, Conversation, Note};

/// How often a person still typing says so again (well within [`state::TYPING_FOR`]).
const TYPING_AGAIN: Duration = Duration::from_secs(4);

/// Runs the chat on `conversation` until the person quits. Fails without a terminal, when the
/// conversation is not among this user's, or when the store or the live connection fails;
/// the terminal is restored either way.
pub async fn run(device: Device, conversation: ConversationId) -> anyhow::Result<()> {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        anyhow::bail!(
            "natter chat needs a terminal; without one, use `natter send` and `natter history`"
        );
    }
    let mut chat = load(&device, conversation).await?;
    let (events, mut received) = mpsc::channel(256);
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = {
        let device = device.clone();
        tokio::spawn(async move {
            device
                .run(events, async move {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let mut terminal = ratatui::init();
    let outcome = match execute!(
        std::io::stdout(),
        term::EnableBracketedPaste,
        term::EnableMouseCapture
    ) {
        Ok(()) => live(&device, &mut chat, &mut terminal, &mut received).await,
        Err(error) => Err(error.into()),
    };
    let _ = execute!(
        std::io::stdout(),
        term::DisableMouseCapture,
        term::DisableBracketedPaste
    );
    let _ = std::io::stdout().flush();
    ratatui::restore();
    let _ = stop.send(());
    runner.await??;
    outcome
}

/// The screen at the start: names and conversations from the directory (refreshed from the
/// server when it answers), notices not shown yet, and the open conversation loaded. Away
/// from the server the status line says so and the chat runs on what the store holds; fails
/// when `conversation` is not in the directory.
async fn load(device: &Device, conversation: ConversationId) -> anyhow::Result<Chat> {
    let mut directory = device.directory().await?;
    let status = match device
        .refresh_directory(&mut directory, &[conversation])
        .await
    {
        Ok(()) => {
            let shown = device.messages(conversation, state::PAGE).await?;
            let senders: Vec<_> = shown.iter().map(|m| m.sender_id).collect();
            device.refresh_people(&mut directory, &senders).await?;
            "connecting…".to_owned()
        }
        Err(error) => format!("offline ({error:#})"),
    };
    let names = directory.labels();
    let me = device.user_id();
    let list = listed(device, &directory, &names).await?;
    let open = match list.iter().position(|c| c.id == conversation) {
        Some(open) => open,
        None => anyhow::bail!("this conversation is not among yours (as last seen)"),
    };
    let mut chat = Chat::new(me, list, open);
    chat.names = names;
    chat.status = status;
    let at = now_ms();
    for notice in device.take_new_notices().await? {
        chat.notes.push(Note { at, notice });
    }
    opened(device, &mut chat).await?;
    Ok(chat)
}

/// The conversation list: the directory's conversations with their last message here, in
/// the directory's order (most recently active first), titled as [`natter_client::title`] does.
async fn listed(
    device: &Device,
    directory: &natter_client::Directory,
    names: &std::collections::HashMap<natter_proto::UserId, String>,
) -> anyhow::Result<Vec<Conversation>> {
    let mut list = Vec::new();
    for details in &directory.conversations {
        let id = details.summary.id;
        let last = device
            .messages(id, 1)
            .await?
            .pop()
            .map(|m| format!("{}: {}", natter_client::label(names, m.sender_id), body(&m)));
        list.push(Conversation {
            id,
            kind: details.summary.kind,
            title: natter_client::title(names, device.user_id(), details),
            members: details.members.iter().map(|m| m.user_id).collect(),
            unread: details.summary.unread,
            last,
        });
    }
    Ok(list)
}

/// Lists the conversations again (one appeared): the open one stays open. When the server
/// does not answer, the list stays as it was.
async fn relist(device: &Device, chat: &mut Chat) -> anyhow::Result<()> {
    let mut directory = device.directory().await?;
    if device.refresh_directory(&mut directory, &[]).await.is_err() {
        return Ok(());
    }
    chat.names = directory.labels();
    let mut list = listed(device, &directory, &chat.names).await?;
    let open = chat.current().id;
    chat.open = match list.iter().position(|c| c.id == open) {
        Some(at) => at,
        None => {
            list.push(chat.list.swap_remove(chat.open));
            list.len() - 1
        }
    };
    chat.list = list;
    Ok(())
}

/// Loads the conversation just opened: the "new messages" line goes after my read cursor,
/// and what is on screen is read. Catching up on read receipts is best effort; errors are
/// the store's.
async fn opened(device: &Device, chat: &mut Chat) -> anyhow::Result<()> {
    let id = chat.current().id;
    chat.unread_from = Some(device.cursors(id).await?.1);
    // Reads made while this device was away; when the server is away too, the marks known.
    let _ = device.catch_up_receipts(id).await;
    reload(device, chat).await?;
    if let Some(newest) = chat.messages.last() {
        device.mark_read(id, newest.seq).await?;
    }
    chat.list[chat.open].unread = 0;
    Ok(())
}

/// Reads the open conversation's messages (the newest `chat.limit`), its sends still queued
/// here, and the other members' receipts from the store; the server is not asked.
async fn reload(device: &Device, chat: &mut Chat) -> anyhow::Result<()> {
    let id = chat.current().id;
    chat.messages = device.messages(id, chat.limit).await?;
    let others: Vec<_> = chat
        .current()
        .members
        .iter()
        .copied()
        .filter(|&m| m != chat.me)
        .collect();
    chat.receipts = device.member_receipts(id, &others).await?;
    chat.pending = device
        .queued()
        .await?
        .into_iter()
        .filter_map(|item| match item {
            Queued::Send {
                conversation_id,
                text,
                ..
            } if conversation_id == id => Some(text),
            _ => None,
        })
        .collect();
    Ok(())
}

/// The loop: draw, take in events, take in input (polled every 50 ms, so typing indicators
/// expire on time). Returns when the person quits; errors are the store's and the terminal's
/// (a refused send only shows in the status line).
async fn live(
    device: &Device,
    chat: &mut Chat,
    terminal: &mut ratatui::DefaultTerminal,
    received: &mut mpsc::Receiver<natter_client::Event>,
) -> anyhow::Result<()> {
    let mut dirty = true;
    let mut layouts = log::Layouts::default();
    // When this device last told the others it is typing.
    let mut said_typing: Option<Instant> = None;
    loop {
        dirty |= chat.expire_typing(now_ms());
        if dirty {
            let clock = Clock::local();
            terminal.draw(|frame| view::draw(frame, chat, &clock, &mut layouts))?;
            dirty = false;
        }
        // A burst of events (a sync catching up) costs one read mark and one reload.
        let mut changed = false;
        while let Ok(event) = received.try_recv() {
            changed |= chat.apply(event);
            dirty = true;
        }
        if chat.unlisted {
            chat.unlisted = false;
            relist(device, chat).await?;
        }
        if changed {
            if let Some(seq) = chat.arrived.take() {
                device.mark_read(chat.current().id, seq).await?;
            }
            reload(device, chat).await?;
        }
        let input = tokio::task::block_in_place(|| -> std::io::Result<Option<Input>> {
            if event::poll(Duration::from_millis(50))? {
                event::read().map(Some)
            } else {
                Ok(None)
            }
        })?;
        let action = match input {
            None => continue,
            Some(Input::Key(key)) if key.kind == KeyEventKind::Press => keys::press(chat, key),
            Some(Input::Mouse(mouse)) => match mouse.kind {
                MouseEventKind::ScrollUp => keys::scroll_up(chat, keys::WHEEL),
                MouseEventKind::ScrollDown => {
                    chat.scroll_down(keys::WHEEL);
                    Action::Nothing
                }
                _ => continue,
            },
            Some(Input::Paste(text)) => {
                chat.input.insert(&text);
                Action::Typing(!chat.input.text().is_empty())
            }
            Some(_) => Action::Nothing,
        };
        dirty = true;
        let open = chat.current().id;
        match action {
            Action::Nothing => {}
            Action::Quit => return Ok(()),
            Action::Typing(true) => {
                // Said again while typing goes on, before the others' indicator runs out.
                if said_typing.is_none_or(|at| at.elapsed() >= TYPING_AGAIN) {
                    device.typing(open, true);
                    said_typing = Some(Instant::now());
                }
            }
            Action::Typing(false) => {
                device.typing(open, false);
                said_typing = None;
            }
            Action::Send(text) => {
                device.typing(open, false);
                said_typing = None;
                match device.send_text(open, &text).await {
                    Ok(_) => reload(device, chat).await?,
                    Err(error) => chat.status = error.to_string(),
                }
            }
            Action::Opened => opened(device, chat).await?,
            Action::LoadMore => {
                let before = chat.drawn.0;
                chat.limit += state::PAGE;
                reload(device, chat).await?;
                let clock = Clock::local();
                terminal.draw(|frame| view::draw(frame, chat, &clock, &mut layouts))?;
                chat.loaded_more(before);
            }
        }
    }
}
