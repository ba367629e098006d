//! Field validation shared by the services (it lives in `chatmesh-wire`, with the request
//! validation it is made of).

pub use chatmesh_wire::validate::*;
