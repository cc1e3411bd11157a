//! Component tests: the real enforcer (`start`) against a scripted fake
//! control plane and, for the proxy door, a tiny upstream, all on loopback.

mod auth_endpoint;
mod client_ip;
mod doors_world;
mod events;
mod ext_authz;
mod grpc;
mod log_capture;
mod logs;
mod proxy;
mod proxy_forward;
mod proxy_limits;
mod proxy_paths;
mod proxy_upstreams;
mod proxy_websocket;
mod raw;
mod support;
mod sync;
mod upstreams;
