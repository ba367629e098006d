//! Generated gRPC contracts of chatmesh (from proto/) and their encoded descriptor set.
//!
//! Services whose RPCs are not built yet answer UNIMPLEMENTED through the generated
//! default method bodies; a service overrides each RPC as it is built.

#![allow(clippy::all, missing_docs, unreachable_pub)]

/// The encoded `FileDescriptorSet` of every proto file, custom options included
/// (for reflection and the REST gateway).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/chatmesh_descriptor.bin"));

/// The descriptors of every contract, for code that works on messages by name (the REST
/// gateway's transcoding, the WebSocket gateway's JSON frames).
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    // why: the set is compiled into the binary by build.rs and always decodes.
    POOL.get_or_init(|| prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap_or_default())
}

pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

pub mod user {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/chatmesh.user.v1.rs"));
    }
}

pub mod channel {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/chatmesh.channel.v1.rs"));
    }
}

pub mod chat {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/chatmesh.chat.v1.rs"));
    }
}

pub mod feed {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/chatmesh.feed.v1.rs"));
    }
}

pub mod dispatcher {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/chatmesh.dispatcher.v1.rs"));
    }
}
