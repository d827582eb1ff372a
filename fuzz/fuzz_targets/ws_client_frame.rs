//! natterd's reading of a client's WebSocket text frame, before dispatch: what
//! `gateway::read_text_frame` accepts round-trips and is within the size limit, what it refuses
//! gets an `error` frame a client can read back, and a `send` frame's own checks answer 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_core::fanout::encode;
use natter_core::messages::check_send;
use natter_fuzz::{assert_client_error, assert_round_trip};
use natter_proto::limits::{CIPHERTEXT_MAX, CLIENT_MSG_ID_MAX, WS_MESSAGE_MAX};
use natter_proto::ws::{ClientFrame, ServerFrame};
use natter_server::error::ApiError;
use natter_server::gateway::read_text_frame;

fuzz_target!(|data: &[u8]| {
    // A text frame that is not UTF-8 never reaches natterd's code: tungstenite refuses it and
    // the session closes with 1007 (tested in natter-server's `tests/it`).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match read_text_frame(text) {
        Ok(frame) => {
            assert!(text.len() <= WS_MESSAGE_MAX);
            assert_round_trip(&frame);
            let json = serde_json::to_value(&frame).expect("a frame serializes");
            assert_eq!(json["type"], frame.kind(), "kind() names the frame's type");
            if let ClientFrame::Send(message) = &frame {
                match check_send(message) {
                    Ok(()) => {
                        let id = &message.client_msg_id;
                        assert!((1..=CLIENT_MSG_ID_MAX).contains(&id.len()));
                        assert!(id.chars().all(|c| c.is_ascii_graphic()));
                        assert!((1..=CIPHERTEXT_MAX).contains(&message.ciphertext.len()));
                        assert!(!message.ciphertext.contains('\0'));
                    }
                    Err(error) => assert_client_error(ApiError::from(error)),
                }
            }
        }
        Err(error) => {
            assert!(
                matches!(error.code.as_str(), "invalid_frame" | "too_large"),
                "unexpected refusal code {}",
                error.code
            );
            assert_eq!(error.code == "too_large", text.len() > WS_MESSAGE_MAX);
            assert_eq!((&error.client_msg_id, error.retry_after_ms), (&None, None));
            // What goes on the wire reads back as the same frame on the client.
            let refusal = ServerFrame::Error(error);
            let wire = encode(&refusal);
            let read: ServerFrame =
                serde_json::from_str(wire.as_str()).expect("an error frame parses");
            assert_eq!(read, refusal);
        }
    }
});
