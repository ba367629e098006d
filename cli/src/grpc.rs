//! The gRPC routes of a process: every service its parts serve, configured alike, with
//! grpc.health.v1 (one status per service) and reflection v1 and v1alpha.

use std::convert::Infallible;

use chatmesh_api::FILE_DESCRIPTOR_SET;
use tonic::{
    body::Body,
    server::NamedService,
    service::{Routes, RoutesBuilder},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::running::Health;

/// The routes being gathered, and the health reporter that follows them.
pub(crate) struct GrpcServices {
    routes: RoutesBuilder,
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
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        };
        let mut routes = RoutesBuilder::default();
        routes
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
        Ok(Self { routes, health, served: vec![""], max_message_bytes })
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
        self.routes.add_service(server);
    }

    /// The routes, and the process's health (the whole server now SERVING).
    pub(crate) async fn finish(self) -> (Routes, Health) {
        self.health.set_service_status("", ServingStatus::Serving).await;
        (self.routes.routes(), Health { reporter: self.health, served: self.served })
    }
}
