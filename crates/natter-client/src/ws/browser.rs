//! The socket in the browser: its `WebSocket`. Browsers cannot set the `Authorization` header
//! on it, so the token goes in the first frame (`{"type":"auth"}`), as natterd expects of them.

use natter_proto::ws::ClientFrame;
use tokio::sync::mpsc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

use super::{Closed, SocketError};
use crate::ClientError;

/// What the browser reports about the socket, in order.
enum Happened {
    Opened,
    Text(String),
    Binary,
    Failed,
    Closed(Closed),
}

/// An open WebSocket and the handlers that feed its events to [`Socket::next_text`].
pub(super) struct Socket {
    socket: WebSocket,
    events: mpsc::UnboundedReceiver<Happened>,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Connects to `ws_url` and sends `token` in the `auth` frame.
    pub(super) async fn open(ws_url: &str, token: &str) -> Result<Self, ClientError> {
        let socket = WebSocket::new(ws_url).map_err(|e| failure(&e, true))?;
        let (tx, events) = mpsc::unbounded_channel();
        let on_open = handler(&tx, |_: Event| Happened::Opened);
        let on_message = handler(&tx, |event: MessageEvent| match event.data().as_string() {
            Some(text) => Happened::Text(text),
            None => Happened::Binary,
        });
        let on_error = handler(&tx, |_: Event| Happened::Failed);
        let on_close = handler(&tx, |event: CloseEvent| {
            // 1006 is the browser's own "closed without a close frame".
            let code = Some(event.code()).filter(|&code| code != 1006);
            Happened::Closed(Closed {
                code,
                reason: event.reason(),
            })
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let mut opened = Self {
            socket,
            events,
            _on_open: on_open,
            _on_message: on_message,
            _on_error: on_error,
            _on_close: on_close,
        };
        match opened.events.recv().await {
            Some(Happened::Opened) => {}
            _ => {
                return Err(ClientError::WebSocket(SocketError {
                    reason: format!("cannot connect to {ws_url}"),
                    before_open: true,
                }));
            }
        }
        let auth = ClientFrame::Auth {
            token: token.to_owned(),
        };
        opened
            .send(serde_json::to_string(&auth).expect("client frames always serialize"))
            .await?;
        Ok(opened)
    }

    /// Sends a text frame.
    #[allow(clippy::unused_async)] // the same signature as the native socket's
    pub(super) async fn send(&mut self, text: String) -> Result<(), ClientError> {
        self.socket
            .send_with_str(&text)
            .map_err(|e| failure(&e, false))
    }

    /// The next text frame; [`ClientError::Closed`] once the connection has ended.
    pub(super) async fn next_text(&mut self) -> Result<String, ClientError> {
        loop {
            match self.events.recv().await {
                Some(Happened::Text(text)) => return Ok(text),
                Some(Happened::Binary) => {
                    return Err(ClientError::Protocol("unexpected binary frame".into()));
                }
                Some(Happened::Closed(closed)) => return Err(ClientError::Closed(closed)),
                None => return Err(ClientError::Closed(Closed::abruptly())),
                // A failure is followed by the close event, which says more.
                Some(Happened::Opened | Happened::Failed) => {}
            }
        }
    }

    /// Closes the connection politely.
    #[allow(clippy::unused_async)] // the same signature as the native socket's
    pub(super) async fn close(self) {
        // Dropping closes.
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Detach the handlers before they are freed: the browser may still fire events.
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onerror(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close_with_code(1000);
    }
}

/// A JavaScript event handler that turns each event into a [`Happened`] for the socket.
fn handler<E: wasm_bindgen::convert::FromWasmAbi + 'static>(
    tx: &mpsc::UnboundedSender<Happened>,
    happened: impl Fn(E) -> Happened + 'static,
) -> Closure<dyn FnMut(E)> {
    let tx = tx.clone();
    Closure::new(move |event: E| {
        let _ = tx.send(happened(event));
    })
}

/// A browser exception from the socket as this client's error.
fn failure(error: &wasm_bindgen::JsValue, before_open: bool) -> ClientError {
    let reason = error
        .dyn_ref::<js_sys::Error>()
        .map_or_else(|| format!("{error:?}"), |e| String::from(e.message()));
    ClientError::WebSocket(SocketError {
        reason,
        before_open,
    })
}
