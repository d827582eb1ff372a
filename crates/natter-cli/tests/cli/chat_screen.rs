//! `natter chat` in a real terminal (tmux): long and wide-character messages with the newest
//! always in view, scrolling back and forward, the cursor after wide characters, multi-line
//! paste and resizing.

use super::{
    alice_and_bob, capture, chat_command, eventually, has_tmux, ok, send_keys, tmux, tmux_on,
};

/// Text without whitespace or the screen's frame, to find wrapped text.
fn squeezed(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && !"│─┌┐└┘".contains(*c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_message_stays_in_view_while_scrolling_and_resizing() {
    if !has_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob) = alice_and_bob(dir.path()).await;
    let long = "긴 메시지입니다 🎉 ".repeat(12) + &"日本語のテキスト".repeat(6);
    for n in 1..=30 {
        let text = if n % 5 == 0 {
            format!("{long} number {n}")
        } else {
            format!("message number {n}")
        };
        ok(&url, &bob, &["send", "alice", &text]).await;
    }
    let newest = format!("{long} the newest-마지막");
    ok(&url, &bob, &["send", "alice", &newest]).await;

    let session = tmux("scrollback", &chat_command(&url, &alice, "bob"));
    let screen = || capture(&session.0);
    eventually("the chat with the newest message whole", async || {
        let shown = screen();
        shown.contains("online") && squeezed(&shown).contains(&squeezed(&newest))
    })
    .await;

    // Back through the history, a page at a time, to the oldest.
    for _ in 0..12 {
        send_keys(&session.0, &["PageUp"]);
    }
    eventually("the oldest message", async || {
        screen().contains("message number 1 ")
    })
    .await;
    let shown = screen();
    assert!(shown.contains("more below"), "{shown}");
    assert!(shown.contains("─ Today ─"), "a day separator: {shown}");
    // A message arriving meanwhile is counted, not scrolled to.
    ok(
        &url,
        &bob,
        &["send", "alice", "arrived while scrolled back"],
    )
    .await;
    eventually("the new-message marker", async || {
        screen().contains("1 new message")
    })
    .await;
    assert!(!screen().contains("arrived while scrolled back"));
    // Forward again, a page at a time, until the newest is in view and followed.
    for _ in 0..12 {
        send_keys(&session.0, &["PageDown"]);
    }
    eventually("the newest again", async || {
        let shown = screen();
        shown.contains("arrived while scrolled back") && !shown.contains("new message")
    })
    .await;

    // The mouse wheel scrolls too (the terminal reports it as SGR mouse sequences).
    let wheel = |button: &str| format!("\x1b[<{button};40;10M");
    for _ in 0..4 {
        send_keys(&session.0, &["-l", &wheel("64")]);
    }
    eventually("scrolled back by the wheel", async || {
        screen().contains("more below")
    })
    .await;
    for _ in 0..30 {
        send_keys(&session.0, &["-l", &wheel("65")]);
    }
    eventually("forward to the newest by the wheel", async || {
        let shown = screen();
        shown.contains("arrived while scrolled back") && !shown.contains("more below")
    })
    .await;

    // Resizing keeps the newest whole.
    for (columns, rows) in [("60", "20"), ("130", "40"), ("45", "16")] {
        tmux_on(
            &session.0,
            &["resize-window", "-t", &session.0, "-x", columns, "-y", rows],
        );
        eventually("the newest after resizing", async || {
            squeezed(&screen()).contains("arrivedwhilescrolledback")
        })
        .await;
    }
    tmux_on(
        &session.0,
        &["resize-window", "-t", &session.0, "-x", "100", "-y", "24"],
    );

    // The cursor lands after wide characters: each Hangul syllable takes two cells.
    send_keys(&session.0, &["-l", "한글 ok"]);
    let cursor = || {
        tmux_on(
            &session.0,
            &["display-message", "-p", "-t", &session.0, "#{cursor_x}"],
        )
        .trim()
        .parse::<usize>()
        .unwrap()
    };
    // At 100 columns the input's text starts at column 25, after the list (24) and a border.
    let left = 25;
    eventually("the cursor after the typed text", async || {
        screen().contains("한글 ok") && cursor() == left + 7
    })
    .await;
    send_keys(&session.0, &["Left", "Left", "Left"]);
    eventually("the cursor after the syllables", async || {
        cursor() == left + 4
    })
    .await;
    send_keys(&session.0, &["Left"]);
    eventually("the cursor before the second syllable", async || {
        cursor() == left + 2
    })
    .await;
    send_keys(&session.0, &["End"]);
    for _ in 0..8 {
        send_keys(&session.0, &["BSpace"]);
    }

    // A multi-line paste arrives as one message with its lines.
    tmux_on(
        &session.0,
        &[
            "set-buffer",
            "-b",
            "natter",
            "first pasted line\nsecond pasted line",
        ],
    );
    tmux_on(
        &session.0,
        &["paste-buffer", "-p", "-b", "natter", "-t", &session.0],
    );
    eventually("the pasted lines in the input", async || {
        screen().contains("second pasted line")
    })
    .await;
    send_keys(&session.0, &["Enter"]);
    eventually("bob to receive the pasted message", async || {
        ok(&url, &bob, &["history", "alice", "--limit", "1"])
            .await
            .contains("first pasted line\nsecond pasted line")
    })
    .await;
    send_keys(&session.0, &["Escape"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_shows_live_and_a_new_conversation_joins_the_list() {
    if !has_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob) = alice_and_bob(dir.path()).await;
    let carol = dir.path().join("carol");
    ok(&url, &carol, &["register", "carol"]).await;
    ok(&url, &carol, &["login", "carol"]).await;
    ok(&url, &carol, &["connections", "request", "alice"]).await;
    ok(&url, &alice, &["connections", "accept", "carol"]).await;
    ok(&url, &bob, &["send", "alice", "hi"]).await;

    // Without a name, the chat opens the most recently active conversation.
    let at_alice = tmux("typing-alice", &chat_command(&url, &alice, ""));
    let at_bob = tmux("typing-bob", &chat_command(&url, &bob, "alice"));
    for session in [&at_alice, &at_bob] {
        eventually("both chats online", async || {
            capture(&session.0).contains("online")
        })
        .await;
    }
    eventually("bob's conversation open at alice's", async || {
        capture(&at_alice.0).contains("bob — online")
    })
    .await;
    send_keys(&at_bob.0, &["hel"]);
    eventually("bob typing, on alice's screen", async || {
        capture(&at_alice.0).contains("bob is typing…")
    })
    .await;
    send_keys(&at_bob.0, &["BSpace", "BSpace", "BSpace"]);
    eventually("the indicator gone", async || {
        !capture(&at_alice.0).contains("typing")
    })
    .await;

    // Carol writes for the first time: her conversation joins alice's list, unread.
    ok(&url, &carol, &["send", "alice", "hello from carol"]).await;
    eventually("carol in the list with one unread", async || {
        let screen = capture(&at_alice.0);
        screen
            .lines()
            .any(|l| l.contains("carol") && l.contains(" 1│"))
            && screen.contains("carol: hello from c…")
    })
    .await;
}
