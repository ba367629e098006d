//! The gRPC routes of a process: every service its parts serve, configured alike, with
//! grpc.health.v1 (one status per service) and reflection v1 and v1alpha — which on the
//! public listener describes only the public services.

use std::convert::Infallible;

use chatmesh_api::FILE_DESCRIPTOR_SET;
use tonic::{
    body::Body,
    server::NamedService,
    service::{Routes, RoutesBuilder},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::running::Health;

/// A process's gRPC routes: the same services twice, told apart by their reflection.
pub(crate) struct GrpcRoutes {
    /// For the in-process transport and the internal listener: reflection describes every service.
    pub(crate) every: Routes,
    /// For the public listener: reflection leaves the internal services out (they answer only
    /// service principals, and on a public listener beside an internal one, nobody).
    pub(crate) public: Routes,
}

/// The routes being gathered, and the health reporter that follows them.
pub(crate) struct GrpcServices {
    every: RoutesBuilder,
    public: RoutesBuilder,
    health: HealthReporter,
    served: Vec<&'static str>,
    /// Largest message a service accepts or sends (`grpc.max_message_bytes`).
    pub(crate) max_message_bytes: usize,
}

/// Adds a generated server over `$api` to `$services`, configured like every other: message
/// limits and gzip both ways.
macro_rules! add {
    ($services:expr, $server:ident, $api:expr) => {{
        let max = $services.max_message_bytes;
        let server = $server::new($api)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        $services.add(server).await;
    }};
}
pub(crate) use add;

impl GrpcServices {
    /// Health and reflection only.
    pub(crate) fn new(max_message_bytes: usize) -> anyhow::Result<Self> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let public_contracts = public_descriptor_set(FILE_DESCRIPTOR_SET)?;
        let routes = |contracts: &[u8]| -> anyhow::Result<RoutesBuilder> {
            let reflection = || {
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(contracts)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            };
            let mut routes = RoutesBuilder::default();
            routes
                .add_service(health_service.clone())
                .add_service(reflection().build_v1()?)
                .add_service(reflection().build_v1alpha()?);
            Ok(routes)
        };
        Ok(Self {
            every: routes(FILE_DESCRIPTOR_SET)?,
            public: routes(&public_contracts)?,
            health,
            served: vec![""],
            max_message_bytes,
        })
    }

    /// Routes `server`'s service and reports it SERVING (use [`add!`], which configures it).
    pub(crate) async fn add<S>(&mut self, server: S)
    where
        S: tower::Service<http::Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.health.set_service_status(S::NAME, ServingStatus::Serving).await;
        self.served.push(S::NAME);
        self.every.add_service(server.clone());
        self.public.add_service(server);
    }

    /// The routes, and the process's health (the whole server now SERVING).
    pub(crate) async fn finish(self) -> (GrpcRoutes, Health) {
        self.health.set_service_status("", ServingStatus::Serving).await;
        let routes = GrpcRoutes { every: self.every.routes(), public: self.public.routes() };
        (routes, Health { reporter: self.health, served: self.served })
    }
}

/// A file descriptor set as its files' encoded bytes, so that the files kept are passed on
/// exactly as encoded (decoding them into `prost_types` would drop custom options).
#[derive(Clone, PartialEq, prost::Message)]
struct EncodedFiles {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// `set` without the files that declare an internal service (`*InternalService`). No public
/// contract imports one, so what is left is complete.
fn public_descriptor_set(set: &[u8]) -> anyhow::Result<Vec<u8>> {
    use prost::Message as _;
    let mut files = EncodedFiles::decode(set)?;
    let mut kept = Vec::with_capacity(files.file.len());
    for encoded in files.file {
        let file = prost_types::FileDescriptorProto::decode(encoded.as_slice())?;
        if !file.service.iter().any(|s| s.name().ends_with("InternalService")) {
            kept.push(encoded);
        }
    }
    files.file = kept;
    Ok(files.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn services(set: &[u8]) -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(set).unwrap();
        set.file.iter().flat_map(|f| f.service.iter().map(|s| format!("{}.{}", f.package(), s.name()))).collect()
    }

    #[test]
    fn the_public_contracts_leave_out_every_internal_service_and_nothing_else() {
        let every = services(FILE_DESCRIPTOR_SET);
        let public = services(&public_descriptor_set(FILE_DESCRIPTOR_SET).unwrap());
        let expected: Vec<String> = every.iter().filter(|s| !s.ends_with("InternalService")).cloned().collect();
        assert!(every.len() > expected.len(), "internal services to leave out: {every:?}");
        assert_eq!(public, expected);
    }

    #[test]
    fn the_public_contracts_keep_their_files_byte_for_byte_and_resolve_on_their_own() {
        let public = public_descriptor_set(FILE_DESCRIPTOR_SET).unwrap();
        let (every, kept) =
            (EncodedFiles::decode(FILE_DESCRIPTOR_SET).unwrap(), EncodedFiles::decode(&*public).unwrap());
        assert!(kept.file.iter().all(|f| every.file.contains(f)), "files passed on as encoded");
        let pool = prost_reflect::DescriptorPool::decode(public.as_slice()).expect("every import is present");
        let http = pool.get_extension_by_name("google.api.http").expect("the REST bindings' option is kept");
        let method = pool.get_service_by_name("chatmesh.user.v1.UserService").unwrap().methods().next().unwrap();
        assert!(method.options().has_extension(&http), "{} keeps its google.api.http option", method.full_name());
    }
}
