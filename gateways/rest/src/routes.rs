//! The REST routes, read from the `google.api.http` options of the public services in the
//! compiled descriptor set — so REST and gRPC cannot drift.

use http::Method;
use prost_reflect::{MessageDescriptor, Value};

/// One REST binding of an RPC.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    /// In axum syntax, e.g. `/api/v1/users/{user_id}`.
    pub path: String,
    /// The gRPC path, e.g. `/chatmesh.user.v1.UserService/GetUser`.
    pub grpc_path: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    /// The request message is the JSON body (`body: "*"`); otherwise fields come from the query.
    pub body: bool,
    /// Callable without a token (its RPC is open).
    pub open: bool,
}

impl Route {
    /// Path parameter names, in order.
    pub fn path_params(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect()
    }
}

/// Every REST route of the public services (internal services have none).
pub fn routes() -> Vec<Route> {
    let pool = chatmesh_api::descriptor_pool();
    let Some(http) = pool.get_extension_by_name("google.api.http") else { return Vec::new() };
    let mut routes = Vec::new();
    for service in pool.services() {
        if !service.package_name().starts_with("chatmesh.") || service.name().ends_with("InternalService") {
            continue;
        }
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let Value::Message(rule) = options.get_extension(&http).into_owned() else { continue };
            let text = |name: &str| match rule.get_field_by_name(name).map(|v| v.into_owned()) {
                Some(Value::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            };
            let Some((verb, path)) = [
                ("get", Method::GET),
                ("put", Method::PUT),
                ("post", Method::POST),
                ("delete", Method::DELETE),
                ("patch", Method::PATCH),
            ]
            .into_iter()
            .find_map(|(name, verb)| text(name).map(|path| (verb, path))) else {
                continue;
            };
            let grpc_path = format!("/{}/{}", service.full_name(), method.name());
            routes.push(Route {
                method: verb,
                path,
                open: chatmesh_platform::grpc::OPEN_METHODS.contains(&grpc_path.as_str()),
                grpc_path,
                input: method.input(),
                output: method.output(),
                body: text("body").as_deref() == Some("*"),
            });
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_paths_are_bound() {
        let routes = routes();
        let has = |method: Method, path: &str| routes.iter().any(|r| r.method == method && r.path == path);
        for (method, path) in [
            (Method::POST, "/api/v1/users"),
            (Method::GET, "/api/v1/users/me"),
            (Method::GET, "/api/v1/users/{user_id}"),
            (Method::POST, "/api/v1/channels"),
            (Method::GET, "/api/v1/channels/{channel_id}"),
            (Method::POST, "/api/v1/members"),
            (Method::POST, "/api/v1/chats"),
            (Method::GET, "/api/v1/chats/{chat_id}"),
            (Method::GET, "/api/v1/chats"),
            (Method::DELETE, "/api/v1/chats/remove-multiple"),
            (Method::PUT, "/api/v1/chats/retract-multiple"),
            (Method::GET, "/api/v1/chats-search"),
        ] {
            assert!(has(method.clone(), path), "{method} {path}");
        }
        assert!(routes.iter().all(|r| !r.grpc_path.contains("Internal")), "internal services have no REST route");
        assert!(routes.iter().find(|r| r.path == "/api/v1/auth/login").unwrap().open);
    }
}
