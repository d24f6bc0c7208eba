//! `shutdown`: the daemon stops its runs (each resumable) and exits.

use super::Registry;
use crate::protocol::Response;

pub fn handle(reg: &Registry) -> Response {
    reg.request_shutdown();
    Response::ok("daemon shutting down")
}
