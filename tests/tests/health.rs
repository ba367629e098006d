//! What operators and tools see: grpc.health.v1 per service, and server reflection.

use chatmesh_tests::TestApp;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[tokio::test]
async fn every_service_reports_serving_without_a_token() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in [
        "",
        "chatmesh.user.v1.UserService",
        "chatmesh.user.v1.UserInternalService",
        "chatmesh.channel.v1.ChannelService",
        "chatmesh.channel.v1.ChannelInternalService",
        "chatmesh.chat.v1.ChatService",
        "chatmesh.chat.v1.ChatInternalService",
        "chatmesh.dispatcher.v1.DispatcherService",
        "chatmesh.dispatcher.v1.DispatcherInternalService",
        "chatmesh.feed.v1.FeedService",
        "chatmesh.feed.v1.FeedInternalService",
    ] {
        let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "nope.v1.Nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[test]
fn the_descriptor_set_keeps_the_http_options() {
    // why: the paths live only in google.api.http options, which a prost_types re-encoding drops.
    let bytes = String::from_utf8_lossy(chatmesh_api::FILE_DESCRIPTOR_SET);
    for path in
        ["/api/v1/users/me", "/api/v1/channels/{channel_id}", "/api/v1/chats/retract-multiple", "/api/v1/chats-search"]
    {
        assert!(bytes.contains(path), "{path}");
    }
}
