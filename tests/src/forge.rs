//! Tokens an attacker could make: every way a JWT can be wrong (RFC 8725's catalogue and a few
//! of our own rules), for the tests that check each surface refuses them all.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chatmesh_platform::ids::now_ms;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Claims as our issuer writes them.
pub fn claims(sub: &str, aud: &str, sid: Option<&str>, iat: u64, exp: u64) -> serde_json::Value {
    let mut c = serde_json::json!({ "iss": "chatmesh", "aud": aud, "sub": sub, "iat": iat, "nbf": iat, "exp": exp });
    if let Some(sid) = sid {
        c["sid"] = sid.into();
    }
    c
}

/// `claims` signed with the Ed25519 key `der` under `kid`.
pub fn sign(kid: &str, der: &[u8], claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der)).expect("signs")
}

/// A token with any header and claims and a made-up signature.
fn unsigned(header: &serde_json::Value, claims: &serde_json::Value, signature: &str) -> String {
    format!("{}.{}.{signature}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// The name of the real service token among [`forged`]'s: refused on public RPCs only.
pub const SERVICE_ON_PUBLIC: &str = "service token on a public rpc";

/// What a forger knows: a real user's id and session, the user key's `kid` and private key
/// (to make correctly signed tokens with wrong claims), the service key, and a real token pair.
#[derive(Debug, Clone)]
pub struct Known {
    pub user_id: String,
    pub session_id: String,
    pub kid: String,
    pub der: Vec<u8>,
    pub service_kid: String,
    pub service_der: Vec<u8>,
    pub refresh_token: String,
    pub access_token: String,
    /// `auth.leeway_secs` of the server.
    pub leeway_secs: u64,
}

/// Every forged or misused token, named, that no public RPC may accept. Service tokens on
/// public RPCs are in; user tokens on internal RPCs are checked apart (PERMISSION_DENIED).
pub fn forged(known: &Known) -> Vec<(&'static str, String)> {
    let now = now_ms() / 1000;
    let (user, sid, kid) = (known.user_id.as_str(), Some(known.session_id.as_str()), known.kid.as_str());
    let good = claims(user, "chatmesh", sid, now, now + 600);
    let signed = |c: &serde_json::Value| sign(kid, &known.der, c);
    let without = |field: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("an object").remove(field);
        signed(&c)
    };
    let with = |field: &str, value: serde_json::Value| {
        let mut c = good.clone();
        c[field] = value;
        signed(&c)
    };
    let public_key = {
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&known.der).expect("our key");
        pair.public_key().as_ref().to_vec()
    };
    let hs256_with = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(secret)).expect("signs")
    };
    let foreign =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("a key");
    let real = signed(&good);
    // why: flip a bit of the decoded signature and re-encode, so the token stays well-formed
    // base64 and only the signature check can refuse it
    let bad_signature = {
        let (signed_part, signature) = real.rsplit_once('.').expect("three parts");
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        bytes[0] ^= 1;
        format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(bytes))
    };
    vec![
        ("alg none", unsigned(&serde_json::json!({ "alg": "none", "typ": "JWT" }), &good, "")),
        ("alg none, with kid", unsigned(&serde_json::json!({ "alg": "none", "kid": kid }), &good, "")),
        ("HS256 keyed with our public key", hs256_with(&public_key)),
        ("HS256 keyed with a guess", hs256_with(b"secret")),
        ("unknown alg", unsigned(&serde_json::json!({ "alg": "XS512", "kid": kid }), &good, "c2ln")),
        ("bad signature", bad_signature),
        ("signed by a stranger's key", sign(kid, foreign.as_ref(), &good)),
        ("unknown kid", sign("no-such-kid", &known.der, &good)),
        ("truncated", real[..real.len() - 12].to_owned()),
        ("two parts", real.rsplit_once('.').map(|(head, _)| head.to_owned()).unwrap_or_default()),
        ("empty", String::new()),
        ("garbage", "not.a.jwt".to_owned()),
        ("expired beyond leeway", signed(&claims(user, "chatmesh", sid, now - 7200, now - known.leeway_secs - 60))),
        ("nbf in the future", with("nbf", (now + known.leeway_secs + 600).into())),
        ("wrong aud", with("aud", "someone-else".into())),
        ("internal aud on a user", with("aud", "chatmesh-internal".into())),
        ("wrong iss", with("iss", "evil".into())),
        ("missing exp", without("exp")),
        ("missing sub", without("sub")),
        ("sub not a user id", with("sub", "root".into())),
        ("missing sid", without("sid")),
        ("refresh token as access token", known.refresh_token.clone()),
        (
            SERVICE_ON_PUBLIC,
            sign(&known.service_kid, &known.service_der, &claims("svc:chat", "chatmesh-internal", None, now, now + 60)),
        ),
    ]
}
