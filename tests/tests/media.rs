//! Attachments from outside, with real HTTP uploads and downloads: on local files (always) and
//! on S3 (moto on loopback, when CHATMESH_TEST_S3_ENDPOINT is set — `make test` sets it).

use std::{path::Path, time::Duration};

use chatmesh_api::{
    channel::v1::ChannelVisibility,
    chat::v1::{self as pb, chat_service_client::ChatServiceClient},
};
use chatmesh_platform::config::Config;
use chatmesh_tests::{TestApp, User, authed, test_config};
use tonic::{Code, transport::Channel};

/// A PNG header of `width` × `height` (enough for anything that reads dimensions), padded.
fn png(width: u32, height: u32, len: usize) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes.resize(len, 7);
    bytes
}

async fn create_upload(
    chats: &mut ChatServiceClient<Channel>,
    who: &User,
    channel_id: &str,
    file_name: &str,
    content_type: &str,
    size: usize,
) -> Result<pb::CreateUploadResponse, tonic::Status> {
    let request = pb::CreateUploadRequest {
        channel_id: channel_id.into(),
        file_name: file_name.into(),
        content_type: content_type.into(),
        size_bytes: size as i64,
    };
    chats.create_upload(authed(&who.token, request)).await.map(|r| r.into_inner())
}

async fn put(url: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::Client::new()
        .put(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the upload URL answers");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// A refusal's code and `ErrorInfo` reason.
fn refusal(status: &tonic::Status) -> (Code, String) {
    let (_, body) = chatmesh_platform::error::http_error_body(status);
    (status.code(), body["details"][0]["reason"].as_str().unwrap_or_default().to_owned())
}

async fn get(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let response = reqwest::get(url).await.expect("the download URL answers");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

async fn send(
    chats: &mut ChatServiceClient<Channel>,
    who: &User,
    channel_id: &str,
    text: &str,
    uploads: &[&str],
) -> Result<pb::Chat, tonic::Status> {
    let request = pb::CreateChatRequest {
        channel_id: channel_id.into(),
        text: text.into(),
        attachment_upload_ids: uploads.iter().map(|u| u.to_string()).collect(),
        ..Default::default()
    };
    chats.create_chat(authed(&who.token, request)).await.map(|r| r.into_inner().chat.expect("chat"))
}

async fn download_url(
    chats: &mut ChatServiceClient<Channel>,
    who: &User,
    upload_id: &str,
) -> Result<String, tonic::Status> {
    let request = pb::GetAttachmentUrlRequest { upload_id: upload_id.into() };
    chats.get_attachment_url(authed(&who.token, request)).await.map(|r| r.into_inner().download_url)
}

/// Upload, attach, download as another member: the same bytes and type; what was attached is
/// described on the chat.
async fn round_trip(app: &TestApp) {
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let channel = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let mut chats = app.chats().await;
    let bytes = png(3, 2, 4096);
    let upload = create_upload(&mut chats, &alice, &channel, "cat.png", "image/png", bytes.len()).await.unwrap();
    assert!(upload.expires_at.is_some());
    let (status, body) = put(&upload.upload_url, "image/png", bytes.clone()).await;
    assert_eq!(status, 200, "{body}");
    let chat = send(&mut chats, &alice, &channel, "", &[&upload.upload_id]).await.expect("a chat of only a file");
    let attachment = &chat.attachments[0];
    assert_eq!(
        (attachment.file_name.as_str(), attachment.content_type.as_str(), attachment.size_bytes),
        ("cat.png", "image/png", 4096)
    );
    assert_eq!((attachment.width, attachment.height), (3, 2), "image dimensions");
    let url = download_url(&mut chats, &bob, &upload.upload_id).await.unwrap();
    let (status, content_type, downloaded) = get(&url).await;
    assert_eq!((status, content_type.as_deref()), (200, Some("image/png")));
    assert_eq!(downloaded, bytes, "the same bytes");
    let again = send(&mut chats, &alice, &channel, "again", &[&upload.upload_id]).await.unwrap_err();
    assert_eq!(refusal(&again), (Code::FailedPrecondition, "UPLOAD_ATTACHED".into()), "attached once: {again:?}");
}

/// A body of another type, or longer than declared, is refused at attach time at the latest,
/// and nothing of it stays stored.
/// `checked_on_upload`: the backend refuses such a body as it receives it (local files) rather
/// than storing it (S3).
async fn mismatches_are_refused_and_removed(app: &TestApp, checked_on_upload: bool) {
    let alice = app.user("mallory").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    for (sent_type, body) in [("text/plain", png(1, 1, 100)), ("image/png", png(1, 1, 150))] {
        let upload = create_upload(&mut chats, &alice, &channel, "a.png", "image/png", 100).await.unwrap();
        let (status, _) = put(&upload.upload_url, sent_type, body).await;
        let attach = send(&mut chats, &alice, &channel, "x", &[&upload.upload_id]).await.unwrap_err();
        if checked_on_upload {
            assert!((400..500).contains(&status), "{sent_type}: refused as it arrives, got {status}");
            assert_eq!(attach.code(), Code::FailedPrecondition, "never finished: {attach:?}");
        } else {
            // S3 stores what it is sent; the attach check catches it and deletes the object
            assert_eq!(status, 200, "{sent_type}: stored by S3");
            assert_eq!(attach.code(), Code::InvalidArgument, "{attach:?}");
            assert!(attach.message().starts_with("attachment_upload_ids"), "{}", attach.message());
        }
        let attach = send(&mut chats, &alice, &channel, "x", &[&upload.upload_id]).await.unwrap_err();
        assert_eq!(attach.code(), Code::FailedPrecondition, "nothing is stored: {attach:?}");
    }
}

fn s3_config() -> Option<(tempfile::TempDir, Config)> {
    let Ok(endpoint) = std::env::var("CHATMESH_TEST_S3_ENDPOINT") else {
        println!("skipped: CHATMESH_TEST_S3_ENDPOINT is not set (make test starts moto's S3 server)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.media.backend = chatmesh_platform::config::MediaBackend::S3;
    config.media.s3_endpoint = endpoint;
    config.media.s3_allow_http = true;
    config.media.s3_bucket = format!("chatmesh-{}", std::process::id());
    Some((dir, config))
}

async fn create_bucket(config: &Config) {
    let url = format!("{}/{}", config.media.s3_endpoint, config.media.s3_bucket);
    let status = reqwest::Client::new().put(url).send().await.expect("moto answers").status();
    assert!(status.is_success(), "bucket created: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_round_trip_between_members() {
    let app = TestApp::spawn().await;
    round_trip(&app).await;
    mismatches_are_refused_and_removed(&app, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trips_between_members() {
    let Some((_dir, config)) = s3_config() else { return };
    create_bucket(&config).await;
    let app = TestApp::spawn_with(config).await;
    round_trip(&app).await;
    mismatches_are_refused_and_removed(&app, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_get_urls_and_only_their_own_pending_uploads_attach() {
    let app = TestApp::spawn().await;
    let (alice, bob, outsider) = (app.user("alice").await, app.user("bob").await, app.user("eve").await);
    let channel = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let other = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;

    let refused = create_upload(&mut chats, &outsider, &channel, "x.png", "image/png", 10).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "a private channel does not exist for an outsider");
    let unfinished = create_upload(&mut chats, &alice, &channel, "a.txt", "text/plain", 5).await.unwrap();
    let err = send(&mut chats, &alice, &channel, "x", &[&unfinished.upload_id]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "not uploaded yet");
    let (status, body) = put(&unfinished.upload_url, "text/plain", b"hello".to_vec()).await;
    assert_eq!(status, 200, "uploaded: {body}");
    // someone else's upload, another channel's and none at all are answered alike
    for (who, channel, upload_id, what) in [
        (&bob, &channel, unfinished.upload_id.as_str(), "another user's upload"),
        (&alice, &other, unfinished.upload_id.as_str(), "another channel's upload"),
        (&alice, &channel, "999999", "no upload"),
    ] {
        let err = send(&mut chats, who, channel, "x", &[upload_id]).await.unwrap_err();
        assert_eq!(refusal(&err), (Code::NotFound, "UPLOAD_NOT_FOUND".into()), "{what}");
        let message = format!("attachment_upload_ids: upload {upload_id} is not an upload of yours in this channel");
        assert_eq!(err.message(), message, "{what}");
    }
    let chat = send(&mut chats, &alice, &channel, "notes", &[&unfinished.upload_id]).await.unwrap();
    assert_eq!(chat.attachments.len(), 1);

    let err = download_url(&mut chats, &outsider, &unfinished.upload_id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let url = download_url(&mut chats, &bob, &unfinished.upload_id).await.unwrap();
    assert_eq!(get(&url).await.2, b"hello");

    for (name, content_type, size, field) in [
        ("", "image/png", 10, "file_name"),
        ("a\u{7}.png", "image/png", 10, "file_name"),
        ("a.html", "text/html", 10, "content_type"),
        ("a.png", "", 10, "content_type"),
        ("a.png", "image/png", 0, "size_bytes"),
        ("a.png", "image/png", 25 * 1024 * 1024 + 1, "size_bytes"),
    ] {
        let err = create_upload(&mut chats, &alice, &channel, name, content_type, size).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?} {content_type:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    let many: Vec<&str> = vec!["1"; 11];
    let err = send(&mut chats, &alice, &channel, "x", &many).await.unwrap_err();
    assert!(err.message().starts_with("attachment_upload_ids"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_and_oversized_uploads_store_nothing_and_names_never_become_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.media.upload_url_ttl_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;

    let upload = create_upload(&mut chats, &alice, &channel, "../../etc/passwd", "text/plain", 4).await.unwrap();
    let tampered = upload.upload_url.replace("len=4", "len=40");
    assert_eq!(put(&tampered, "text/plain", vec![b'x'; 40]).await.0, 403, "a changed length breaks the signature");
    let forged = upload.upload_url.replace(&format!("uploads/{}", upload.upload_id), "uploads/1");
    assert_eq!(put(&forged, "text/plain", b"evil".to_vec()).await.0, 403, "another key breaks the signature");
    assert_eq!(put(&upload.upload_url, "text/plain", b"too long".to_vec()).await.0, 413);
    assert_eq!(put(&upload.upload_url, "text/plain", b"abc".to_vec()).await.0, 400, "shorter than declared");
    assert_eq!(put(&upload.upload_url, "image/png", b"abcd".to_vec()).await.0, 400, "another type");
    let err = send(&mut chats, &alice, &channel, "x", &[&upload.upload_id]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "nothing was stored");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = put(&upload.upload_url, "text/plain", b"late".to_vec()).await;
    assert_eq!(status, 403, "expired: {body}");
    assert!(body.contains("expired"), "{body}");

    let named = create_upload(&mut chats, &alice, &channel, "a/b%2Fc", "text/plain", 2).await.unwrap();
    assert!(named.upload_url.contains(&format!("/media/uploads/{}?", named.upload_id)), "{}", named.upload_url);
    assert_eq!(put(&named.upload_url, "text/plain", b"ok".to_vec()).await.0, 200);
    // the only file written anywhere in the data dir's media root is the generated key
    let media = dir.path().join("media");
    let files = walk(&media);
    assert_eq!(files, vec![media.join("uploads").join(&named.upload_id)], "{files:?}");
    assert!(!dir.path().join("etc").exists() && !Path::new("/etc/passwd.chatmesh").exists());
    let raw = format!("http://{}/media/../../etc/passwd", app.rest_addr);
    assert!(matches!(put(&raw, "text/plain", b"evil".to_vec()).await.0, 403 | 404));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_and_retracted_uploads_are_reclaimed_and_attached_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.media.abandoned_after_secs = 1;
    config.media.sweep_interval_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    let upload = |name: &'static str| {
        let (mut chats, alice, channel) = (chats.clone(), alice.clone(), channel.clone());
        async move {
            let upload = create_upload(&mut chats, &alice, &channel, name, "text/plain", 4).await.unwrap();
            assert_eq!(put(&upload.upload_url, "text/plain", b"data".to_vec()).await.0, 200);
            upload.upload_id
        }
    };
    let (abandoned, kept, retracted) = (upload("a.txt").await, upload("k.txt").await, upload("r.txt").await);
    send(&mut chats, &alice, &channel, "kept", &[&kept]).await.unwrap();
    let doomed = send(&mut chats, &alice, &channel, "retracted", &[&retracted]).await.unwrap();
    let retract = pb::RetractChatsRequest { chat_ids: vec![doomed.chat_id] };
    chats.retract_chats(authed(&alice.token, retract)).await.unwrap();

    let file = |id: &str| dir.path().join("media").join("uploads").join(id);
    let started = std::time::Instant::now();
    while file(&abandoned).exists() || file(&retracted).exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the sweeper reclaims them");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(file(&kept).exists(), "an attached upload is kept");
    // why: the sweeper forgets the record just after deleting the file, so attaching may still
    // find it expired; once forgotten, it is no upload at all
    loop {
        let err = send(&mut chats, &alice, &channel, "late", &[&abandoned]).await.unwrap_err();
        match refusal(&err) {
            (Code::NotFound, reason) if reason == "UPLOAD_NOT_FOUND" => break,
            (Code::FailedPrecondition, reason) if reason == "UPLOAD_EXPIRED" => {}
            _ => panic!("an expired upload cannot be attached: {err:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the sweeper forgets it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(download_url(&mut chats, &alice, &retracted).await.unwrap_err().code(), Code::NotFound);
    let url = download_url(&mut chats, &alice, &kept).await.unwrap();
    assert_eq!(get(&url).await.2, b"data");
    let (_, metrics) = chatmesh_tests::raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
    assert!(metrics.contains("chatmesh_media_reclaimed_bytes_total"), "{metrics}");
}
