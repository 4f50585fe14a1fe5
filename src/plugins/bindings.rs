//! Generated bindings for `wit/policy.wit` (the `policy` world), and nothing else.
//!
//! Exports are async so a guest call runs on a fiber that yields to the Tokio executor at every
//! epoch tick: a looping plugin costs its own request its deadline, not the worker thread. The
//! `limit` import is async too: a Redis-backed limit awaits its store without holding the thread.

wasmtime::component::bindgen!({
    world: "policy",
    path: "wit",
    exports: { default: async },
    // `limit` may wait for the shared (Redis) store.
    imports: { "edgewarden:policy/host.limit": async },
});
