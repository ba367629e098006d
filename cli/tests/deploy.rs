//! What a Kubernetes deployment relies on, against the real binary: the public gRPC listener
//! hides the internal services that the internal listener serves (so a NetworkPolicy on the
//! internal port keeps them private), the WebSocket port answers HTTP probes, and the metrics
//! listener serves the process's probes and its RPC metrics.

mod common;

use std::path::Path;

use chatmesh_api::channel::v1::{
    CheckMembershipRequest, channel_internal_service_client::ChannelInternalServiceClient,
};
use chatmesh_platform::{auth::Authenticator, config::AuthConfig};
use common::{Server, authed, chatmesh, connect, group, sign_up};

/// `chatmesh up` with an internal gRPC listener too, ready.
async fn up(data: &Path) -> Server {
    let mut command = chatmesh(data);
    command.arg("up").env("CHATMESH_GRPC__INTERNAL_LISTEN", "127.0.0.1:0");
    common::start(command, None).await
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn internal_services_are_served_only_on_the_internal_listener_and_probes_answer() {
    let data = tempfile::tempdir().unwrap();
    let server = up(data.path()).await;
    let ready = &server.listening;
    let every = [ready.grpc, ready.internal_grpc, ready.rest, ready.ws, ready.metrics];
    assert!(every.iter().all(Option::is_some), "the ready file names every listener: {ready:?}");
    let public = connect(server.grpc()).await;
    let internal = connect(server.internal_grpc()).await;

    // public services answer on both listeners
    let (_, token) = sign_up(&public, "ops@example.com").await;
    let channel_id = group(&internal, &token, &[]).await;

    // an internal RPC, with a valid service token: hidden on the public listener only
    let auth = Authenticator::from_data_dir(AuthConfig::default(), data.path()).unwrap();
    let service = auth.issue_service("chat");
    let request = || CheckMembershipRequest { channel_id: channel_id.clone(), user_id: "1".into() };
    let hidden = ChannelInternalServiceClient::new(public.clone())
        .check_membership(authed(&service, request()))
        .await
        .expect_err("not served on the public listener");
    assert_eq!(hidden.code(), tonic::Code::Unimplemented, "{hidden:?}");
    let served =
        ChannelInternalServiceClient::new(internal.clone()).check_membership(authed(&service, request())).await;
    assert!(served.is_ok(), "served on the internal listener: {served:?}");
    // the internal listener keeps the same rules: a user token is refused there
    let refused = ChannelInternalServiceClient::new(internal)
        .check_membership(authed(&token, request()))
        .await
        .expect_err("user tokens are refused on internal rpcs");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    println!("internal rpc on the public listener: {:?}; on the internal one: OK", hidden.code());

    // HTTP probes on the metrics listener (what the gateways' pods are probed on)
    assert_eq!(get(&format!("http://{}/healthz", server.metrics())).await.0, 200);
    assert_eq!(get(&format!("http://{}/readyz", server.metrics())).await, (200, "ready".to_owned()));
    // the WebSocket port upgrades
    let upgraded = tokio_tungstenite::connect_async(format!("ws://{}/?token={token}", server.ws())).await;
    assert!(upgraded.is_ok(), "the WebSocket port upgrades: {:?}", upgraded.err());

    // RPC metrics, labelled by service, method and code, with unknown paths folded into one label
    let (_, metrics) = get(&format!("http://{}/metrics", server.metrics())).await;
    let line = |needle: &str| {
        metrics.lines().any(|l| l.starts_with("chatmesh_rpc_server_requests_total") && l.contains(needle))
    };
    assert!(line(r#"method="CreateUser""#), "CreateUser counted:\n{metrics}");
    assert!(line(r#"code="UNIMPLEMENTED""#), "the hidden call counted");
    assert!(metrics.contains("chatmesh_rpc_server_duration_seconds_bucket"), "latency histogram");
}
