//! Abuse from outside, as an attacker with nothing but an address and an email would try it:
//! guessing one account's password, guessing across accounts, mass sign-ups, telling taken
//! emails from free ones, starving logins with sign-up hashing, and names that spoof others.
//! Clients come from different loopback addresses (127.0.0.x), which the services tell apart
//! as different client addresses.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use chatmesh_api::user::v1::{
    self as user, CreateUserRequest, GetMeRequest, LoginRequest, RefreshTokenRequest, UpdateMeRequest,
    user_service_client::UserServiceClient,
};
use chatmesh_platform::{
    client_addr::TrustedProxies,
    config::{Config, LimitsConfig},
};
use chatmesh_tests::{TestApp, authed, test_config};
use serde_json::json;
use tonic::{Code, transport::Channel};

const PASSWORD: &str = "correct horse battery";

/// The loopback address `127.0.0.<n>`.
fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A user-service client whose connection comes from `source`.
async fn users_from(app: &TestApp, source: IpAddr) -> UserServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_addr))
        .expect("uri")
        .local_address(Some(source))
        .connect()
        .await
        .expect("connects");
    UserServiceClient::new(channel)
}

/// A plain HTTP/1.1 POST of JSON from `source`; returns (status, response headers in
/// lowercase, body).
async fn post_from(source: IpAddr, addr: SocketAddr, path: &str, body: &serde_json::Value) -> (u16, String, String) {
    let json = [("content-type", "application/json")];
    chatmesh_tests::raw::http_from(Some(source), addr, "POST", path, &json, &body.to_string()).await
}

fn sign_up(email: &str, name: &str, username: &str) -> CreateUserRequest {
    CreateUserRequest { email: email.into(), password: PASSWORD.into(), name: name.into(), username: username.into() }
}

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest { email: email.into(), password: password.into(), restore: false }
}

/// The test config with the login and sign-up limits at their defaults (the harness raises
/// the per-address ones for suites that sign many accounts up).
fn default_limits(dir: &tempfile::TempDir) -> Config {
    let mut config = test_config(dir.path().to_owned());
    let defaults = LimitsConfig::default();
    config.limits.login_per_minute_per_account = defaults.login_per_minute_per_account;
    config.limits.login_per_minute_per_source = defaults.login_per_minute_per_source;
    config.limits.signups_per_hour_per_source = defaults.signups_per_hour_per_source;
    config
}

/// The value of a counter in a Prometheus text page (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).map_or(0, |v| v as u64)
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    let (_, page) = chatmesh_tests::raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
    counter(&page, name)
}

/// How long a test waits for something that should happen soon: long enough for any
/// machine, so only a hang runs into it.
const HANG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_hammering_an_account_never_locks_its_owner_out_from_another_address() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(default_limits(&dir)).await;
    let (owner, attacker) = (loopback(1), loopback(2));
    let mut own = users_from(&app, owner).await;
    own.create_user(sign_up("ada@example.com", "Ada", "")).await.expect("ada registers");
    let device = own.login(login("ada@example.com", PASSWORD)).await.expect("ada logs in").into_inner();
    let mut refresh = device.tokens.expect("tokens").refresh_token;

    // why: the throttle reads the machine's clock and gives one attempt back every 6 s; the
    // bound allows those, so a slow machine cannot fail it
    let per_minute = LimitsConfig::default().login_per_minute_per_account;
    let started = std::time::Instant::now();
    let allowance = || u64::from(per_minute) + (started.elapsed().as_secs_f64() / 6.0) as u64;
    let mut theirs = users_from(&app, attacker).await;
    let (mut answered, mut refused, mut owner_in) = (0, 0, 0);
    for round in 0..40 {
        match theirs.login(login("ada@example.com", "wrong password")).await {
            Err(status) if status.code() == Code::Unauthenticated => answered += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
                refused += 1;
            }
            other => panic!("a wrong password: {other:?}"),
        }
        // the attacker's REST calls come from the same address and share its allowance
        let (status, headers, _) = post_from(
            attacker,
            app.rest_addr,
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": "wrong password"}),
        )
        .await;
        match status {
            401 => answered += 1,
            429 => {
                assert!(headers.contains("retry-after:"), "{headers}");
                refused += 1;
            }
            other => panic!("a wrong password over REST: {other}"),
        }
        assert!(answered <= allowance(), "{answered} wrong passwords answered in {:?}", started.elapsed());
        if round % 8 == 7 {
            // the owner, from an address that has not failed: over gRPC and REST alike
            let logged_in = own.login(login("ada@example.com", PASSWORD)).await;
            assert!(logged_in.is_ok(), "round {round}: the owner is let in: {logged_in:?}");
            let (status, _, body) = post_from(
                owner,
                app.rest_addr,
                "/api/v1/auth/login",
                &json!({"email": "ada@example.com", "password": PASSWORD}),
            )
            .await;
            assert_eq!(status, 200, "round {round}: the owner is let in over REST: {body}");
            // and a device holding a refresh token is never throttled by others' failures
            let renewed = own.refresh_token(RefreshTokenRequest { refresh_token: refresh.clone() }).await;
            refresh = renewed.expect("the owner's device renews its tokens").into_inner().tokens.unwrap().refresh_token;
            owner_in += 1;
        }
    }
    assert!(refused > 0, "the attacker is refused once its allowance is spent");
    println!(
        "login throttle: the attacker answered {answered}, refused {refused}; the owner let in {owner_in} of 5 rounds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_across_accounts_is_refused_and_another_address_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let per_source = LimitsConfig::default().login_per_minute_per_source;
    let app = TestApp::spawn_with(default_limits(&dir)).await;
    // why: the throttle reads the machine's clock and gives one failure back every 2 s; the
    // bound allows those, so a slow machine cannot fail it
    let started = std::time::Instant::now();
    let allowance = || u64::from(per_source) + (started.elapsed().as_secs_f64() / 2.0) as u64;
    let mut guesser = users_from(&app, loopback(3)).await;
    let mut answered: u64 = 0;
    let throttled = loop {
        // one wrong password per account: no account's own allowance is ever spent
        let email = format!("user{answered}@example.com");
        match guesser.login(login(&email, "password1")).await {
            Err(status) if status.code() == Code::Unauthenticated => answered += 1,
            Err(status) if status.code() == Code::ResourceExhausted => break status,
            other => panic!("an unknown account: {other:?}"),
        }
        assert!(answered <= allowance(), "{answered} guesses across accounts answered in {:?}", started.elapsed());
    };
    assert!(answered >= u64::from(per_source), "{per_source} failures a minute are answered, got {answered}");
    assert!(throttled.metadata().get("retry-after").is_some());
    // REST shares the address's allowance
    let headers = loop {
        let email = format!("user{answered}@example.com");
        let body = json!({"email": email, "password": "password1"});
        match post_from(loopback(3), app.rest_addr, "/api/v1/auth/login", &body).await {
            (401, _, _) => answered += 1,
            (429, headers, _) => break headers,
            (other, _, body) => panic!("an unknown account over REST: {other} {body}"),
        }
        assert!(answered <= allowance(), "{answered} guesses across accounts answered in {:?}", started.elapsed());
    };
    assert!(headers.contains("retry-after:"), "{headers}");
    // another address is not affected
    let mut other = users_from(&app, loopback(4)).await;
    other.create_user(sign_up("bob@example.com", "Bob", "")).await.expect("bob registers");
    other.login(login("bob@example.com", PASSWORD)).await.expect("bob logs in");
    println!("login throttle per address: {answered} guesses across accounts, then 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_from_one_address_are_limited_and_another_address_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let limit = Config::default().limits.signups_per_hour_per_source;
    assert_eq!(limit, 20);
    let app = TestApp::spawn_with(default_limits(&dir)).await;
    let mut spammer = users_from(&app, loopback(5)).await;
    for i in 0..limit {
        let request = sign_up(&format!("bot{i}@example.com"), "Bot", "");
        spammer.create_user(request).await.unwrap_or_else(|e| panic!("sign-up {i} is within the limit: {e:?}"));
    }
    let refused = spammer.create_user(sign_up("bot-extra@example.com", "Bot", "")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let retry_after: u64 = refused.metadata().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap();
    assert!((1..=3600 / u64::from(limit)).contains(&retry_after), "one sign-up comes back every 3 min: {retry_after}");
    let (status, headers, _) = post_from(
        loopback(5),
        app.rest_addr,
        "/api/v1/users",
        &json!({"email": "bot-rest@example.com", "password": PASSWORD, "name": "Bot"}),
    )
    .await;
    assert_eq!(status, 429, "REST shares the address's allowance");
    assert!(headers.contains("retry-after:"), "{headers}");
    // the refused sign-ups stored nothing, and another address signs up as usual
    let mut other = users_from(&app, loopback(6)).await;
    other.create_user(sign_up("bot-extra@example.com", "Ada", "")).await.expect("the email is still free");
    let (status, _, body) = post_from(
        loopback(6),
        app.rest_addr,
        "/api/v1/users",
        &json!({"email": "bot-rest@example.com", "password": PASSWORD, "name": "Bob"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    println!("sign-up limit: {limit} from one address, the next refused with Retry-After {retry_after} s");
}

// why: no timing figure (a machine's noise would drown it): the answer's cost is the argon2
// hash, and a taken email is shown to pay the same one as a free one
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_email_is_refused_after_the_same_hash_as_a_free_one() {
    let app = TestApp::spawn().await;
    let mut users = app.users().await;
    let hashes = "chatmesh_password_hashes_total";
    let before = metric(&app, hashes).await;
    users.create_user(sign_up("ada@example.com", "Ada", "")).await.expect("a free email");
    let after_free = metric(&app, hashes).await;
    let taken = users.create_user(sign_up("ADA@example.com", "Ada", "")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let after_taken = metric(&app, hashes).await;
    assert_eq!((after_free - before, after_taken - after_free), (1, 1), "one argon2 hash each");
}

// why: no latency figure: the proof is an order of events. Every sign-up hashes at a cost that
// outlasts a login's verification several times over; the sign-ups hold the only sign-up
// permit one after another, and the login is answered while some of them still wait — had it
// queued behind them, it would be answered after the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_is_answered_while_a_burst_of_sign_ups_waits_for_hashing() {
    const BURST: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.password.iterations = 24;
    config.password.max_concurrent_hashes = 1;
    config.password.max_concurrent_signup_hashes = 1;
    let app = TestApp::spawn_with(config).await;
    let mut users = app.users().await;
    users.create_user(sign_up("ada@example.com", "Ada", "")).await.expect("ada registers");

    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            let mut users = users.clone();
            tokio::spawn(async move { users.create_user(sign_up(&format!("new{i}@example.com"), "New", "")).await })
        })
        .collect();
    // why: once one sign-up is answered the others have long arrived and wait for the permit
    let deadline = tokio::time::Instant::now() + HANG;
    while !burst.iter().any(|signup| signup.is_finished()) {
        assert!(tokio::time::Instant::now() < deadline, "no sign-up was answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let logged_in = users.login(login("ada@example.com", PASSWORD)).await;
    let waiting = burst.iter().filter(|signup| !signup.is_finished()).count();
    assert!(logged_in.is_ok(), "the login is not refused: {logged_in:?}");
    assert!(waiting > 0, "the login was answered after every sign-up: it queued behind their hashing");
    for signup in burst {
        signup.await.unwrap().expect("every sign-up of the burst is served");
    }
    println!("sign-up hashing: a login answered while {waiting} of {BURST} sign-ups still waited");
}

#[tokio::test]
async fn names_that_reorder_text_or_show_nothing_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let mut users = app.users().await;
    let spoofs = [
        "Ada\u{202e}gpj.exe",
        "\u{202d}Ada",
        "Ada\u{202a}",
        "Ada\u{2066}x\u{2069}",
        "Ada\u{200f}",
        "Ada\u{200e}",
        "Ada\u{061c}",
        "\u{200b}",
        "\u{200b}\u{200c}\u{200d}\u{2060}",
        "\u{feff}",
        "\u{3164}",
        "\u{2800}",
        " \u{200b} ",
    ];
    for (i, name) in spoofs.iter().enumerate() {
        let email = format!("spoof{i}@example.com");
        let status = users.create_user(sign_up(&email, name, "")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
        assert!(status.message().starts_with("name"), "{name:?}: {}", status.message());
        assert_eq!(app.login(&email, PASSWORD).await.unwrap_err().code(), Code::Unauthenticated, "nothing stored");
        let (status, _, body) = post_from(
            loopback(1),
            app.rest_addr,
            "/api/v1/users",
            &json!({"email": email, "password": PASSWORD, "name": name}),
        )
        .await;
        assert_eq!(status, 400, "{name:?} over REST: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("the error body");
        let details = body["details"].as_array().cloned().unwrap_or_default();
        let fields: Vec<_> = details.iter().filter_map(|d| d["fieldViolations"][0]["field"].as_str()).collect();
        assert_eq!(fields, ["name"], "the field is named: {body}");
    }
    // a name with joiners and selectors inside something visible is fine (emoji sequences)
    let (_, tokens) = app.register("ada@example.com").await;
    let mut me = users.clone();
    let token = tokens.access_token;
    let rename =
        |name: &str| UpdateMeRequest { name: name.into(), update_mask: vec!["name".into()], ..Default::default() };
    me.update_me(authed(&token, rename("👩\u{200d}💻 Ada"))).await.expect("an emoji sequence");
    for name in ["Ada\u{202e}gpj.exe", "\u{200b}"] {
        let status = me.update_me(authed(&token, rename(name))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
        assert!(status.message().starts_with("name"), "{name:?}: {}", status.message());
    }
    let shown = me.get_me(authed(&token, GetMeRequest {})).await.unwrap().into_inner().user.unwrap();
    assert_eq!(shown.name, "👩\u{200d}💻 Ada", "a refused rename changes nothing");
}

#[tokio::test]
async fn usernames_are_stored_and_matched_in_lower_case() {
    let app = TestApp::spawn().await;
    let mut users = app.users().await;
    let created = users.create_user(sign_up("alice@example.com", "Alice", "Alice_W")).await.unwrap().into_inner();
    let alice: user::User = created.user.unwrap();
    assert_eq!(alice.username, "alice_w", "stored in lower case");
    let taken = users.create_user(sign_up("other@example.com", "Other", "ALICE_w")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "the same username in another case: {taken:?}");
    for lookalike in ["\u{ff21}lice", "Al\u{0456}ce", "Alice\u{200b}"] {
        let status = users.create_user(sign_up("x@example.com", "X", lookalike)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{lookalike:?}");
        assert!(status.message().starts_with("username"), "{lookalike:?}: {}", status.message());
    }
    let (_, tokens) = app.register("bob@example.com").await;
    let rename =
        UpdateMeRequest { username: "Bob_B".into(), update_mask: vec!["username".into()], ..Default::default() };
    let bob = users.update_me(authed(&tokens.access_token, rename)).await.unwrap().into_inner().user.unwrap();
    assert_eq!(bob.username, "bob_b");
    let seen = users
        .get_user(authed(&tokens.access_token, user::GetUserRequest { user_id: alice.user_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(seen.username, "alice_w", "others see it in lower case");
}

/// The test config with the sign-up limit at its default, trusting the proxies at `ranges`.
fn trusting(dir: &tempfile::TempDir, ranges: &[&str]) -> Config {
    let mut config = default_limits(dir);
    let ranges: Vec<String> = ranges.iter().map(|range| range.to_string()).collect();
    config.limits.trusted_proxies = TrustedProxies::try_from(ranges).expect("address ranges");
    config
}

/// Where a sign-up is sent: REST (forwarding headers as HTTP headers) or gRPC (as metadata).
#[derive(Debug, Clone, Copy)]
enum Surface {
    Rest,
    Grpc,
}

/// Signs `email` up over `surface` from the connection's address `source`, with `forwarded`
/// (`x-forwarded-for` or `forwarded`, and its value) on the call: true when served, false when
/// refused by the sign-up limit (with Retry-After).
async fn signs_up(
    app: &TestApp,
    surface: Surface,
    source: IpAddr,
    forwarded: Option<(&'static str, &str)>,
    email: &str,
) -> bool {
    match surface {
        Surface::Rest => {
            let body = json!({"email": email, "password": PASSWORD, "name": "Bot"}).to_string();
            let mut headers = vec![("content-type", "application/json")];
            headers.extend(forwarded);
            let (status, head, body) =
                chatmesh_tests::raw::http_from(Some(source), app.rest_addr, "POST", "/api/v1/users", &headers, &body)
                    .await;
            match status {
                200 => true,
                429 => {
                    assert!(head.contains("retry-after:"), "{head}");
                    false
                }
                _ => panic!("a sign-up over REST: {status} {head} {body}"),
            }
        }
        Surface::Grpc => {
            let mut request = tonic::Request::new(sign_up(email, "Bot", ""));
            if let Some((name, value)) = forwarded {
                request.metadata_mut().insert(name, value.parse().expect("a metadata value"));
            }
            match users_from(app, source).await.create_user(request).await {
                Ok(_) => true,
                Err(status) if status.code() == Code::ResourceExhausted => {
                    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
                    false
                }
                Err(other) => panic!("a sign-up over gRPC: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_through_a_trusted_proxy_are_limited_per_forwarded_address() {
    let dir = tempfile::tempdir().unwrap();
    let limit = LimitsConfig::default().signups_per_hour_per_source;
    let app = TestApp::spawn_with(trusting(&dir, &["127.0.0.0/8"])).await;
    let cases = [
        (Surface::Rest, loopback(10), "198.51.100.1", "198.51.100.2"),
        (Surface::Grpc, loopback(11), "198.51.100.3", "2001:db8::4"),
    ];
    for (surface, proxy, client, other) in cases {
        let from = |who| Some(("x-forwarded-for", who));
        for i in 0..limit {
            let email = format!("{surface:?}-{i}@example.com");
            assert!(signs_up(&app, surface, proxy, from(client), &email).await, "{surface:?}: sign-up {i} is served");
        }
        let email = format!("{surface:?}-extra@example.com");
        assert!(
            !signs_up(&app, surface, proxy, from(client), &email).await,
            "{surface:?}: {client} spent its sign-ups"
        );
        // the proxy's other clients, and the proxy itself, are not affected
        assert!(signs_up(&app, surface, proxy, from(other), &email).await, "{surface:?}: {other} is served");
        let email = format!("{surface:?}-proxy@example.com");
        assert!(
            signs_up(&app, surface, proxy, None, &email).await,
            "{surface:?}: the proxy's own allowance is unspent"
        );
        // the client is counted the same through any trusted proxy, on either surface, and by
        // `Forwarded: for=` as by X-Forwarded-For
        let (email, via) = (format!("{surface:?}-elsewhere@example.com"), loopback(12));
        for surface in [Surface::Rest, Surface::Grpc] {
            assert!(!signs_up(&app, surface, via, from(client), &email).await, "{surface:?}: {client} elsewhere");
            let quoted = format!("for=\"{client}\";proto=https");
            assert!(!signs_up(&app, surface, via, Some(("forwarded", &quoted)), &email).await, "{surface:?}: {quoted}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_x_forwarded_for_changes_nothing_when_no_proxy_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let limit = LimitsConfig::default().signups_per_hour_per_source;
    let app = TestApp::spawn_with(trusting(&dir, &[])).await;
    for (surface, source) in [(Surface::Rest, loopback(13)), (Surface::Grpc, loopback(14))] {
        for i in 0..limit {
            let (email, forged) = (format!("{surface:?}-{i}@example.com"), format!("198.51.100.{i}"));
            let served = signs_up(&app, surface, source, Some(("x-forwarded-for", &forged)), &email).await;
            assert!(served, "{surface:?}: sign-up {i} is served");
        }
        let email = format!("{surface:?}-extra@example.com");
        for forged in [
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "203.0.113.2, 127.0.0.1"),
            ("forwarded", "for=203.0.113.3"),
        ] {
            assert!(
                !signs_up(&app, surface, source, Some(forged), &email).await,
                "{surface:?}: {forged:?} counts the peer"
            );
        }
    }
    assert!(signs_up(&app, Surface::Rest, loopback(15), None, "other@example.com").await, "another address is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_spoofed_left_of_the_proxys_own_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let limit = LimitsConfig::default().signups_per_hour_per_source;
    // only the proxies are trusted
    let (rest_proxy, grpc_proxy) = (loopback(16), loopback(17));
    let app = TestApp::spawn_with(trusting(&dir, &["127.0.0.16", "127.0.0.17"])).await;
    let cases = [
        (Surface::Rest, rest_proxy, "203.0.113.10", "203.0.113.11"),
        (Surface::Grpc, grpc_proxy, "203.0.113.12", "203.0.113.13"),
    ];
    for (surface, proxy, real, other) in cases {
        // the client writes a new address each time; the proxy appends the one it saw
        let spoofed = ["198.51.100.7", "127.0.0.16", "10.1.2.3", "not an address", "2001:db8::9"];
        for i in 0..limit {
            let chain = format!("{}, {real}", spoofed[i as usize % spoofed.len()]);
            let email = format!("{surface:?}-{i}@example.com");
            assert!(
                signs_up(&app, surface, proxy, Some(("x-forwarded-for", &chain)), &email).await,
                "{surface:?}: {chain}"
            );
        }
        let chain = format!("198.51.100.99, {real}");
        let email = format!("{surface:?}-extra@example.com");
        assert!(
            !signs_up(&app, surface, proxy, Some(("x-forwarded-for", &chain)), &email).await,
            "{surface:?}: {real} is counted"
        );
        let chain = format!("{real}, {other}");
        assert!(
            signs_up(&app, surface, proxy, Some(("x-forwarded-for", &chain)), &email).await,
            "{surface:?}: {other} is served"
        );
    }
}
