//! Any JSON body or query string as the request of any RPC the REST gateway routes: a message,
//! or a 400's message. The first byte picks the request type and whether it is a body or a query.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost_reflect::MessageDescriptor;

/// The request message of every RPC of the contracts.
fn inputs() -> &'static [MessageDescriptor] {
    static INPUTS: OnceLock<Vec<MessageDescriptor>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let pool = chatmesh_api::descriptor_pool();
        pool.services().flat_map(|s| s.methods().map(|m| m.input()).collect::<Vec<_>>()).collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let inputs = inputs();
    let input = &inputs[usize::from(selector >> 1) % inputs.len()];
    let as_body = selector & 1 == 0;
    let result = if as_body {
        chatmesh_wire::transcode::request_message(input, true, &[], &[], rest)
    } else {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        let query: Vec<(String, String)> = text
            .split('&')
            .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        chatmesh_wire::transcode::request_message(input, false, &[("channel_id", "1")], &query, b"")
    };
    if let Err(message) = result {
        assert!(!message.is_empty());
    }
});
