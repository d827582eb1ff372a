//! One device's WebSocket: opened from a chosen source address in 127.0.0.0/8 with small
//! buffers (so a worker holds thousands), typed frames in and out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use natter_proto::ws::{ClientFrame, ServerFrame};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long a handshake (TCP, upgrade, `ready`) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The `i`-th of `count` source addresses: 127.0.0.1, 127.0.0.2, ... (`i` wraps around
/// `count`; a `count` of 0 is taken as 1).
pub fn source_addr(i: usize, count: u32) -> Ipv4Addr {
    let last = u8::try_from(i % count.max(1) as usize + 1).unwrap_or(1);
    Ipv4Addr::new(127, 0, 0, last)
}

/// An open, authenticated WebSocket.
pub struct Conn {
    /// Plain TCP (`ws://`): there is no TLS in the load path.
    socket: WebSocketStream<TcpStream>,
    /// The idle timeout the server announced in `ready`.
    pub idle_timeout: Duration,
}

/// What the server said next.
pub enum Incoming {
    /// A frame.
    Frame(Box<ServerFrame>),
    /// The connection ended, with the close code if the server sent one.
    Closed(Option<u16>),
}

impl Conn {
    /// Connects from `source` to the node's WebSocket at `url` (`ws://host:port/v1/ws`) with
    /// `token`, and waits for `ready`. Fails when the handshake takes over
    /// [`HANDSHAKE_TIMEOUT`], the server refuses the token, or the first frame is not `ready`.
    pub async fn open(url: &str, token: &str, source: Ipv4Addr) -> anyhow::Result<Self> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, Self::handshake(url, token, source))
            .await
            .context("handshake timed out")?
    }

    /// [`Conn::open`] without its time limit. The URL's host must be an IP address, as the
    /// socket is bound to `source` before it connects.
    async fn handshake(url: &str, token: &str, source: Ipv4Addr) -> anyhow::Result<Self> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let host = request.uri().host().context("no host in the URL")?;
        let port = request.uri().port_u16().unwrap_or(80);
        let target: IpAddr = host.parse().context("the server must be an IP address")?;
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .with_context(|| format!("binding {source}"))?;
        let stream = socket
            .connect(SocketAddr::new(target, port))
            .await
            .with_context(|| format!("connecting from {source}"))?;
        stream.set_nodelay(true)?;
        // Small buffers, as on the server: a few KiB per idle connection.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        let mut conn = Self {
            socket,
            idle_timeout: Duration::from_secs(60),
        };
        match conn.next().await? {
            Incoming::Frame(frame) => match *frame {
                ServerFrame::Ready {
                    idle_timeout_secs, ..
                } => conn.idle_timeout = Duration::from_secs(idle_timeout_secs),
                other => bail!("expected ready, got {other:?}"),
            },
            Incoming::Closed(code) => bail!("closed before ready (code {code:?})"),
        }
        Ok(conn)
    }

    /// Sends a frame as JSON text; fails when the connection is gone.
    pub async fn send(&mut self, frame: &ClientFrame) -> anyhow::Result<()> {
        self.send_text(serde_json::to_string(frame)?).await
    }

    /// Sends a frame already serialized.
    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        Ok(self.socket.send(WsMessage::text(text)).await?)
    }

    /// The next frame, or how the connection ended; pings and pongs of the WebSocket layer are
    /// skipped. Fails on a frame that is not valid JSON of a server frame, or a binary one.
    pub async fn next(&mut self) -> anyhow::Result<Incoming> {
        loop {
            match self.socket.next().await {
                None => return Ok(Incoming::Closed(None)),
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(WsMessage::Text(text))) => {
                    let frame = serde_json::from_str(&text).context("unexpected frame")?;
                    return Ok(Incoming::Frame(Box::new(frame)));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Ok(Incoming::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(WsMessage::Binary(_))) => bail!("unexpected binary frame"),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
