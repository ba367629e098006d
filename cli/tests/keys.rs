//! Signing-key rotation with the real binary: `chatmesh admin keys rotate` while tokens are out,
//! both keys verifying during the overlap, `admin keys retire` ending the old key's tokens, and
//! a token naming an unknown key refused (the ring is local: nothing is ever fetched).

mod common;

use std::{net::SocketAddr, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chatmesh_api::user::v1::{GetMeRequest, LoginRequest, user_service_client::UserServiceClient};
use common::{Server, admin, authed, chatmesh, connect, sign_up};
use tonic::Code;

/// `chatmesh up` on `data`, ready.
async fn up(data: &Path) -> Server {
    let mut command = chatmesh(data);
    command.arg("up");
    common::start(command, None).await
}

fn keys(data: &Path, args: &[&str]) -> String {
    admin(data, &[&["keys"], args].concat())
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn get_me(grpc: SocketAddr, token: &str) -> Code {
    let mut users = UserServiceClient::new(connect(grpc).await);
    match users.get_me(authed(token, GetMeRequest {})).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn rotated_keys_overlap_and_retired_keys_stop_verifying() {
    let data = tempfile::tempdir().unwrap();
    let server = up(data.path()).await;
    let grpc = server.grpc();
    let (_, old_token) = sign_up(&connect(grpc).await, "ada@example.com").await;
    let old_kid = kid_of(&old_token);
    drop(server);

    // rotate: the old token still verifies, new tokens are signed with the new key
    let rotated = keys(data.path(), &["rotate"]);
    assert!(!rotated.contains(&old_kid), "{rotated}");
    let server = up(data.path()).await;
    let grpc = server.grpc();
    assert_eq!(get_me(grpc, &old_token).await, Code::Ok, "tokens of the old key verify during the overlap");
    let login = LoginRequest { email: "ada@example.com".into(), password: "correct horse".into(), restore: false };
    let users = UserServiceClient::new(connect(grpc).await);
    let new_token = users.clone().login(login).await.unwrap().into_inner().tokens.unwrap().access_token;
    let new_kid = kid_of(&new_token);
    assert_ne!(new_kid, old_kid);
    let listed = keys(data.path(), &["list"]);
    assert!(listed.contains(&format!("{new_kid} (signing)")) && listed.contains(&old_kid), "{listed}");
    drop(server);

    // retire the old key: its tokens fail, the new key's keep working
    let refused = chatmesh(data.path()).args(["admin", "keys", "retire", &new_kid]).output().unwrap();
    assert!(!refused.status.success(), "the signing key cannot be retired");
    keys(data.path(), &["retire", &old_kid]);
    let server = up(data.path()).await;
    let grpc = server.grpc();
    assert_eq!(get_me(grpc, &old_token).await, Code::Unauthenticated, "a retired key's tokens fail");
    assert_eq!(get_me(grpc, &new_token).await, Code::Ok);

    // a token naming a key the ring does not hold fails, whatever it is signed with
    let (header, rest) = new_token.split_once('.').unwrap();
    let mut forged_header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    forged_header["kid"] = "https://evil.example/jwks.json".into();
    let forged = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(forged_header.to_string()));
    assert_eq!(get_me(grpc, &forged).await, Code::Unauthenticated, "an unknown kid fails");
    println!(
        "rotation: old kid {old_kid} verified through the overlap and failed once retired; new kid {new_kid} kept working"
    );
}
