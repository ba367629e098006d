//! Pagination (it lives in `chatmesh-wire`, with the request validation that reads it).

pub use chatmesh_wire::page::*;
