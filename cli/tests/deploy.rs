//! What a Kubernetes deployment relies on, against the real binary: the public gRPC listener
//! hides the internal services that the internal listener serves (so a NetworkPolicy on the
//! internal port keeps them private), the WebSocket port answers HTTP probes, and the metrics
//! listener serves the process's probes and its RPC metrics.

mod common;

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use chatmesh_api::channel::v1::{
    CheckMembershipRequest, channel_internal_service_client::ChannelInternalServiceClient,
};
use chatmesh_platform::{auth::Authenticator, config::AuthConfig};
use common::{Process, authed, chatmesh, connect, free_addr, group, launch, sign_up};

struct Listeners {
    grpc: SocketAddr,
    internal: SocketAddr,
    ws: SocketAddr,
    metrics: SocketAddr,
}

fn up(data: &Path, at: &Listeners) -> Process {
    let mut command = chatmesh(data);
    command
        .args(["up", "--grpc-listen", &at.grpc.to_string()])
        .args(["--rest-listen", &free_addr().to_string(), "--ws-listen", &at.ws.to_string()])
        .args(["--metrics-listen", &at.metrics.to_string()])
        .env("CHATMESH_GRPC__INTERNAL_LISTEN", at.internal.to_string());
    launch(command, None)
}

async fn get(url: &str) -> (u16, String) {
    let started = Instant::now();
    loop {
        match reqwest::get(url).await {
            Ok(response) => return (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("GET {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn internal_services_are_served_only_on_the_internal_listener_and_probes_answer() {
    let data = tempfile::tempdir().unwrap();
    let at = Listeners { grpc: free_addr(), internal: free_addr(), ws: free_addr(), metrics: free_addr() };
    let _server = up(data.path(), &at);
    let public = connect(at.grpc).await;
    let internal = connect(at.internal).await;

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
    assert_eq!(get(&format!("http://{}/healthz", at.metrics)).await.0, 200);
    assert_eq!(get(&format!("http://{}/readyz", at.metrics)).await, (200, "ready".to_owned()));
    // the WebSocket port upgrades
    let upgraded = tokio_tungstenite::connect_async(format!("ws://{}/?token={token}", at.ws)).await;
    assert!(upgraded.is_ok(), "the WebSocket port upgrades: {:?}", upgraded.err());

    // RPC metrics, labelled by service, method and code, with unknown paths folded into one label
    let (_, metrics) = get(&format!("http://{}/metrics", at.metrics)).await;
    let line = |needle: &str| {
        metrics.lines().any(|l| l.starts_with("chatmesh_rpc_server_requests_total") && l.contains(needle))
    };
    assert!(line(r#"method="CreateUser""#), "CreateUser counted:\n{metrics}");
    assert!(line(r#"code="UNIMPLEMENTED""#), "the hidden call counted");
    assert!(metrics.contains("chatmesh_rpc_server_duration_seconds_bucket"), "latency histogram");
}
