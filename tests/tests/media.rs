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

    // an upload's bytes are staged under uploads/ and, once attached, kept under attached/ only
    let staged = |id: &str| dir.path().join("media").join("uploads").join(id);
    let attached = |id: &str| dir.path().join("media").join("attached").join(id);
    let started = std::time::Instant::now();
    while staged(&abandoned).exists() || attached(&retracted).exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the sweeper reclaims them");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(attached(&kept).exists(), "an attached upload is kept");
    assert!(!staged(&kept).exists() && !staged(&retracted).exists(), "attaching drops the staged copy");
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

/// A GET's status, headers and body.
async fn fetch(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = reqwest::get(url).await.expect("the URL answers");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.bytes().await.unwrap().to_vec())
}

async fn retract(chats: &mut ChatServiceClient<Channel>, who: &User, chat_id: &str) {
    let request = pb::RetractChatsRequest { chat_ids: vec![chat_id.into()] };
    let outcome = chats.retract_chats(authed(&who.token, request)).await.expect("retracted").into_inner();
    assert!(format!("{outcome:?}").contains(chat_id), "{outcome:?}");
}

/// What was attached is what everyone downloads: once a chat carries the file, its upload URL
/// cannot change the bytes any URL serves — issued before the attempt or after.
/// `late_put_refused`: the backend refuses the late PUT itself (local files; S3 takes it into a
/// key nothing serves).
async fn attached_files_are_final(app: &TestApp, late_put_refused: bool) {
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let channel = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let mut chats = app.chats().await;
    let upload = create_upload(&mut chats, &alice, &channel, "notes.txt", "text/plain", 10).await.unwrap();
    assert_eq!(put(&upload.upload_url, "text/plain", b"0123456789".to_vec()).await.0, 200);
    let chat = send(&mut chats, &alice, &channel, "", &[&upload.upload_id]).await.unwrap();
    let early = download_url(&mut chats, &bob, &upload.upload_id).await.unwrap();
    assert_eq!(get(&early).await.2, b"0123456789");

    let (status, body) = put(&upload.upload_url, "text/plain", b"EVILEVIL!!".to_vec()).await;
    if late_put_refused {
        assert_eq!(status, 409, "a PUT after attach is refused: {body}");
        assert!(body.contains("FAILED_PRECONDITION"), "{body}");
    }
    let late = download_url(&mut chats, &alice, &upload.upload_id).await.unwrap();
    for url in [&early, &late] {
        let (status, _, downloaded) = get(url).await;
        assert_eq!((status, downloaded.as_slice()), (200, &b"0123456789"[..]), "what was attached is served");
    }
    retract(&mut chats, &alice, &chat.chat_id).await;
    let (status, body) = put(&upload.upload_url, "text/plain", b"EVILEVIL!!".to_vec()).await;
    if late_put_refused {
        assert_eq!(status, 409, "a PUT after retraction is refused: {body}");
    }
    assert_eq!(download_url(&mut chats, &bob, &upload.upload_id).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_file_cannot_be_replaced_through_its_upload_url() {
    let app = TestApp::spawn().await;
    attached_files_are_final(&app, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_file_on_s3_cannot_be_replaced_through_its_upload_url() {
    let Some((_dir, config)) = s3_config() else { return };
    create_bucket(&config).await;
    let app = TestApp::spawn_with(config).await;
    attached_files_are_final(&app, false).await;
    // moto ignores response-content-* overrides, so the signed URL itself is what is checked
    let alice = app.user("carol").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    for (name, content_type, disposition) in
        [("a.png", "image/png", "inline"), ("a.pdf", "application/pdf", "attachment")]
    {
        let upload = create_upload(&mut chats, &alice, &channel, name, content_type, 4).await.unwrap();
        assert_eq!(put(&upload.upload_url, content_type, b"data".to_vec()).await.0, 200);
        send(&mut chats, &alice, &channel, "", &[&upload.upload_id]).await.unwrap();
        let url = reqwest::Url::parse(&download_url(&mut chats, &alice, &upload.upload_id).await.unwrap()).unwrap();
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query.get("response-content-type").map(String::as_str), Some(content_type), "{url}");
        let sent = query.get("response-content-disposition").cloned().unwrap_or_default();
        assert!(sent.starts_with(&format!("{disposition};")), "{content_type}: {sent}");
    }
}

/// The headers that keep a file from acting as a page of the origin serving it.
fn assert_inert(headers: &reqwest::header::HeaderMap, what: &str) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("content-security-policy"), "sandbox; default-src 'none'", "{what}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_types_safe_to_show_are_accepted_and_every_media_answer_is_inert() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    for content_type in
        ["image/svg+xml", "image/html", "video/html", "audio/html", "text/html", "image/../text/html", "image/x-icon"]
    {
        let err = create_upload(&mut chats, &alice, &channel, "a.png", content_type, 10).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{content_type}: {err:?}");
        assert!(err.message().starts_with("content_type"), "{content_type}: {}", err.message());
    }
    // the REST surface answers alike, naming the field
    let body =
        serde_json::json!({"channelId": channel, "fileName": "x.svg", "contentType": "image/svg+xml", "sizeBytes": 10});
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/uploads", app.rest_addr))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(answer["message"].as_str().unwrap_or_default().starts_with("content_type"), "{answer}");

    // inline only for types a browser shows without running anything; everything else is a download
    for (name, content_type, disposition) in [
        ("a.png", "image/png", "inline"),
        ("a.webp", "image/webp", "inline"),
        ("a.mp4", "video/mp4", "inline"),
        ("a.txt", "text/plain", "inline"),
        ("a.pdf", "application/pdf", "attachment"),
    ] {
        let upload = create_upload(&mut chats, &alice, &channel, name, content_type, 4).await.unwrap();
        let (status, headers, _) = {
            let response = reqwest::Client::new()
                .put(&upload.upload_url)
                .header("content-type", content_type)
                .body(b"data".to_vec())
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.headers().clone(), ())
        };
        assert_eq!(status, 200);
        assert_inert(&headers, &format!("PUT {content_type}"));
        send(&mut chats, &alice, &channel, "", &[&upload.upload_id]).await.unwrap();
        let url = download_url(&mut chats, &alice, &upload.upload_id).await.unwrap();
        let (status, headers, body) = fetch(&url).await;
        assert_eq!((status, body.as_slice()), (200, &b"data"[..]));
        assert_eq!(headers["content-type"], content_type);
        let sent = headers["content-disposition"].to_str().unwrap();
        assert!(sent.starts_with(&format!("{disposition};")), "{content_type}: {sent}");
        assert_inert(&headers, &format!("GET {content_type}"));
        // refusals too: a tampered signature, a missing file, a path that is not ours
        let tampered = url.replace("sig=", "sig=x");
        let (status, headers, _) = fetch(&tampered).await;
        assert_eq!(status, 403);
        assert_inert(&headers, "a refused URL");
    }
    let (status, headers, _) = fetch(&format!("http://{}/media/uploads/1?sig=x", app.rest_addr)).await;
    assert_eq!(status, 403);
    assert_inert(&headers, "an unsigned URL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_url_stops_serving_once_its_viewer_is_kicked_or_the_chat_retracted() {
    let app = TestApp::spawn().await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let channel = app.group(&alice, ChannelVisibility::Private, &[&bob, &carol]).await.channel_id;
    let mut chats = app.chats().await;
    let upload = create_upload(&mut chats, &alice, &channel, "plan.txt", "text/plain", 6).await.unwrap();
    assert_eq!(put(&upload.upload_url, "text/plain", b"secret".to_vec()).await.0, 200);
    let chat = send(&mut chats, &alice, &channel, "", &[&upload.upload_id]).await.unwrap();

    let request = pb::GetAttachmentUrlRequest { upload_id: upload.upload_id.clone() };
    let issued = chats.get_attachment_url(authed(&bob.token, request)).await.unwrap().into_inner();
    let expires = issued.expires_at.expect("expires_at").seconds;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(expires - now <= 5 * 60 + 1, "a download URL lives at most 5 minutes: {}", expires - now);
    let bobs = issued.download_url;
    let carols = download_url(&mut chats, &carol, &upload.upload_id).await.unwrap();
    assert_eq!(get(&bobs).await.2, b"secret");

    let kick = chatmesh_api::channel::v1::DeleteMemberRequest { channel_id: channel.clone(), user_id: bob.id.clone() };
    app.channels().await.delete_member(authed(&alice.token, kick)).await.expect("kicked");
    let (status, headers, body) = fetch(&bobs).await;
    assert_eq!(status, 404, "a kicked member's URL no longer serves: {}", String::from_utf8_lossy(&body));
    assert_inert(&headers, "a kicked member's URL");
    assert_eq!(get(&carols).await.2, b"secret", "a member's URL still serves");

    retract(&mut chats, &alice, &chat.chat_id).await;
    let (status, _, _) = fetch(&carols).await;
    assert_eq!(status, 404, "a retracted chat's file no longer serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_can_be_served_from_an_origin_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.media.listen = Some(([127, 0, 0, 1], 0).into());
    let app = TestApp::spawn_with(config).await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    let upload = create_upload(&mut chats, &alice, &channel, "a.txt", "text/plain", 2).await.unwrap();
    let origin = reqwest::Url::parse(&upload.upload_url).unwrap();
    let media_port = origin.port().expect("a port");
    assert_ne!(media_port, app.rest_addr.port(), "not the API's origin: {}", upload.upload_url);
    assert_eq!(put(&upload.upload_url, "text/plain", b"ok".to_vec()).await.0, 200);
    send(&mut chats, &alice, &channel, "", &[&upload.upload_id]).await.unwrap();
    let url = download_url(&mut chats, &alice, &upload.upload_id).await.unwrap();
    let (status, headers, body) = fetch(&url).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    assert_inert(&headers, "the media origin");
    // the same signed URL on the API's origin is no file at all
    let on_api = url.replace(&format!(":{media_port}/"), &format!(":{}/", app.rest_addr.port()));
    assert_ne!(on_api, url);
    assert_eq!(fetch(&on_api).await.0, 404, "the API origin serves no media");
}

/// A file attached before attachments had a key of their own (its bytes only at the upload's
/// key) is still served: the first download URL claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_attached_before_attached_keys_existed_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(test_config(dir.path().to_owned())).await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    let upload = create_upload(&mut chats, &alice, &channel, "old.txt", "text/plain", 4).await.unwrap();
    assert_eq!(put(&upload.upload_url, "text/plain", b"kept".to_vec()).await.0, 200);
    send(&mut chats, &alice, &channel, "", &[&upload.upload_id]).await.unwrap();
    // the layout an older version left: the attached bytes at the upload's key only
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("uploads")).unwrap();
    std::fs::rename(media.join("attached").join(&upload.upload_id), media.join("uploads").join(&upload.upload_id))
        .unwrap();
    let url = download_url(&mut chats, &alice, &upload.upload_id).await.unwrap();
    assert_eq!(get(&url).await, (200, Some("text/plain".into()), b"kept".to_vec()));

    // staged bytes replaced after such an attach (another size) are never served
    let replaced = create_upload(&mut chats, &alice, &channel, "old2.txt", "text/plain", 4).await.unwrap();
    assert_eq!(put(&replaced.upload_url, "text/plain", b"kept".to_vec()).await.0, 200);
    send(&mut chats, &alice, &channel, "", &[&replaced.upload_id]).await.unwrap();
    std::fs::remove_file(media.join("attached").join(&replaced.upload_id)).unwrap();
    std::fs::write(media.join("uploads").join(&replaced.upload_id), b"EVIL BYTES").unwrap();
    let err = download_url(&mut chats, &alice, &replaced.upload_id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(!media.join("attached").join(&replaced.upload_id).exists(), "the mismatched copy is not kept");
}
