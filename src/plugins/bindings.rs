//! Generated bindings for `wit/policy.wit` (the `policy` world), and nothing else.
//!
//! Exports are async so a guest call runs on a fiber that yields to the Tokio executor at every
//! epoch tick: a looping plugin costs its own request its deadline, not the worker thread.

wasmtime::component::bindgen!({
    world: "policy",
    path: "wit",
    exports: { default: async },
});
