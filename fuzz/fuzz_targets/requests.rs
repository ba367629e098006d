//! Any bytes as the request of any RPC: decoded as its protobuf message (as tonic would) and
//! validated by the function the service runs first (`chatmesh_wire::registry`). The first byte
//! picks the RPC; every RPC of the contracts is listed (checked at the first run).
#![no_main]

use chatmesh_wire::registry::{self, RPCS};
use libfuzzer_sys::fuzz_target;

/// Every RPC of the contracts has its entry in the registry (a new RPC without a validator fails here).
fn every_rpc_is_listed() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let unlisted = registry::unlisted_rpcs();
        assert!(unlisted.is_empty(), "RPCs without a validator in chatmesh_wire::registry: {unlisted:?}");
    });
}

fuzz_target!(|data: &[u8]| {
    every_rpc_is_listed();
    let Some((&selector, bytes)) = data.split_first() else { return };
    let rpc = &RPCS[usize::from(selector) % RPCS.len()];
    // a refusal must name what it refuses
    if let Some(Err(status)) = (rpc.check)(bytes) {
        assert!(!status.message().is_empty(), "{}: an empty refusal", rpc.path);
    }
});
