//! Any bytes as a WebSocket client frame: read, or refused with an error frame's code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the gateway hands the reader text frames only (tungstenite refuses invalid UTF-8)
    let Ok(text) = std::str::from_utf8(data) else { return };
    match chatmesh_wire::frames::parse(text) {
        Ok(_) => {}
        Err(refused) => assert!(!refused.code.is_empty() && !refused.message.is_empty()),
    }
});
